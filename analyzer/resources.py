"""Where the packaged templates and configs are, in a source checkout and in an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """``templates`` or ``configs``: inside the wheel (analyzer/_data/NAME) or at the repo root."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"the analyzer's {name}/ directory is missing from this installation")


def templates_dir() -> Path:
    return data_dir("templates")


def config_file(name: str) -> Path:
    return data_dir("configs") / name
