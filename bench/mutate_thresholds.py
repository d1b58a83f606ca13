"""Do the detector tests pin every detection threshold? Double and halve each default of the
``analysis.detection`` section in turn, run the detector tests, and say which mutations no test caught.

    python bench/mutate_thresholds.py                      # every threshold, x2 and x0.5
    python bench/mutate_thresholds.py memory.significance  # just these
    python bench/mutate_thresholds.py --tests tests/test_detector_gates.py

The defaults live in one place, ``analyzer/config.py`` (configs/default.yaml documents them); a mutation
rewrites that file's default for one key, runs pytest on the detector tests (``-x``: the first failure
is enough), and restores the file, also when interrupted. A mutation is *caught* when pytest fails.
Exit status 0 when every mutation was caught, 1 otherwise.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "analyzer" / "config.py"
TESTS = ("tests/test_detector_gates.py", "tests/test_detectors.py")
FACTORS = (2.0, 0.5)


def thresholds() -> dict[str, int | float]:
    """Every numeric default of the detection section, by dotted name (``cpu.min_increase``)."""
    sys.path.insert(0, str(ROOT))
    from analyzer.config import DetectionConfig

    found: dict[str, int | float] = {}
    detection = DetectionConfig()
    for name, value in detection.model_dump().items():
        if isinstance(value, dict):
            found.update({f"{name}.{key}": v for key, v in value.items() if isinstance(v, int | float)})
        elif isinstance(value, int | float):
            found[name] = value
    return found


def _number(value: float, like: int | float) -> str:
    """An integer key (minutes) stays an integer; a float key keeps its fraction (1.5 hours)."""
    return str(round(value)) if isinstance(like, int) else repr(float(value))


def mutated_source(source: str, key: str, value: float, default: float) -> str:
    """``config.py`` with the default of ``key`` replaced: a section's key is passed to the section's
    default instance in ``DetectionConfig`` (so ``latency`` and ``cpu``, one class, mutate apart); a
    top-level key has its ``Field`` default rewritten."""
    section, _, name = key.rpartition(".")
    if not section:
        pattern = re.compile(rf"(\n    {name}: \w+ = Field\()([^,]+)(,)")
        result, count = pattern.subn(lambda m: m.group(1) + _number(value, default) + m.group(3), source, count=1)
    else:
        pattern = re.compile(rf"(\n    {section}: (\w+) = \2\()([^)]*)(\))")

        def edit(m: re.Match[str]) -> str:
            kwargs = [part.strip() for part in m.group(3).split(",") if part.strip()]
            kwargs = [part for part in kwargs if not part.startswith(f"{name}=")]
            kwargs.append(f"{name}={_number(value, default)}")
            return m.group(1) + ", ".join(kwargs) + m.group(4)

        result, count = pattern.subn(edit, source, count=1)
    if count != 1:
        raise SystemExit(f"cannot find the default of {key} in {CONFIG}: update mutated_source()")
    return result


def run_tests(tests: list[str]) -> tuple[bool, float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:randomly", "-p", "no:cacheprovider", *tests],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    failed = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return done.returncode != 0, time.perf_counter() - started, failed[0] if failed else done.stdout[-200:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("keys", nargs="*", help="dotted keys (default: every detection threshold)")
    parser.add_argument("--tests", nargs="*", default=list(TESTS), help="test files to run")
    args = parser.parse_args(argv)
    defaults = thresholds()
    keys = args.keys or list(defaults)
    original = CONFIG.read_text(encoding="utf-8")
    survivors: list[str] = []
    clean, seconds, detail = run_tests(args.tests)
    if clean:
        print(f"the tests fail before any mutation ({detail}): fix them first", file=sys.stderr)
        return 2
    print(f"unmutated: pass in {seconds:.0f} s")
    try:
        for key in keys:
            for factor in FACTORS:
                value = defaults[key] * factor
                CONFIG.write_text(mutated_source(original, key, value, defaults[key]), encoding="utf-8")
                caught, seconds, detail = run_tests(args.tests)
                CONFIG.write_text(original, encoding="utf-8")
                verdict = "caught" if caught else "SURVIVED"
                print(f"{key:32s} x{factor:<4g} = {_number(value, defaults[key]):>8s}  {verdict:8s} "
                      f"{seconds:5.0f} s  {detail if caught else ''}", flush=True)
                if not caught:
                    survivors.append(f"{key} x{factor:g}")
    finally:
        CONFIG.write_text(original, encoding="utf-8")
    print(f"\n{len(keys) * len(FACTORS) - len(survivors)} of {len(keys) * len(FACTORS)} mutations caught"
          + (f"; survived: {', '.join(survivors)}" if survivors else ""))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
