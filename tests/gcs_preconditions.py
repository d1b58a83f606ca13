"""A loopback HTTP proxy in front of gcp-storage-emulator that enforces ``ifGenerationMatch=0``.

The emulator ignores preconditions, so on it two writers of a create-if-absent object both succeed.
This proxy forwards every request unchanged, except multipart and media uploads carrying
``ifGenerationMatch=0``: those are serialized, and answered ``412 conditionNotMet`` (the error Cloud
Storage sends) when the object already exists. Any other ``ifGenerationMatch`` use is refused with 501,
so a test never relies on a precondition nobody enforces.

``expect(name, contenders)`` makes the proxy hold the conditional uploads of ``name`` until that many
have arrived (or a timeout passes) and then let them race: a test can force every task to contend for
one claim at the same instant, and ``outcomes(name)`` tells it who won (200) and who was refused (412).

It also speaks like Cloud Storage where the emulator does not: a 404 carries Google's body ("No such
object: B/K", or "The specified bucket does not exist."), and with ``iam`` set (``tests.gcs_iam``)
every request is checked against the roles its caller holds on the bucket and refused with Google's
403 when a permission is missing, e.g. ``storage.buckets.get`` for an account with object roles only.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

from tests.gcs_iam import BucketIam, forbidden, not_found, target

HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "host", "proxy-connection"})
PRECONDITION_FAILED = {
    "error": {
        "code": 412,
        "message": "At least one of the pre-conditions you specified did not hold.",
        "errors": [
            {
                "domain": "global",
                "reason": "conditionNotMet",
                "message": "At least one of the pre-conditions you specified did not hold.",
                "locationType": "header",
                "location": "If-Match",
            }
        ],
    }
}


class _Contest:
    """Conditional uploads of one object name held until ``contenders`` have arrived."""

    def __init__(self, contenders: int, timeout_s: float) -> None:
        self.contenders = contenders
        self.timeout_s = timeout_s
        self.arrived = 0
        self.ready = threading.Condition()

    def arrive(self) -> None:
        with self.ready:
            self.arrived += 1
            self.ready.notify_all()
            self.ready.wait_for(lambda: self.arrived >= self.contenders, timeout=self.timeout_s)


class PreconditionProxy(ThreadingHTTPServer):
    """Forward to ``upstream`` (``http://host:port``); enforce ``ifGenerationMatch=0`` on uploads."""

    daemon_threads = True

    def __init__(self, upstream: str, iam: BucketIam | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.iam = iam
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.create_lock = threading.Lock()  # one conditional upload at a time: check, then write
        self._lock = threading.Lock()
        self._contests: dict[str, _Contest] = {}
        self._outcomes: dict[str, list[int]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def expect(self, name: str, contenders: int, *, timeout_s: float = 60.0) -> None:
        """Hold conditional uploads of object ``name`` until ``contenders`` of them have arrived."""
        with self._lock:
            self._contests[name] = _Contest(contenders, timeout_s)
            self._outcomes.pop(name, None)

    def outcomes(self, name: str) -> list[int]:
        """HTTP statuses answered to the conditional uploads of ``name``, in order."""
        with self._lock:
            return list(self._outcomes.get(name, []))

    def contest(self, name: str) -> _Contest | None:
        with self._lock:
            return self._contests.get(name)

    def record(self, name: str, status: int) -> None:
        with self._lock:
            self._outcomes.setdefault(name, []).append(status)

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def exists(self, bucket: str, name: str) -> bool:
        path = f"/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"
        status, _, _ = self.forward("GET", path, {}, b"")
        return status == 200

    def bucket_exists(self, bucket: str) -> bool:
        status, _, _ = self.forward("GET", f"/storage/v1/b/{quote(bucket, safe='')}", {}, b"")
        return status == 200


def _upload_name(query: dict[str, list[str]], content_type: str, body: bytes) -> str | None:
    """The object name of an upload: the ``name`` parameter, or the metadata part of a multipart body."""
    if "name" in query:
        return query["name"][0]
    if not content_type.startswith("multipart/"):
        return None
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    for part in message.iter_parts():
        if part.get_content_type() == "application/json":
            payload = part.get_payload(decode=True)
            name = json.loads(payload if isinstance(payload, bytes) else b"{}").get("name")
            return str(name) if name else None
    return None


class _Handler(BaseHTTPRequestHandler):
    server: PreconditionProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet: the test output stays readable
        pass

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if self.server.iam is not None and not self._authorized(self.server.iam, url.path, query, body):
            return
        if "ifGenerationMatch" in query:
            self._conditional(url.path, query, headers, body)
            return
        self._answer(*self._upstream(url.path, headers, body))

    def _upstream(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """Forward the request; a 404 gets the body Cloud Storage sends (the emulator's is empty)."""
        answer = self.server.forward(self.command, self.path, headers, body)
        if answer[0] != 404:
            return answer
        found = target(self.command, path, parse_qs(urlsplit(self.path).query), None)
        if found.bucket is None:
            return answer
        exists = self.server.bucket_exists(found.bucket)
        data = json.dumps(not_found(found.bucket, found.name, bucket_exists=exists)).encode()
        return 404, [("Content-Type", "application/json; charset=UTF-8")], data

    def _authorized(self, iam: BucketIam, path: str, query: dict[str, list[str]], body: bytes) -> bool:
        """Check the caller's permission as Cloud Storage would; answer 403 (or 501) when refused."""
        name = _upload_name(query, self.headers.get("Content-Type", ""), body)
        found = target(self.command, path, query, name)
        if found.permission is None:
            self._json(501, {"error": {"code": 501, "message": f"the IAM double does not model {self.command} {path}"}})
            return False
        if found.permission == "session" or (found.bucket and not self.server.bucket_exists(found.bucket)):
            return True  # a resumed upload was authorized when opened; a missing bucket is a 404
        needed = [found.permission]
        replaces = (
            found.permission == "storage.objects.create"
            and query.get("ifGenerationMatch") != ["0"]
            and self.server.exists(found.bucket or "", found.name or "")
        )
        if replaces:
            needed.append("storage.objects.delete")  # replacing an object also deletes the old one
        missing = iam.missing(found.bucket or "", found.name, needed)
        if missing is None:
            return True
        self._json(403, forbidden(iam.caller, missing, found.bucket or "", found.name))
        return False

    def _conditional(self, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes) -> None:
        segments = path.split("/")  # /upload/storage/v1/b/BUCKET/o
        name = _upload_name(query, self.headers.get("Content-Type", ""), body)
        upload = (
            self.command == "POST"
            and segments[1:5] == ["upload", "storage", "v1", "b"]
            and query.get("uploadType", [""])[0] in ("multipart", "media")
        )
        if not upload or name is None or query["ifGenerationMatch"] != ["0"]:
            self._json(501, {"error": {"code": 501, "message": f"the proxy does not enforce {self.path}"}})
            return
        contest = self.server.contest(name)
        if contest is not None:
            contest.arrive()
        with self.server.create_lock:
            if self.server.exists(segments[5], name):
                self.server.record(name, 412)
                self._json(412, PRECONDITION_FAILED)
                return
            status, response_headers, response_body = self._upstream(path, headers, body)
        self.server.record(name, status)
        self._answer(status, response_headers, response_body)

    def _json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self._answer(status, [("Content-Type", "application/json; charset=UTF-8")], data)

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers:
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _relay


@contextmanager
def enforcing(upstream: str, iam: BucketIam | None = None) -> Iterator[PreconditionProxy]:
    """A running proxy in front of ``upstream``; its ``url`` is the value for STORAGE_EMULATOR_HOST.
    With ``iam``, requests are also checked against the caller's roles (``tests.gcs_iam``)."""
    proxy = PreconditionProxy(upstream, iam)
    thread = threading.Thread(target=proxy.serve_forever, name="gcs-precondition-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=10)
