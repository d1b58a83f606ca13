"""The history and report store in a Cloud Storage bucket (``gs://BUCKET/PREFIX``).

It lives in the source layer because only this layer imports Google's client libraries; it implements
``analyzer.store.Store``. ``STORAGE_EMULATOR_HOST`` points the client at an emulator (the library then
uses anonymous credentials). ``create`` is a conditional write (``if_generation_match=0``), so two runs
of the same job cannot both claim a key.

Least privilege: every call is an object call (``storage.objects.get/list/create/delete``), which
``roles/storage.objectUser`` on the bucket grants; nothing reads the bucket's own metadata
(``storage.buckets.get``, which no object role has). A missing object and a missing bucket are told
apart by what Cloud Storage says in the 404 itself ("No such object: B/K" or "The specified bucket
does not exist."), not by asking for the bucket.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import google.cloud.storage as storage
from google.api_core import exceptions as api_exceptions
from google.auth.exceptions import DefaultCredentialsError

from analyzer.errors import DeliveryError
from analyzer.store import check_key

TIMEOUT_S = 60.0
DOCUMENTED_ROLE = "roles/storage.objectUser"


def missing_bucket(error: api_exceptions.NotFound) -> bool:
    """Whether a 404 is about the bucket rather than the object (the body says which; an object's
    404 reads "No such object: BUCKET/KEY", a bucket's "The specified bucket does not exist.")."""
    text = f"{error.message} {getattr(error.response, 'text', '')}".lower()
    return "no such object" not in text and ("bucket does not exist" in text or "no such bucket" in text)


class GcsStore:
    """Objects ``PREFIX + key`` in one bucket."""

    def __init__(self, bucket: str, prefix: str = "", *, client: storage.Client | None = None) -> None:
        self.bucket_name = bucket
        self.prefix = prefix
        self._client = client
        self._bucket: Any = None

    @property
    def url(self) -> str:
        return f"gs://{self.bucket_name}/{self.prefix}"

    def location(self, key: str) -> str:
        return f"gs://{self.bucket_name}/{self.prefix}{check_key(key)}"

    def _get_bucket(self) -> Any:
        """The bucket handle; the client is built on first use (no I/O at construction)."""
        if self._bucket is None:
            with self._errors("connect to"):
                client = self._client or storage.Client()
                self._bucket = client.bucket(self.bucket_name)
            if self._client is None:
                # The store owns the client it built: close its connections when the store goes away,
                # rather than leave sockets for the garbage collector (a ResourceWarning in tests).
                weakref.finalize(self, client.close)
        return self._bucket

    def close(self) -> None:
        """Close the connections of the client this store built (it reconnects if used again)."""
        if self._bucket is not None and self._client is None:
            self._bucket.client.close()
        self._bucket = None

    def _blob(self, key: str) -> Any:
        return self._get_bucket().blob(self.prefix + check_key(key))

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        where = self.url
        try:
            yield
        except DefaultCredentialsError as exc:
            raise DeliveryError(
                f"no Google credentials to {action} {where}",
                hint="run `gcloud auth application-default login`, or run as a service "
                "account (Cloud Run jobs use theirs automatically)",
            ) from exc
        except api_exceptions.Forbidden as exc:
            raise DeliveryError(
                f"permission denied to {action} {where}: {exc.message}",
                hint=f"grant {DOCUMENTED_ROLE} on gs://{self.bucket_name} to the analyzer's service "
                f"account: gcloud storage buckets add-iam-policy-binding gs://{self.bucket_name} "
                f"--member serviceAccount:ACCOUNT --role {DOCUMENTED_ROLE}",
            ) from exc
        except api_exceptions.NotFound as exc:
            raise DeliveryError(
                f"cannot {action} {where}: {exc.message}",
                hint=f"create the bucket (gcloud storage buckets create gs://{self.bucket_name}) "
                "or fix store.url",
            ) from exc
        except api_exceptions.GoogleAPIError as exc:
            raise DeliveryError(
                f"cannot {action} {where}: {exc}",
                hint="check the bucket and try again; the Cloud Storage status page "
                "says whether it is an outage",
            ) from exc

    def _call(self, action: str, func: Callable[[], Any]) -> Any:
        with self._errors(action):
            return func()

    def read(self, key: str) -> bytes | None:
        blob = self._blob(key)
        try:
            data: bytes = self._call("read from", lambda: blob.download_as_bytes(timeout=TIMEOUT_S))
        except DeliveryError as exc:
            cause = exc.__cause__
            if isinstance(cause, api_exceptions.NotFound) and not missing_bucket(cause):
                return None
            raise
        return data

    def write(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        blob = self._blob(key)
        self._call(
            "write to", lambda: blob.upload_from_string(data, content_type=content_type, timeout=TIMEOUT_S)
        )

    def create(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> bool:
        blob = self._blob(key)
        # The precondition is what makes this safe against a concurrent run; the existence check only
        # spares an upload (and covers emulators that ignore preconditions).
        if self._call("read from", lambda: blob.exists(timeout=TIMEOUT_S)):
            return False
        try:
            with self._errors("write to"):
                blob.upload_from_string(
                    data, content_type=content_type, if_generation_match=0, timeout=TIMEOUT_S
                )
        except DeliveryError as exc:
            if isinstance(exc.__cause__, api_exceptions.PreconditionFailed):
                return False
            raise
        return True

    def list(self, prefix: str = "") -> list[str]:
        client = self._get_bucket().client
        names = self._call(
            "list",
            lambda: [
                b.name
                for b in client.list_blobs(self.bucket_name, prefix=self.prefix + prefix, timeout=TIMEOUT_S)
            ],
        )
        return sorted(name[len(self.prefix) :] for name in names)

    def delete(self, key: str) -> None:
        blob = self._blob(key)
        try:
            self._call("delete from", lambda: blob.delete(timeout=TIMEOUT_S))
        except DeliveryError as exc:
            if not isinstance(exc.__cause__, api_exceptions.NotFound):
                raise
