"""Memory follows the batch, not the fleet: the same report at N and 4N services.

``cloudrun-analyzer report`` runs as a child process against the fake Monitoring and Cloud Run
APIs on loopback (Google's real clients through the emulator variables), reading a generated fleet
of 7 days at 300 s; it reports its own peak RSS. With batches of N services, four times
the fleet must cost less than a quarter more memory (measured when it was written: 222 MiB at 8
services, about 250 MiB at 32 in batches of 8, 422 MiB at 32 in one batch). The child reports its own
high-water mark (``VmHWM`` at exit): ``wait4``'s figure would include this test process's image,
copied at fork.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from datetime import timedelta
from typing import IO

from bench.fleet_scale import START, add_aligned_fleet
from tests.fakes.monitoring import FakeMetricService
from tests.fakes.run import FakeRun
from tests.fakes.server import Behaviour, start

DAYS = 7
N = 8
# The CLI, then its own peak resident memory on stderr (``VmHWM``: this process image's, since exec).
CHILD = """
import atexit, sys
def peak():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    sys.stderr.write("\\nVmHWM " + line.split()[1] + "\\n")
atexit.register(peak)
from analyzer.cli import main
sys.argv = ["cloudrun-analyzer", *sys.argv[1:]]
main()
"""


def _report_peak_mib(services: int, *, batch: int) -> tuple[float, dict[str, object]]:
    behaviour = Behaviour()
    monitoring, run = FakeMetricService(behaviour), FakeRun(behaviour)
    add_aligned_fleet(monitoring, run, project="p", services=services, days=DAYS)
    server = start([monitoring, run])
    env = {**os.environ, "MONITORING_EMULATOR_HOST": server.address, "RUN_EMULATOR_HOST": server.address,
           "NO_GCE_CHECK": "true"}
    window = ["--start", START.isoformat(), "--end", (START + timedelta(days=DAYS)).isoformat()]
    args = ["report", "--project", "p", *window, "--workers", "1", "--batch-size", str(batch), "--format", "json"]
    child = subprocess.Popen([sys.executable, "-c", CHILD, *args], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    output: dict[str, bytes] = {}

    def drain(name: str, stream: IO[bytes]) -> None:
        output[name] = stream.read()

    readers = [threading.Thread(target=drain, args=(name, stream))
               for name, stream in (("out", child.stdout), ("err", child.stderr))]
    for reader in readers:
        reader.start()
    child.wait()
    for reader in readers:
        reader.join()
    for stream in (child.stdout, child.stderr):
        if stream is not None:
            stream.close()
    server.stop()
    assert child.returncode == 0, output["err"].decode()[-2000:]
    [peak_kib] = re.findall(r"^VmHWM (\d+)$", output["err"].decode(), flags=re.M)
    return int(peak_kib) / 1024, json.loads(output["out"])


def test_four_times_the_fleet_costs_less_than_a_quarter_more_memory() -> None:
    small, small_report = _report_peak_mib(N, batch=N)
    large, large_report = _report_peak_mib(4 * N, batch=N)
    assert len(small_report["services"]) == N  # type: ignore[arg-type]
    assert len(large_report["services"]) == 4 * N  # type: ignore[arg-type]
    assert large < 1.25 * small, f"peak RSS {small:.0f} MiB at {N} services, {large:.0f} MiB at {4 * N}"
