"""The CLI through click's CliRunner: outputs, exit codes and error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from analyzer.cli import cli
from analyzer.sources.snapshot import write_snapshot
from tests.wire import T0, revision, series


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    out = tmp_path_factory.mktemp("demo")
    result = CliRunner().invoke(cli, ["report", "--demo", "--out", str(out / "report.html"),
                                      "--json", str(out / "findings.json")])
    assert result.exit_code == 0, result.output
    return out / "report.html", out / "findings.json", result.output


def test_demo_writes_html_and_json_with_the_documented_keys(demo_run: tuple[Path, Path, str]) -> None:
    html, findings, output = demo_run
    assert "<svg" in html.read_text(encoding="utf-8")
    doc = json.loads(findings.read_text(encoding="utf-8"))
    assert doc["schema_version"] == 2
    for finding in doc["findings"]:
        required = {"kind", "project", "region", "service", "revision", "onset", "excess_cost_usd_per_month",
                    "severity", "impact"}
        assert required <= set(finding)
        assert {"harming", "oom_kills", "excess_5xx_requests", "latency_added_ms_p95",
                "time_to_limit_hours"} <= set(finding["impact"])
        assert finding["onset"].endswith("Z")
    for service in doc["services"]:
        assert {"service", "cost_usd", "revisions"} <= set(service)
        assert all({"revision", "cost_usd"} <= set(r) for r in service["revisions"])
    assert "memory_baseline_rise" in output


def test_help_teaches_with_examples() -> None:
    result = CliRunner().invoke(cli, ["report", "--help"])
    assert result.exit_code == 0
    assert "--demo" in result.output and "Examples" in result.output


def test_no_source_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["report"])
    assert result.exit_code == 2
    assert "choose one source" in result.output


def test_missing_snapshot_directory_exits_3_with_a_fix(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["report", "--snapshot", str(tmp_path / "nope")])
    assert result.exit_code == 3
    assert "does not exist" in result.output and "fix:" in result.output


def test_snapshot_with_only_bad_files_exits_5_and_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "timeSeries").mkdir()
    (tmp_path / "timeSeries" / "bad.json").write_text("not json", encoding="utf-8")
    result = CliRunner().invoke(cli, ["report", "--snapshot", str(tmp_path)])
    assert result.exit_code == 5
    assert "bad.json" in result.output


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("analysis:\n  detection:\n    warmup_minuts: 10\n    memory: {min_rise: 5}\n", encoding="utf-8")
    write_snapshot(tmp_path / "s", [("revisions", "r", {"revisions": [revision("svc-00001-abc")]})])
    result = CliRunner().invoke(cli, ["report", "--snapshot", str(tmp_path / "s"), "--config", str(config)])
    assert result.exit_code == 2
    assert "detection.warmup_minuts: unknown key" in result.output
    assert "detection.memory.min_rise" in result.output


def test_format_json_prints_the_report_on_stdout(tmp_path: Path) -> None:
    points = [(T0.replace(minute=m + 1), {"int64Value": "60"}) for m in range(30)]
    body = {"timeSeries": [series("request_count", points, value_type="INT64")]}
    write_snapshot(tmp_path, [("timeSeries", "rc", body),
                              ("revisions", "r", {"revisions": [revision("svc-00001-abc")]})])
    result = CliRunner().invoke(cli, ["report", "--snapshot", str(tmp_path), "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["services"][0]["service"] == "svc"
    assert doc["findings"] == []


def test_the_demo_written_as_a_snapshot_gives_the_same_findings(tmp_path: Path,
                                                                demo_run: tuple[Path, Path, str]) -> None:
    """--demo reads the simulator's bodies in memory; demo-snapshot writes them to disk for --snapshot."""
    written = CliRunner().invoke(cli, ["demo-snapshot", str(tmp_path / "snap")])
    assert written.exit_code == 0, written.output
    result = CliRunner().invoke(cli, ["report", "--snapshot", str(tmp_path / "snap"), "--format", "json"])
    assert result.exit_code == 0, result.output
    from_disk = json.loads(result.stdout)
    in_memory = json.loads(demo_run[1].read_text(encoding="utf-8"))
    assert from_disk["window"] == in_memory["window"]

    def key(doc: dict) -> list:  # type: ignore[type-arg]
        return [(f["kind"], f["service"], f["revision"], f["onset"], f["excess_cost_usd_per_month"])
                for f in doc["findings"]]

    assert key(from_disk) == key(in_memory)
    assert [s["cost_usd"] for s in from_disk["services"]] == [s["cost_usd"] for s in in_memory["services"]]
