"""A snapshot whose user-controlled names carry markup: a service name, a revision label and a revision
annotation with ``<script>`` and attribute-breaking quotes, built with tests/wire.py. Its one revision
leaks memory, so the report and the digest show a finding card with the revision's labels."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

from analyzer.sources.snapshot import write_snapshot
from tests.wire import T0, linear_distribution, revision, series

# No "/" in the service name: it is part of the revision's resource name, which must still parse.
HOSTILE_SERVICE = '<script>alert("svc")<b onmouseover=alert(2)>'
HOSTILE_LABEL = '"><script>alert("label")</script>'
HOSTILE_ANNOTATION = "<img src=x onerror=alert('annotation')><script>alert(1)</script>"
REVISION = "hostile-00001-abc"
HOURS = 36
STEP_MINUTES = 5


def write_hostile_snapshot(directory: Path) -> Path:
    """A leaking revision of a hostile-named service over 36 hours, as Google's REST JSON."""
    memory, cpu, requests, instances = [], [], [], []
    for step in range(HOURS * 60 // STEP_MINUTES):
        end = T0 + timedelta(minutes=STEP_MINUTES * (step + 1))
        hours = step * STEP_MINUTES / 60
        sawtooth = 0.03 * ((step % 6) / 6)  # a small GC sawtooth on top of the leak
        level = 0.25 + 0.012 * hours + sawtooth
        memory.append((end, linear_distribution([level - 0.01, level, level + 0.01])))
        cpu.append((end, linear_distribution([0.2, 0.25, 0.3])))
        rate = 40 + 10 * math.sin(hours / 24 * 2 * math.pi)
        requests.append((end, {"int64Value": str(int(rate * 60))}))
        instances.append((end, {"int64Value": "3"}))
    common = {"service": HOSTILE_SERVICE, "revision": REVISION}
    body = {
        "timeSeries": [
            series("container/memory/utilizations", memory, **common),
            series("container/cpu/utilizations", cpu, **common),
            series(
                "request_count",
                requests,
                value_type="INT64",
                labels={"response_code": "200", "response_code_class": "2xx"},
                **common,
            ),
            series(
                "container/instance_count",
                instances,
                kind="GAUGE",
                value_type="INT64",
                labels={"state": "active"},
                **common,
            ),
        ]
    }
    rev = revision(
        REVISION,
        service=HOSTILE_SERVICE,
        created=T0 - timedelta(minutes=2),
        labels={"team": HOSTILE_LABEL, "commit-sha": HOSTILE_LABEL},
        annotations={"deploy-note": HOSTILE_ANNOTATION},
    )
    write_snapshot(
        directory, [("timeSeries", "hostile", body), ("revisions", "hostile", {"revisions": [rev]})]
    )
    return directory
