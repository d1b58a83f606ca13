"""The command line: ``cloudrun-analyzer report|…``. The edge where errors become messages and exit codes.

Exit codes: 0 success · 1 findings present with ``--fail-on-findings`` · 2 bad config or usage ·
3 unreadable input · 4 a Google API call failed · 5 nothing could be analyzed · 6 delivery failed ·
70 internal error (a bug: please report it).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from analyzer import __version__
from analyzer.analysis import Analysis
from analyzer.config import AnalysisConfig, load_yaml, parse_config
from analyzer.errors import AnalyzerError, ConfigError
from analyzer.model import RawData

P = ParamSpec("P")
R = TypeVar("R")

EXIT_FINDINGS = 1
EXIT_INTERNAL = 70


def edge(func: Callable[P, R]) -> Callable[P, R]:
    """Turn AnalyzerErrors into a message on stderr and their exit code; anything else is a bug."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except AnalyzerError as exc:
            click.secho(f"error: {exc.message}", fg="red", err=True)
            if exc.hint:
                click.echo(f"  fix: {exc.hint}", err=True)
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except Exception as exc:  # pragma: no cover - the last line of defence
            click.secho(f"internal error: {type(exc).__name__}: {exc}", fg="red", err=True)
            click.echo("  this is a bug in cloudrun-analyzer; please report it with the command you ran", err=True)
            sys.exit(EXIT_INTERNAL)

    return wrapper


def load_analysis_config(path: Path | None) -> AnalysisConfig:
    """The ``analysis`` part of a config file (or defaults when no file is given)."""
    if path is None:
        return AnalysisConfig()
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys", hint="see configs/default.yaml")
    return parse_config(AnalysisConfig, data.get("analysis", {}), source=f"{path} (analysis)")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cloudrun-analyzer")
def cli() -> None:
    """Find memory leaks, instance creep and latency/CPU regressions in Cloud Run services,
    name the deploy that caused each one, and price it in dollars.

    \b
    Try it with no Google account:
      cloudrun-analyzer report --demo --out report.html --json findings.json
    Analyze saved API responses (docs/snapshot-format.md):
      cloudrun-analyzer report --snapshot DIR --out report.html
    """


def _read_source(demo: bool, snapshot: Path | None, live: Callable[[], RawData] | None) -> RawData:
    chosen = sum([demo, snapshot is not None, live is not None])
    if chosen != 1:
        raise click.UsageError("choose one source: --demo, --snapshot DIR, or --project P (live)")
    from analyzer.pipeline import load_demo
    from analyzer.sources.snapshot import read_snapshot

    if demo:
        return load_demo()
    if snapshot is not None:
        return read_snapshot(snapshot)
    assert live is not None
    return live()


def write_outputs(analysis: Analysis, *, out: Path | None, json_path: Path | None, now: datetime) -> None:
    from analyzer.errors import DeliveryError
    from analyzer.render.html import render_report
    from analyzer.render.json_report import report_json

    try:
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(render_report(analysis, generated_at=now), encoding="utf-8")
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(report_json(analysis, generated_at=now), indent=2), encoding="utf-8")
    except OSError as exc:
        raise DeliveryError(f"cannot write the report: {exc}", hint="check the output path and its permissions") from exc


def print_summary(analysis: Analysis, *, fmt: str, now: datetime) -> None:
    from analyzer.render.json_report import report_json
    from analyzer.render.text import summary_text

    if fmt == "json":
        click.echo(json.dumps(report_json(analysis, generated_at=now), indent=2))
    else:
        click.echo(summary_text(analysis))


def source_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--snapshot", type=click.Path(path_type=Path, file_okay=False),
                        help="Read saved Google API responses from DIR (see docs/snapshot-format.md).")(func)
    func = click.option("--demo", is_flag=True, help="Use the bundled demo scenario (no Google account needed).")(func)
    return func


@cli.command()
@source_options
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="YAML config (thresholds, pricing); see configs/default.yaml.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Write the HTML report here.")
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the findings as JSON here (schema in docs/json-schema.md).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="What to print on stdout.")
@click.option("--fail-on-findings", is_flag=True, help="Exit 1 when there are ongoing findings (for CI gates).")
@edge
def report(demo: bool, snapshot: Path | None, config_path: Path | None, out: Path | None,
           json_path: Path | None, fmt: str, fail_on_findings: bool) -> None:
    """Analyze one window and report findings, costs and fix checks.

    \b
    Examples:
      cloudrun-analyzer report --demo --out report.html --json findings.json
      cloudrun-analyzer report --snapshot ./snap --format json > findings.json
    """
    from analyzer.pipeline import analyze

    config = load_analysis_config(config_path)
    raw = _read_source(demo, snapshot, None)
    analysis = analyze(raw, config)
    now = datetime.now(UTC)
    write_outputs(analysis, out=out, json_path=json_path, now=now)
    print_summary(analysis, fmt=fmt, now=now)
    for path, what in ((out, "HTML report"), (json_path, "JSON findings")):
        if path is not None:
            click.echo(f"wrote {what}: {path}", err=True)
    if fail_on_findings and any(f.ongoing for f in analysis.findings):
        sys.exit(EXIT_FINDINGS)


@cli.command("demo-snapshot")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@edge
def demo_snapshot(directory: Path) -> None:
    """Write the bundled demo scenario as a snapshot DIRECTORY (Google's REST JSON), to inspect or edit."""
    from analyzer.simulate import demo_documents
    from analyzer.sources.snapshot import write_snapshot

    documents, manifest = demo_documents()
    written = write_snapshot(directory, documents, manifest=manifest)
    click.echo(f"wrote {len(written)} files to {directory}")


def main() -> None:
    cli(prog_name="cloudrun-analyzer")
