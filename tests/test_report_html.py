"""The HTML report as markup: user-controlled names come out inert, the page is self-contained, and
the accessibility basics hold (alt text on charts, table headers, headings, unique ids)."""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from analyzer.analysis import Analysis
from analyzer.pipeline import analyze
from analyzer.render.charts import chart_specs, svg_chart
from analyzer.render.html import render_report
from analyzer.render.json_report import report_json
from analyzer.resources import templates_dir
from analyzer.sources.snapshot import read_snapshot
from tests.hostile import HOSTILE_ANNOTATION, HOSTILE_LABEL, HOSTILE_SERVICE, write_hostile_snapshot
from tests.sidecars import LEAKING_REVISION, SIDECAR_FIXED, SIDECAR_FLAT, SIDECAR_LEAKS, analysis_of

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
CONSOLE = "https://console.cloud.google.com/"


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    children: list[Element] = field(default_factory=list)


class Tree(HTMLParser):
    """Every element with its attributes and its own text, plus the text of each element's subtree."""

    VOID = frozenset(
        {"meta", "link", "br", "img", "input", "hr", "line", "rect", "path", "circle", "polyline"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.stack: list[Element] = []
        self.script_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        if self.stack:
            self.stack[-1].children.append(element)
        self.elements.append(element)
        if tag not in self.VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        if self.stack:
            self.stack[-1].children.append(element)
        self.elements.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop().tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for element in self.stack:
            element.text += data
        if self.stack and self.stack[-1].tag == "script":
            self.script_text.append(data)

    def all(self, tag: str) -> list[Element]:
        return [e for e in self.elements if e.tag == tag]


def parse(html: str) -> Tree:
    tree = Tree()
    tree.feed(html)
    tree.close()
    return tree


@pytest.fixture(scope="module")
def demo_html(demo_analysis: Analysis) -> str:
    return render_report(demo_analysis, generated_at=NOW)


@pytest.fixture(scope="module")
def hostile_html(tmp_path_factory: pytest.TempPathFactory) -> str:
    analysis = analyze(read_snapshot(write_hostile_snapshot(tmp_path_factory.mktemp("hostile"))))
    assert analysis.findings, "the hostile revision must leak, so that its labels are shown on a finding"
    return render_report(analysis, generated_at=NOW)


def assert_only_the_sort_script_runs(tree: Tree) -> None:
    """One script, byte for byte the overview's sorter, and a CSP that allows that script and the
    page's own style only."""
    (script,) = tree.all("script")
    assert script.attrs == {}
    text = "".join(tree.script_text)
    assert text == (templates_dir() / "report.js").read_text(encoding="utf-8")
    (csp,) = [m for m in tree.all("meta") if m.attrs.get("http-equiv") == "Content-Security-Policy"]
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    policy = dict(p.strip().split(" ", 1) for p in csp.attrs["content"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == f"'sha256-{digest}'"
    (style,) = tree.all("style")
    style_digest = base64.b64encode(hashlib.sha256(style.text.encode()).digest()).decode()
    assert policy["style-src"] == f"'sha256-{style_digest}'"
    assert "unsafe" not in csp.attrs["content"]


def test_hostile_service_name_label_and_annotation_are_inert(hostile_html: str) -> None:
    tree = parse(hostile_html)
    assert_only_the_sort_script_runs(tree)
    for element in tree.elements:
        handlers = [name for name in element.attrs if name.startswith("on")]
        assert handlers == [], f"<{element.tag}> has event handler attributes {handlers}"
        assert element.tag not in ("img", "iframe", "object", "embed"), f"injected <{element.tag}>"
    text = " ".join(e.text for e in tree.all("body"))
    for hostile in (HOSTILE_SERVICE, HOSTILE_LABEL, HOSTILE_ANNOTATION):
        assert hostile in text, f"{hostile!r} should be shown as text"
    assert "&lt;script&gt;" in hostile_html


def test_the_report_is_self_contained(demo_html: str) -> None:
    tree = parse(demo_html)
    for element in tree.elements:
        for name in ("src", "href", "xlink:href", "action", "poster", "data"):
            value = element.attrs.get(name, "")
            if value.startswith(("http://", "https://", "//")):
                assert value.startswith(CONSOLE), (
                    f"<{element.tag} {name}={value!r}> fetches or links off-page"
                )
    assert tree.all("link") == []
    assert_only_the_sort_script_runs(tree)
    assert tree.all("img") == []
    assert "@import" not in demo_html
    assert "url(" not in demo_html


def test_internal_links_resolve_to_ids(demo_html: str) -> None:
    assert_internal_links_resolve(demo_html)


def assert_internal_links_resolve(html: str) -> None:
    tree = parse(html)
    ids = [e.attrs["id"] for e in tree.elements if "id" in e.attrs]
    assert len(ids) == len(set(ids)), "duplicate ids"
    for element in tree.all("a"):
        href = element.attrs.get("href", "")
        if href.startswith("#"):
            assert href[1:] in ids, f"link {href} points nowhere"
        assert element.text.strip(), f"link {href} has no text"


def test_charts_have_alt_text_and_tables_have_headers(demo_html: str) -> None:
    tree = parse(demo_html)
    assert tree.all("html")[0].attrs.get("lang") == "en"
    by_id = {e.attrs["id"]: e for e in tree.elements if "id" in e.attrs}
    sparklines = [svg for svg in tree.all("svg") if svg.attrs.get("class") == "spark"]
    assert len(sparklines) == 3  # one per service in the overview, beside its peak written out
    assert all(svg.attrs.get("aria-hidden") == "true" for svg in sparklines)
    charts = [svg for svg in tree.all("svg") if svg.attrs.get("class") == "chart"]
    assert len(charts) >= 12  # four per service
    for svg in charts:
        assert svg.attrs.get("role") == "img"
        title_id, desc_id = svg.attrs["aria-labelledby"].split()
        assert by_id[title_id].tag == "title"
        assert by_id[title_id].text.strip()
        assert by_id[desc_id].tag == "desc"
        assert len(by_id[desc_id].text) > 40
    for table in tree.all("table"):
        headers = [e for e in tree.elements if e.tag == "th" and e in _descendants(table)]
        assert headers, "a table without header cells"
        assert all(h.attrs.get("scope") in ("col", "row") for h in headers)
    levels = [int(e.tag[1]) for e in tree.elements if re.fullmatch(r"h[1-6]", e.tag)]
    assert levels[0] == 1
    assert levels.count(1) == 1
    assert all(b - a <= 1 for a, b in itertools.pairwise(levels)), "a heading level is skipped"


def _descendants(element: Element) -> list[Element]:
    found = []
    for child in element.children:
        found.append(child)
        found.extend(_descendants(child))
    return found


def test_summary_comes_first_with_dollars_and_the_culprit_revision(demo_html: str) -> None:
    tree = parse(demo_html)
    headings = [e.text.strip() for e in tree.all("h2")]
    assert headings[0] == "Summary"
    summary = demo_html[demo_html.index('id="summary-h"') : demo_html.index('id="service-')]
    assert "per month at risk" in summary
    assert "spent in this window" in summary
    assert "llm-router-00042-xyz" in summary
    assert "fixed by llm-router-00043-fix" in summary
    assert "instances OOM-killed 2 times" in summary  # the harm, beside the dollars


def test_leak_card_says_the_limit_was_already_reached_and_links_the_console(demo_html: str) -> None:
    card = demo_html[demo_html.index('id="incident-llm-router-llm-router-00042-xyz"') :]
    card = card[: card.index("</article>")]
    assert "Reached the memory limit before the fix" in card  # its instances hit 100 % and were replaced
    assert "reaches its memory limit in about" not in card
    assert "commit <code>a71d0b4</code>" in card
    assert "llm-router@sha256:" in card
    assert (
        f"{CONSOLE}run/detail/europe-west1/llm-router/revisions?project=demo-project"
        "&amp;revision=llm-router-00042-xyz"
    ) in card
    fix = demo_html[demo_html.index('id="fix-service-llm-router-llm-router-00043-fix"') :]
    assert "measures are back to the baseline of llm-router-00041-abc" in fix[:600]


def test_memory_chart_draws_limit_troughs_trend_and_labelled_deploys(demo_analysis: Analysis) -> None:
    router = next(r for r in demo_analysis.services if r.key.service == "llm-router")
    spec = next(s for s in chart_specs(router) if s.chart_id == "mem")
    chart = svg_chart(spec, step_seconds=demo_analysis.step_seconds)
    css = {line.css for line in chart.lines if line.segments}
    assert {"s1", "s2", "trough", "trend"} <= css
    assert chart.reference is not None
    assert "512 MiB" in chart.reference.label
    assert chart.reference.y == pytest.approx(
        chart.y_ticks[[t.label for t in chart.y_ticks].index("100")].pos
    )
    assert [m.label for m in chart.markers] == ["00042-xyz", "00043-fix"]
    for line in chart.lines:  # every point inside the plot area (the pandas-resolution bug drew off-canvas)
        for segment in line.segments:
            xs = [float(p.split(",")[0]) for p in segment.split()]
            assert chart.left - 1 <= min(xs)
            assert max(xs) <= chart.right + 1
    assert len(chart.bands) == 1  # the leaking revision's time is shaded


def test_mobile_and_print_styles_are_present(demo_html: str) -> None:
    assert "@media (max-width: 600px)" in demo_html
    assert "@media print" in demo_html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in demo_html


def test_report_size_stays_reasonable(demo_html: str, tmp_path: Path) -> None:
    assert len(demo_html.encode()) < 400_000


def test_model_estimates_carry_an_approximately_sign_and_no_cents(demo_html: str) -> None:
    """A finding's excess and a fix's savings are model estimates (issue 16): shown as ≈ and two
    significant figures, never to the cent like the metered cost."""
    amounts = re.findall(r'<span class="finding-usd">([^<]*)/month</span>', demo_html)
    assert amounts and all(a.startswith("≈$") for a in amounts)
    assert not [a for a in amounts if re.fullmatch(r"≈\$[\d,]{2,}\.\d\d", a)]  # no cents from $10 up
    assert "the fix saves <strong>≈$" in demo_html


def _figures(html: str) -> dict[str, str]:
    """Each chart's markup by its id (the SVG's void elements with titles defeat the Tree)."""
    return {m.group(1): html[m.start(): html.index("</figure>", m.start())]
            for m in re.finditer(r'<figure class="[^"]*" id="([^"]+)"', html)}


def test_a_leaking_sidecar_gets_its_own_memory_chart_and_card_named_for_it() -> None:
    html = render_report(analysis_of(SIDECAR_LEAKS), generated_at=NOW)
    figures = _figures(html)
    sidecar, service = figures["service-svc-0000-mem-otel-collector"], figures["service-svc-0000-mem"]
    assert "<strong>Memory utilization of sidecar otel-collector</strong>" in sidecar
    assert "memory limit (256 MiB)</text>" in sidecar and "Sidecar otel-collector leaks" in sidecar
    assert "memory limit (512 MiB)</text>" in service and "No rising baseline found." in service
    assert 'class="chart-box wide"' in sidecar and 'class="chart-box"' in service
    card = html[html.index(f'id="incident-svc-0000-{LEAKING_REVISION}"'):]
    card = card[: card.index("</article>")]
    assert "Memory leak (rising baseline) in sidecar <code>otel-collector</code>" in card
    assert "sidecar <code>otel-collector</code> reaches its own memory limit in the worst instance" in card
    assert "svc-0000: memory leak (rising baseline) in sidecar otel-collector since svc-0000-00002" in html
    assert "<td>memory leak (rising baseline) in sidecar otel-collector</td>" in html  # revisions with findings


def test_healthy_sidecars_add_no_chart_and_the_analyzed_container_is_named() -> None:
    html = render_report(analysis_of(SIDECAR_FLAT), generated_at=NOW)
    assert set(_figures(html)) == {f"service-svc-0000-{c}" for c in ("mem", "inst", "lat", "cpu")}
    assert ("runs sidecar containers (otel-collector): memory and CPU are those of the ingress container app "
            "(each sidecar&#39;s memory is checked for leaks on its own)") in html


def test_a_fixed_sidecar_leak_links_to_its_fix_check_named_for_the_sidecar() -> None:
    analysis = analysis_of(SIDECAR_FIXED)
    (finding,) = analysis.findings
    assert (finding.container, finding.revision, finding.resolved_by) == ("otel-collector", "svc-0000-00002",
                                                                          "svc-0000-00003")
    html = render_report(analysis, generated_at=NOW)
    assert 'href="#fix-service-svc-0000-svc-0000-00003"' in html
    assert_internal_links_resolve(html)
    fix = html[html.index('<h3 id="fix-service-svc-0000-svc-0000-00003">'):]
    fix = fix[: fix.index("</table>")]
    assert "(memory leak (rising baseline) in sidecar otel-collector)?" in fix
    assert "memory baseline (trough) of sidecar otel-collector" in fix
    (doc,) = report_json(analysis, generated_at=NOW)["fixes"]
    assert (doc["container"], doc["broken_revision"], doc["fixing_revision"]) == (
        "otel-collector", "svc-0000-00002", "svc-0000-00003")
