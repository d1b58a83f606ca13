"""The image installs exactly what ``requirements.lock`` pins, by hash, and ``pyproject.toml`` admits no
release with a known CVE: the lock must satisfy every dependency and pin each one with hashes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def locked() -> dict[str, tuple[Version, int]]:
    """name -> (pinned version, number of hashes) from requirements.lock."""
    text = (ROOT / "requirements.lock").read_text()
    pins: dict[str, tuple[Version, int]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        if match:
            pins[match[1].lower().replace("_", "-")] = (Version(match[2]), block.count("--hash=sha256:"))
    return pins


def dependencies() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(spec) for spec in project["dependencies"]]


def test_the_lock_pins_every_dependency_within_its_bounds_with_hashes() -> None:
    pins = locked()
    for requirement in dependencies():
        version, hashes = pins[requirement.name.lower()]
        assert requirement.specifier.contains(version), (requirement, version)
        assert hashes >= 1, requirement.name
    assert all(hashes >= 1 for _, hashes in pins.values())
    assert "hatchling" in pins  # the build backend too: the image builds without isolation


def test_the_image_installs_the_lock_by_hash() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --require-hashes --no-deps -r requirements.lock" in dockerfile
    assert "pip install --no-deps --no-build-isolation ." in dockerfile


@pytest.mark.parametrize(
    ("name", "vulnerable"),
    [("jinja2", "3.1.5"), ("pillow", "10.2.0"), ("pillow", "11.2.1"), ("requests", "2.32.3")],
)
def test_lower_bounds_exclude_releases_with_known_cves(name: str, vulnerable: str) -> None:
    (requirement,) = [r for r in dependencies() if r.name.lower() == name]
    assert not requirement.specifier.contains(vulnerable)
