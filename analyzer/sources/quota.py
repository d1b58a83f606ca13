"""Read-rate budgets: Google charges read quota to the consumer project, so the budget is too.

Cloud Monitoring's "time series queries per minute" (and the Admin API's read quota) are counted
against the *consumer* of a call: the credentials' project, or the quota project set for Application
Default Credentials, not the project read. Many projects read under one credential share one budget,
so the live source paces its calls per (API, consumer), with one ``ReadBudget`` shared by every fetch
made with the same clients (a sharded job's batches included).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class ReadBudget:
    """At most ``per_minute`` calls per consumer in any rolling minute; ``acquire`` waits for room."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._sent: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def acquire(self, consumer: str, per_minute: int) -> None:
        while True:
            with self._lock:
                now = self._clock()
                sent = self._sent.setdefault(consumer, deque())
                while sent and sent[0] <= now - 60.0:
                    sent.popleft()
                if len(sent) < per_minute:
                    sent.append(now)
                    return
                pause = sent[0] + 60.0 - now
            self._sleep(pause)

    def spent(self) -> dict[str, int]:
        """Calls per consumer in the last minute (for logs and tests)."""
        with self._lock:
            now = self._clock()
            return {consumer: sum(1 for t in sent if t > now - 60.0) for consumer, sent in self._sent.items()}
