"""The job config: ``check-config`` accepts the shipped examples and rejects bad files with messages
that name the key and the fix (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from analyzer.cli import cli
from analyzer.config import JobConfig, parse_config
from analyzer.resources import config_file


def check(tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "job.yaml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["check-config", str(path)])
    return result.exit_code, result.output


def test_the_example_job_config_is_valid_and_summarized(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["check-config", str(config_file("example-job.yaml"))])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
    assert "europe-west1, us-central1" in result.output
    assert "CLOUDRUN_ANALYZER_SMTP_PASSWORD" not in result.output or "NOT SET" in result.output


def test_default_yaml_documents_the_job_defaults() -> None:
    data = yaml.safe_load(config_file("default.yaml").read_text(encoding="utf-8"))
    parsed = parse_config(JobConfig, data, source="default.yaml")
    defaults = JobConfig()
    for section in ("regions", "services", "source", "window", "serve"):
        assert getattr(parsed, section) == getattr(defaults, section), section


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "projects: [shop-prod]\nregoins: [us-central1]\n",
            ["regoins: unknown key; did you mean 'regions'?"],
        ),
        ("projects: [123456789]\n", ["projects.0:"]),
        ("projects: [Shop_Prod]\n", ["projects.0: 'Shop_Prod' is not a project ID", "e.g. my-project"]),
        (
            "projects: [shop-prod]\nregions: [us-central]\n",
            ["regions.0: 'us-central' is not a Cloud Run region", "e.g. us-central1"],
        ),
        (
            "projects: [shop-prod]\nwindow: {days: 90}\n",
            ["window.days: Input should be less than or equal to 42"],
        ),
        (
            "projects: [shop-prod]\nwindow: {start: 2026-01-05T00:00:00}\n",
            ["window.start: the time has no zone", "2026-01-05T00:00:00Z"],
        ),
        ("projects: []\n", ["projects: no project to read", "projects: [my-project]"]),
        (
            "projects: [shop-prod]\nwindow: {start: 2026-01-05, end: 2026-01-01}\n",
            ["window.start: is not before"],
        ),
        ("projects: [shop-prod]\nserve: {mode: public}\n", ["serve.audience: public mode needs"]),
        (
            "projects: [shop-prod]\nserve: {allowed_service_accounts: [scheduler]}\n",
            ["serve.allowed_service_accounts.0: 'scheduler' is not an email address"],
        ),
        ("projects: [shop-prod]\nsmtp: {password: hunter2}\n", ["smtp.password: unknown key"]),
        ("projects: [shop-prod]\nsource: {kind: snapshot}\n", ["source.snapshot: kind is snapshot"]),
        ("projects: [shop-prod\n", ["not valid YAML"]),
        ("- a list\n", ["top level must be a mapping"]),
    ],
)
def test_bad_configs_are_rejected_naming_the_key_and_the_fix(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    code, output = check(tmp_path, text)
    assert code == 2, output
    for words in expected:
        assert words in output, output
    assert "fix:" in output
