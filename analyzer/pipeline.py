"""The pipeline's spine: a source gives RawData → frames → analysis. Rendering and delivery take the
Analysis from here; nothing in this module formats or sends anything.
"""

from __future__ import annotations

from analyzer.analysis import Analysis, analyze_frames
from analyzer.config import AnalysisConfig
from analyzer.errors import NoDataError
from analyzer.frames import build
from analyzer.model import RawData
from analyzer.sources.duplicates import drop_duplicate_series
from analyzer.sources.restjson import parse_time
from analyzer.sources.snapshot import ingest

PROBLEMS_SHOWN = 5  # in the "no usable data" message; the rest are counted


def load_demo() -> RawData:
    """The bundled incident scenario, read by the snapshot reader's own ``ingest`` from the REST JSON
    bodies the simulator emits (``demo-snapshot DIR`` writes the same bodies to disk)."""
    from analyzer.simulate import demo_documents

    documents, manifest = demo_documents()
    raw = RawData(origin="bundled demo (the incident of docs/incident.md, simulated)")
    for sub, source, body in documents:
        ingest(raw, sub, f"demo/{sub}/{source}.json", body)
    drop_duplicate_series(raw)
    raw.window_start = parse_time(manifest["window"]["start"])
    raw.window_end = parse_time(manifest["window"]["end"])
    return raw


def analyze(raw: RawData, config: AnalysisConfig | None = None, *, allow_empty: bool = False) -> Analysis:
    """Analyze what a source produced. Raises NoDataError when there is no metric at all, unless
    ``allow_empty`` (one batch of a larger run: its services are still listed, as without data)."""
    config = config or AnalysisConfig()
    if not raw.series and not allow_empty:
        shown = raw.problems[:PROBLEMS_SHOWN]
        detail = "; ".join(f"{p.subject}: {p.message}" for p in shown)
        if len(raw.problems) > len(shown):
            detail += f"; and {len(raw.problems) - len(shown)} more"
        raise NoDataError(
            f"no usable Cloud Run metrics in {raw.origin or 'the input'}" + (f" ({detail})" if detail else ""),
            hint="check the window (--days/--start/--end), the project and service names, and that the "
                 "snapshot holds run.googleapis.com/ time series",
        )
    frames = build(raw, step_seconds=config.step_seconds)
    return analyze_frames(frames, config, origin=raw.origin)
