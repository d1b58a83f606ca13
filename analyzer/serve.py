"""``cloudrun-analyzer serve``: the job behind an HTTP endpoint, for teams that run a service, not a job.

``POST /run`` (body optional: ``{"digest": "auto" | "now" | "skip"}``) checks the caller's OIDC token
(analyzer/oidc.py), then runs the whole fleet as one task and answers with the run's outcome as
JSON. The run happens inside the request on purpose: Cloud Run gives a service CPU only while it
is handling a request, so work left running after the answer would crawl. One run at a time: a
second ``POST /run`` meanwhile is answered 409, which Cloud Scheduler retries. ``GET /healthz``
answers 200 without a token.

Answers: 200 run done · 400 bad body · 401 no or malformed token · 403 token refused · 404/405
unknown path or method · 409 a run is in progress · 500 the run failed (the body names the fix) ·
503 the signing certificates could not be fetched.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.auth import transport

from analyzer import logs
from analyzer.errors import AnalyzerError
from analyzer.oidc import CachedCertsRequest, TokenPolicy, TokenRejected, verify

log = logs.get("serve")
MAX_BODY = 4096
DIGEST_MODES = ("auto", "now", "skip")
Runner = Callable[[str], Mapping[str, Any]]  # digest mode -> outcome


class TriggerServer(ThreadingHTTPServer):
    """An HTTP server that runs ``runner`` for each authorized ``POST /run``, one at a time."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        policy: TokenPolicy,
        runner: Runner,
        request: transport.Request | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        self.policy = policy
        self.runner = runner
        self.certs_request = request or CachedCertsRequest()
        self.busy = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: TriggerServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _answer(self, status: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._answer(HTTPStatus.OK, {"status": "ok"})
        else:
            self._answer(HTTPStatus.NOT_FOUND, {"error": "not found; POST /run triggers a run"})

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/run":
            self._answer(HTTPStatus.NOT_FOUND, {"error": "not found; POST /run triggers a run"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body over {MAX_BODY} bytes"})
            return
        body = self.rfile.read(length) if length else b""
        try:
            claims = verify(
                self.headers.get("Authorization"), self.server.policy, request=self.server.certs_request
            )
        except TokenRejected as exc:
            log.warning("refused a run request: %s", exc.reason, extra={"status": exc.status})
            self._answer(exc.status, {"error": exc.reason})
            return
        try:
            mode = _digest_mode(body)
        except ValueError as exc:
            self._answer(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        self._run(str(claims.get("email")), mode)

    def _run(self, caller: str, mode: str) -> None:
        if not self.server.busy.acquire(blocking=False):
            self._answer(HTTPStatus.CONFLICT, {"error": "a run is in progress; retry later"})
            return
        try:
            log.info("run requested by %s (digest: %s)", caller, mode, extra={"caller": caller})
            outcome = self.server.runner(mode)
            self._answer(HTTPStatus.OK, {"status": "done", **outcome})
        except AnalyzerError as exc:
            log.error("run failed: %s", exc.message, extra={"hint": exc.hint, "exit_code": exc.exit_code})
            self._answer(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": exc.message, "fix": exc.hint, "exit_code": exc.exit_code},
            )
        except Exception as exc:
            log.exception("run failed with an internal error")
            self._answer(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {type(exc).__name__}"})
        finally:
            self.server.busy.release()

    def do_PUT(self) -> None:
        self._answer(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use POST /run"})

    do_DELETE = do_PATCH = do_PUT


def _digest_mode(body: bytes) -> str:
    if not body.strip():
        return "auto"
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"the body is not JSON: {exc}") from exc
    mode = data.get("digest", "auto") if isinstance(data, dict) else None
    if mode not in DIGEST_MODES:
        raise ValueError(f'body must be {{"digest": "auto" | "now" | "skip"}}, got {body[:200]!r}')
    return str(mode)
