"""The store that keeps run history and reports: a local directory, or a GCS bucket (``gs://B/P``).

A ``Store`` reads and writes bytes under ``/``-separated keys, lists keys by prefix, and creates a key
only if it does not exist yet (what makes a retried job idempotent). The GCS implementation lives in
``analyzer.sources.gcs`` because only the source layer imports Google's libraries.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

from analyzer.errors import ConfigError, DeliveryError


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


class LocalStore:
    """A directory; writes are atomic (temporary file + rename), creates exclusive (hard link)."""

    TEMP_PREFIX = ".tmp-"

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def url(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def location(self, key: str) -> str:
        return str(self._path(key).resolve())

    def read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DeliveryError(
                f"cannot read {self._path(key)}: {exc.strerror}",
                hint="check the store directory's permissions",
            ) from exc

    def _temporary(self, path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=self.TEMP_PREFIX, dir=path.parent)
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        return Path(name)

    def write(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        try:
            os.replace(self._temporary(path, data), path)
        except OSError as exc:
            raise DeliveryError(
                f"cannot write {path}: {exc.strerror}",
                hint="check that the store directory exists and is writable",
            ) from exc

    def create(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> bool:
        path = self._path(key)
        try:
            temporary = self._temporary(path, data)
        except OSError as exc:
            raise DeliveryError(
                f"cannot write {path}: {exc.strerror}",
                hint="check that the store directory exists and is writable",
            ) from exc
        try:
            os.link(temporary, path)  # atomic and exclusive: fails if the name exists
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            raise DeliveryError(
                f"cannot create {path}: {exc.strerror}",
                hint="the store directory must be on a file system with hard links",
            ) from exc
        finally:
            with contextlib.suppress(OSError):
                temporary.unlink()

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        keys = []
        for path in self.root.rglob("*"):
            if path.is_file() and not path.name.startswith(self.TEMP_PREFIX):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()


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
    return LocalStore(Path(url).expanduser())
