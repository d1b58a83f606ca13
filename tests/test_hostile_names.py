"""Names from the user's project, and data from the store, that once broke or subverted the output:
``$...$`` in a revision name (matplotlib mathtext), ``/`` and ``..`` in a service name (chart keys),
a tampered shard's ``console_url`` (a ``javascript:`` link) and control characters (the terminal)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from analyzer.cli import cli
from analyzer.config import JobConfig
from analyzer.delivery.store import LocalStore
from analyzer.job import FleetDigest, Layout
from analyzer.model import ServiceKey
from analyzer.pipeline import analyze
from analyzer.render.digest import service_png
from analyzer.render.fleet import merge_reports, render_fleet
from analyzer.render.json_report import report_json
from analyzer.sources.snapshot import read_snapshot, write_snapshot
from tests.hostile import write_hostile_snapshot
from tests.wire import T0, linear_distribution, revision, series

MATH_REVISION = r"svc-$\frac{1}$-00002"


def write_two_revisions(directory: Path, *, service: str = "svc", second: str = MATH_REVISION) -> Path:
    """A service whose second revision, deployed mid-window, is named ``second``; the chart marks
    that deploy with the name."""
    first = f"{service}-00001-abc"
    deploy = T0 + timedelta(hours=12)
    points: dict[str, list[tuple[datetime, dict[str, object]]]] = {first: [], second: []}
    for step in range(24 * 12):
        end = T0 + timedelta(minutes=5 * (step + 1))
        level = 0.3 + 0.0004 * step
        points[first if end <= deploy else second].append(
            (end, linear_distribution([level - 0.01, level, level + 0.01]))
        )
    body = {"timeSeries": [series("container/memory/utilizations", values, service=service, revision=name)
                           for name, values in points.items()]}
    revisions = {"revisions": [revision(first, service=service, created=T0 - timedelta(minutes=2)),
                               revision(second, service=service, created=deploy)]}
    write_snapshot(directory, [("timeSeries", "m", body), ("revisions", "r", revisions)])
    return directory


def test_a_dollar_sign_in_a_revision_name_stays_text_in_the_digest_chart(tmp_path: Path) -> None:
    """Regression: a revision named with ``$...$`` crashed the digest's chart (mathtext ParseException)."""
    analysis = analyze(read_snapshot(write_two_revisions(tmp_path / "snap")))
    (result,) = analysis.services
    assert MATH_REVISION in {span.name for span in result.view.spans}
    assert service_png(result).startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "key",
    [
        ServiceKey("shop-prod", "europe-west1", "api"),
        ServiceKey("shop-prod", "europe-west1", "a/b"),
        ServiceKey("shop-prod", "europe-west1", ".."),
        ServiceKey("shop-prod", "europe-west1", "../../../etc"),
        ServiceKey("example.com:shop", "europe-west1", "v1.2"),
        ServiceKey("p", "r", "back\\slash %2F.png"),
    ],
)
def test_any_service_name_makes_one_chart_key_that_splits_back(tmp_path: Path, key: ServiceKey) -> None:
    """Regression: ``/`` in a service name made a chart key the digest could not split; ``..`` crashed."""
    store = LocalStore(tmp_path / "store")
    layout = Layout(datetime(2026, 11, 23, tzinfo=UTC))
    store.write(layout.chart(key), b"png", content_type="image/png")
    assert [path.parent.name for path in (tmp_path / "store").rglob("*.png")] == ["charts"]
    images = FleetDigest(JobConfig(), store)._images(layout)
    assert list(images) == [key] and images[key].png == b"png"


def test_the_fleet_page_makes_console_links_itself(tmp_path: Path) -> None:
    """Regression: the fleet page took ``console_url`` from shard JSON as is (a javascript: link)."""
    analysis = analyze(read_snapshot(write_hostile_snapshot(tmp_path / "snap")))
    shard = report_json(analysis, generated_at=datetime(2026, 11, 20, tzinfo=UTC))
    assert shard["findings"] and shard["services"]
    for item in shard["findings"] + shard["services"]:
        item["console_url"] = "javascript:alert(document.cookie)"
    merged = merge_reports({"0-of-1": shard}, generated_at=datetime(2026, 11, 20, tzinfo=UTC))
    html = render_fleet(merged)
    assert "javascript:" not in html
    assert 'href="https://console.cloud.google.com/run/detail/europe-west1/' in html


ESCAPES = "\x1b]0;owned\x07\x1b[2J\u202e"


def test_control_characters_in_names_do_not_reach_the_terminal(tmp_path: Path) -> None:
    """Regression: a service name with ESC sequences was printed raw (it could retitle or clear the
    terminal, or hide text); they are shown escaped."""
    snap = write_two_revisions(tmp_path / "snap", service=f"svc{ESCAPES}", second="svc-00002-def")
    (snap / "timeSeries" / f"bad{ESCAPES}.json").write_text("{")
    result = CliRunner().invoke(cli, ["report", "--snapshot", str(snap)])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output and "\u202e" not in result.output
    assert "\\x1b]0;owned\\x07" in result.output  # the problem line names the file, escaped
    written = CliRunner().invoke(cli, ["report", "--snapshot", str(tmp_path / f"missing{ESCAPES}")])
    assert written.exit_code == 3
    assert "\x1b" not in written.output and "\\x1b" in written.output


def test_json_output_keeps_names_exact(tmp_path: Path) -> None:
    """Escaping is for the terminal only: the JSON report carries the name as it is."""
    snap = write_two_revisions(tmp_path / "snap", service=f"svc{ESCAPES}", second="svc-00002-def")
    result = CliRunner().invoke(cli, ["report", "--snapshot", str(snap), "--format", "json"])
    assert {s["service"] for s in json.loads(result.stdout)["services"]} == {f"svc{ESCAPES}"}
