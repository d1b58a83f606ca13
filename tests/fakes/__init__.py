"""Fake Google APIs on loopback gRPC, for testing with Google's real client libraries.

- ``monitoring.FakeMetricService``: Cloud Monitoring ListTimeSeries (filters, aligners, reducers,
  group_by_fields, distributions, paging);
- ``run.FakeRun``: Cloud Run Admin v2 ListRevisions and ListServices;
- ``server``: start/stop on 127.0.0.1, injected faults and latency, the call log;
- ``fleet``: synthetic fleets of services with raw 60-second series;
- ``python -m tests.fakes``: the same as a standalone process (see ``__main__``).
"""

from tests.fakes.monitoring import FakeMetricService
from tests.fakes.run import FakeRun
from tests.fakes.server import Behaviour, Fault, RunningServer, serving, start

__all__ = ["Behaviour", "FakeMetricService", "FakeRun", "Fault", "RunningServer", "serving", "start"]
