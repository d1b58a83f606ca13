"""The store in a local directory: run history and reports as files (``analyzer.store.Store``).

A store reads and writes bytes under ``/``-separated keys, lists keys by prefix, and creates a key
only if it does not exist yet (what makes a retried job idempotent). The contract and ``open_store``
are in ``analyzer.store``; the Cloud Storage implementation is ``analyzer.sources.gcs``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from analyzer.errors import DeliveryError
from analyzer.store import check_key


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
