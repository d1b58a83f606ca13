"""Which services a Cloud Run Jobs task analyzes: a stable hash of each service, modulo the task count.

Pure and deterministic: the same fleet and the same ``(index, count)`` give the same share on every
machine and every retry, the shares of ``count`` tasks are disjoint and together cover the fleet, and
adding one service moves only that service. ``TaskSlot.from_env`` reads the variables Cloud Run Jobs
sets on each task (``CLOUD_RUN_TASK_INDEX``, 0-based, and ``CLOUD_RUN_TASK_COUNT``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from analyzer.errors import ConfigError
from analyzer.model import ServiceKey

TASK_INDEX = "CLOUD_RUN_TASK_INDEX"
TASK_COUNT = "CLOUD_RUN_TASK_COUNT"
TASK_ATTEMPT = "CLOUD_RUN_TASK_ATTEMPT"
MAX_TASKS = 10_000  # Cloud Run Jobs' own limit on tasks per execution


@dataclass(frozen=True, slots=True)
class TaskSlot:
    """One task of ``count``: ``index`` is 0-based, as Cloud Run numbers them."""

    index: int = 0
    count: int = 1
    attempt: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_TASKS:
            raise ConfigError(
                f"task count {self.count} is outside 1..{MAX_TASKS}",
                hint=f"set {TASK_COUNT} (Cloud Run sets it from --tasks) to 1 or more",
            )
        if not 0 <= self.index < self.count:
            raise ConfigError(
                f"task index {self.index} is outside 0..{self.count - 1}",
                hint=f"{TASK_INDEX} is 0-based and must be below {TASK_COUNT}",
            )

    @property
    def name(self) -> str:
        """``<index>-of-<count>``: the shard's name in the store."""
        return f"{self.index}-of-{self.count}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TaskSlot:
        """The slot Cloud Run Jobs gave this process; ``0-of-1`` outside a job."""
        env = os.environ if env is None else env
        return cls(_whole(env, TASK_INDEX, 0), _whole(env, TASK_COUNT, 1), _whole(env, TASK_ATTEMPT, 0))


def _whole(env: Mapping[str, str], variable: str, default: int) -> int:
    text = env.get(variable, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(
            f"{variable}={text!r} is not a whole number", hint=f"unset {variable} or set it to an integer"
        ) from None


def shard_of(key: ServiceKey, count: int) -> int:
    """The task index (0..count-1) that analyzes ``key``: sha256 of ``project/region/service``."""
    digest = hashlib.sha256(f"{key.project}/{key.region}/{key.service}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def share(keys: Iterable[ServiceKey], slot: TaskSlot) -> list[ServiceKey]:
    """The services of ``keys`` that ``slot`` analyzes, sorted and without duplicates."""
    return sorted(
        {k for k in keys if shard_of(k, slot.count) == slot.index},
        key=lambda k: (k.project, k.region, k.service),
    )
