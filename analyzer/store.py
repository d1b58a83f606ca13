"""The store contract shared by every layer: the ``Store`` protocol, its key rules, its URLs, and
``open_store``, which picks the implementation for a URL.

The implementations live where their libraries may be imported: the local directory in
``analyzer.delivery.store``, the Cloud Storage bucket in ``analyzer.sources.gcs`` (only the source
layer imports Google's libraries). Both import this module and neither imports the other, so data
still flows one way (sources -> ... -> delivery); ``open_store`` is called by the edges (the CLI, the
job), which may know both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from analyzer.errors import ConfigError


@runtime_checkable
class Store(Protocol):
    """Bytes under keys like ``history/2026-11-23T00-00-00Z.json``."""

    @property
    def url(self) -> str:
        """Where the store is, for messages: a directory or ``gs://bucket/prefix``."""
        ...

    def read(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is none."""
        ...

    def write(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Create or replace the object."""
        ...

    def create(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> bool:
        """Create the object only if it does not exist; False (and nothing written) if it does."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix``, sorted."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object if it exists."""
        ...

    def location(self, key: str) -> str:
        """The object's full address (a path or a gs:// URL), for people."""
        ...


def check_key(key: str) -> str:
    """A relative ``/``-separated key without empty, ``.`` or ``..`` parts (no escaping the store)."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid store key {key!r}")
    return key


def split_gcs_url(url: str) -> tuple[str, str]:
    """``gs://bucket/some/prefix`` → (``bucket``, ``some/prefix/``); the prefix is empty or ends in ``/``."""
    if not url.startswith("gs://"):
        raise ConfigError(f"{url!r} is not a gs:// URL", hint="write gs://BUCKET/PREFIX")
    bucket, _, prefix = url[len("gs://") :].partition("/")
    if not bucket:
        raise ConfigError(f"{url!r} names no bucket", hint="write gs://BUCKET/PREFIX")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def open_store(url: str) -> Store:
    """The store at ``url``: ``gs://BUCKET/PREFIX`` (honours STORAGE_EMULATOR_HOST) or a local directory."""
    if url.startswith("gs://"):
        from analyzer.sources.gcs import GcsStore

        bucket, prefix = split_gcs_url(url)
        return GcsStore(bucket, prefix)
    from analyzer.delivery.store import LocalStore

    return LocalStore(Path(url).expanduser())
