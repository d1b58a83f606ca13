"""The weekly digest: what changed since last week (new, ongoing, resolved), the week's numbers, and
small PNG charts, rendered as email-safe HTML (inline styles, no scripts, images by Content-ID) with a
plain-text twin.

Time comes from the analysis window (pure), except the "generated" stamp. The HTML is kept under
``MAX_HTML_BYTES`` (Gmail clips bodies over about 102 KB) by listing fewer services when needed.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

# The Agg canvas directly, not pyplot: no GUI backend, no global figure state, safe in a job.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from analyzer.analysis import ServiceResult
from analyzer.config import DigestConfig
from analyzer.model import FindingKind, ServiceKey
from analyzer.render.charts import PALETTE, ChartSpec, chart_specs, downsample, time_ticks
from analyzer.render.html import environment, kind_name, usd
from analyzer.render.week import WeekChanges

MAX_HTML_BYTES = 100_000  # Gmail clips at about 102 KB (104,448 bytes); keep a margin
KEEP_SERVICES, KEEP_REVISIONS = 10, 5  # what a digest too large for one email still lists, at least
CHART_SIZE = (5.6, 3.0)  # inches at CHART_DPI: 560 × 300 px, shown 1:1
CHART_DPI = 100
BLENDS = (0.3, 0.6)  # anti-aliasing steps kept per colour in the palette PNG (about 10 KB instead of 60)
CHART_POINTS = 140  # points per line: about one per 3 px
INK, MUTED, GRID = "#1f2328", "#59636e", "#d1d9e0"
BAND_PNG = "#fde0dc"  # the report's band colour is too pale to survive a 24-colour palette


@dataclass(frozen=True, slots=True)
class InlineImage:
    """A PNG sent as a related MIME part and referenced from the HTML as ``cid:``."""

    cid: str  # without angle brackets
    filename: str
    data: bytes
    alt: str
    legend: tuple[tuple[str, str, bool], ...] = ()  # (label, colour, dashed), shown as text under the image


@dataclass(slots=True)
class ServiceLine:
    """One row of the services table: this week's cost against last week's (service and fleet digests)."""

    key: ServiceKey
    cost_usd: float | None
    last_week_usd: float | None
    state: str  # "ongoing", "fixed", "healthy", "no data", "failed"
    anchor_url: str | None
    urgency: tuple[int, int, float, float] | None = None  # of its most urgent finding (analysis.impact)

    @property
    def change(self) -> float | None:
        if self.cost_usd is None or not self.last_week_usd:
            return None
        return self.cost_usd / self.last_week_usd - 1.0


STATE_ORDER = {"ongoing": 0, "failed": 1, "no data": 2, "fixed": 3, "healthy": 4}


def sort_lines(lines: list[ServiceLine]) -> None:
    """What needs attention first (its most urgent finding), then the costliest."""
    lines.sort(key=lambda line: (STATE_ORDER.get(line.state, 5), line.urgency or (9, 9, 0.0, 0.0),
                                 -(line.cost_usd or 0.0), line.key.service))


@dataclass(slots=True)
class Digest:
    subject: str
    headline: str
    html: str
    text: str
    images: list[InlineImage] = field(default_factory=list)
    changes: WeekChanges = field(default_factory=WeekChanges)
    services_shown: int = 0
    services_total: int = 0

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))


def _draw(axes: Any, spec: ChartSpec, *, deploy_labels_at: float | None) -> None:
    for band in spec.bands:
        axes.axvspan(band.start, band.end, color=BAND_PNG, lw=0, zorder=0)
    step = pd.Timedelta(seconds=max(60, int((spec.end - spec.start).total_seconds() / CHART_POINTS)))
    for s in spec.series:
        values = (
            s.values
            if s.split_at_nan
            else downsample(s.values.dropna(), step, s.how, max_points=CHART_POINTS)
        )
        axes.plot(
            values.index,
            values.to_numpy(dtype=np.float64),
            color=PALETTE[s.css],
            lw=s.width * 0.75,
            ls=(0, (4, 2)) if s.dashed else "-",
            label=s.label,
            zorder=3,
        )
    if spec.reference is not None:
        axes.axhline(
            spec.reference[0], color=PALETTE["limit"], lw=1.0, ls=(0, (5, 2)), zorder=2, label="limit"
        )
    for deploy in spec.deploys:
        axes.axvline(deploy.when, color=PALETTE["deploy"], lw=0.8, ls=":", zorder=2)
        if deploy_labels_at is not None:
            axes.text(
                deploy.when,
                deploy_labels_at,
                f" {deploy.short}",
                parse_math=False,  # a revision name is text: "$...$" in it is not mathtext
                fontsize=7,
                color=INK,
                va="top",
                ha="left",
                zorder=4,
            )
    axes.set_xlim(spec.start, spec.end)
    axes.set_ylim(bottom=0)
    axes.set_title(f"{spec.title} ({spec.unit})", fontsize=8, loc="left", color=INK, pad=3)
    axes.tick_params(labelsize=7, colors=MUTED, length=2)
    axes.grid(axis="y", color=GRID, lw=0.6)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _blend(ground: tuple[int, int, int], ink: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    r, g, b = (round(a + (c - a) * amount) for a, c in zip(ground, ink, strict=True))
    return r, g, b


@cache
def _palette() -> np.ndarray:
    """A fixed palette: the chart colours exactly, plus their blends with the white and the shaded
    background for anti-aliased edges (adaptive palettes merge white with the pale band colour)."""
    white, band = (255, 255, 255), _rgb(BAND_PNG)
    inks = [_rgb(c) for key, c in PALETTE.items() if key != "band"] + [_rgb(c) for c in (INK, MUTED, GRID)]
    colours = [white, band, *inks]
    for ink in inks:
        for ground in (white, band):
            colours += [_blend(ground, ink, t) for t in BLENDS]
    return np.asarray(list(dict.fromkeys(colours))[:256], dtype=np.int32)


def _to_palette(image: Image.Image) -> Image.Image:
    """Each pixel to its nearest palette colour (exactly; Pillow's own lookup is coarser)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int32)
    packed = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
    unique, inverse = np.unique(packed.ravel(), return_inverse=True)
    rgb = np.stack([(unique >> 16) & 255, (unique >> 8) & 255, unique & 255], axis=1)
    palette = _palette()
    nearest = ((rgb[:, None, :] - palette[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
    indices = nearest[inverse].reshape(packed.shape).astype(np.uint8)
    out = Image.fromarray(indices, mode="P")
    out.putpalette(palette.astype(np.uint8).ravel().tolist())
    return out


def legend(result: ServiceResult) -> tuple[tuple[str, str, bool], ...]:
    """What the lines of ``service_png`` are, in drawing order (the PNG has no legend of its own)."""
    specs = {s.chart_id: s for s in chart_specs(result)}
    items = [(s.label, PALETTE[s.css], s.dashed) for key in ("mem", "inst") for s in specs[key].series]
    items.append(("memory limit", PALETTE["limit"], True))
    if specs["mem"].bands:
        items.append(("revision with findings serving (shaded)", "#e8a39b", False))
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True, slots=True)
class ServiceChart:
    """A service's digest chart: drawn where its analysis is (a batch, a job task), mailed later."""

    png: bytes
    alt: str
    legend: tuple[tuple[str, str, bool], ...] = ()


def service_chart(result: ServiceResult) -> ServiceChart:
    return ServiceChart(service_png(result), _alt(result), legend(result))


def stored_chart(key: ServiceKey, png: bytes) -> ServiceChart:
    """A chart read back from a job's store (the PNG only)."""
    return ServiceChart(png, f"{key.service}: memory as % of the limit and instances against load over the week")


def service_png(result: ServiceResult) -> bytes:
    """Memory (troughs, trend, limit) above instances against load, as a small palette PNG."""
    specs = {s.chart_id: s for s in chart_specs(result)}
    figure = Figure(figsize=CHART_SIZE, dpi=CHART_DPI)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True)
    _draw(top, specs["mem"], deploy_labels_at=122.0)
    top.set_ylim(0, 125)
    top.set_yticks([0, 25, 50, 75, 100])
    _draw(bottom, specs["inst"], deploy_labels_at=None)
    stamps, fmt = time_ticks(specs["mem"].start, specs["mem"].end)
    bottom.set_xticks(stamps, [s.strftime(fmt.replace(" %b", "")) for s in stamps])
    figure.tight_layout(pad=0.4, h_pad=0.6)
    raw = io.BytesIO()
    figure.savefig(raw, format="png", dpi=CHART_DPI, facecolor="white")
    small = _to_palette(Image.open(io.BytesIO(raw.getvalue())))
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    return out.getvalue()


def subject(config: DigestConfig, window_end: datetime, changes: WeekChanges, head: str) -> str:
    """The mail's subject: prefix, the week, the headline and the new/ongoing/resolved counts."""
    counts = [
        f"{len(group)} {name}"
        for group, name in (
            (changes.new, "new"),
            (changes.ongoing, "ongoing"),
            (changes.resolved, "resolved"),
        )
        if group
    ]
    week = f"week to {window_end:%d %b}"
    parts = [config.subject_prefix, f"{week}:", head]
    if counts:
        parts.append(f"({', '.join(counts)})")
    return " ".join(p for p in parts if p)


def report_link(config: DigestConfig, window_end: datetime) -> str | None:
    """The full report's URL: ``report_url_base/YYYY-MM-DD/report.html``, when a base is configured."""
    if not config.report_url_base:
        return None
    return f"{config.report_url_base.rstrip('/')}/{window_end:%Y-%m-%d}/report.html"


def report_key(window_end: datetime) -> str:
    """Where the digest command stores the window's full report (the link above points at it)."""
    return f"reports/{window_end:%Y-%m-%d}/report.html"


def render_within(context: dict[str, Any], lines: Sequence[Any], max_html_bytes: int) -> tuple[str, str, int]:
    """Render the digest's HTML and text, listing as many services as fit in ``max_html_bytes`` of
    HTML (Gmail clips longer mails): a fleet too large for one email lists its most urgent services
    and links the rest; when even no service table is not enough, it lists fewer revisions per group
    (new, ongoing, resolved: the most urgent first) and links the rest. Returns the HTML, the text and
    how many services are listed."""
    env = environment()
    shown = len(lines)
    limit: int | None = None  # revisions listed per group; None: all
    changes = context.get("changes")
    most = max((len(g) for g in (changes.new, changes.ongoing, changes.resolved)), default=0) if changes else 0
    while True:
        context.update(services=lines[:shown], hidden=len(lines) - shown, revision_limit=limit)
        html = env.get_template("digest.html.j2").render(context)
        if len(html.encode("utf-8")) <= max_html_bytes or (shown == 0 and limit == 0):
            break
        # Keep a few of each: services first down to KEEP_SERVICES, then revisions down to
        # KEEP_REVISIONS, then whatever is still needed.
        if shown > KEEP_SERVICES:
            shown = max(KEEP_SERVICES, shown // 2)
        elif (limit is None or limit > KEEP_REVISIONS) and most > KEEP_REVISIONS:
            limit = max(KEEP_REVISIONS, (most if limit is None else limit) // 2)
        elif shown:
            shown //= 2
        else:
            limit = (most if limit is None else limit) // 2
    return html, env.get_template("digest.txt.j2").render(context), shown


def safe_name(name: str) -> str:
    """A file name from a user-controlled service name (MIME parameters, not markup)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:60] or "service"


def _alt(result: ServiceResult) -> str:
    said = [
        f"{kind_name(f.kind)}: {f.summary}"
        for f in result.findings
        if f.kind in (FindingKind.MEMORY_BASELINE_RISE, FindingKind.INSTANCE_CREEP)
    ]
    cost = usd(result.cost.cost_usd) if result.cost else "n/a"
    return (
        f"{result.key.service}: memory as % of the limit and instances against load over the week "
        f"(cost {cost}). " + ("; ".join(said) if said else "Memory flat, instances follow the load.")
    )
