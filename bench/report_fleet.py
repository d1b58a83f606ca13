"""Measure the HTML report at fleet size: bytes, CPU to render the parts and to assemble them, and what
headless Chromium spends to reach ``load``.

The fleet is the demo's analysis copied under new service names (``tests/fleet_report.py``): the
first ``--with-findings`` copies are the demo's incident (four findings and a fix check), the rest its
healthy services; parts are rendered ``--batch`` services at a time, as a batched run does::

    python bench/report_fleet.py                                   # 1,000 services, 50 with findings
    python bench/report_fleet.py --services 1000 --with-findings 70 --out /tmp/fleet.html
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analyzer.pipeline import analyze, load_demo  # noqa: E402
from analyzer.render.parts import assemble_report  # noqa: E402
from tests.cdp import Page, find_chromium, headless_page  # noqa: E402
from tests.fleet_report import fleet_parts  # noqa: E402


def _browser(path: Path) -> tuple[float, float]:
    """Best of three reloads: wall milliseconds to ``load`` and the renderer's CPU milliseconds."""
    binary = find_chromium()
    if binary is None:
        raise SystemExit("no Chromium: apt-get install chromium, or set CHROMIUM_BIN")
    with headless_page(binary) as page:
        page.set_viewport(1280, 900)
        page.navigate(path.as_uri())
        page.call("Performance.enable")
        runs = []
        for _ in range(3):
            before = _cpu(page)
            page.reload()
            runs.append((page.evaluate("performance.getEntriesByType('navigation')[0].loadEventStart"),
                         (_cpu(page) - before) * 1000))
    return min(w for w, _ in runs), min(c for _, c in runs)


def _cpu(page: Page) -> float:
    metrics = page.call("Performance.getMetrics")["metrics"]
    return float(next(m["value"] for m in metrics if m["name"] == "ProcessTime"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--with-findings", type=int, default=50)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    analysis = analyze(load_demo())
    now = datetime.now(UTC)
    cpu = time.process_time()
    parts = list(fleet_parts(analysis, services=args.services, with_findings=args.with_findings,
                             batch=args.batch, generated_at=now))
    render_cpu = time.process_time() - cpu
    cpu = time.process_time()
    html = assemble_report(parts, generated_at=now)
    assemble_cpu = time.process_time() - cpu
    out = args.out or Path(tempfile.mkdtemp(prefix="report-fleet-")) / "report.html"
    out.write_text(html, encoding="utf-8")
    wall_ms, renderer_ms = _browser(out)
    print(f"{args.services} services ({args.with_findings} with findings), batches of {args.batch}: {out}")
    print(f"  HTML                 {len(html.encode()):>12,} bytes")
    print(f"  render_part          {render_cpu:>12.2f} CPU-s ({render_cpu / args.services * 1000:.1f} ms per service)")
    print(f"  assemble_report      {assemble_cpu:>12.2f} CPU-s")
    print(f"  Chromium to load     {wall_ms:>12.0f} ms wall, {renderer_ms:.0f} ms renderer CPU (best of 3)")


if __name__ == "__main__":
    main()
