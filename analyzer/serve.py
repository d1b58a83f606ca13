"""``cloudrun-analyzer serve``: the job behind an HTTP endpoint, for teams that run a service, not a job.

``POST /run`` (body optional: ``{"digest": "auto" | "now" | "skip"}``) checks the caller's OIDC token
(analyzer/oidc.py), then runs the whole fleet as one task and answers with the run's outcome as
JSON. The run happens inside the request on purpose: Cloud Run gives a service CPU only while it
is handling a request, so work left running after the answer would crawl. One run at a time: a
second ``POST /run`` meanwhile is answered 409, which Cloud Scheduler retries. ``GET /healthz``
answers 200 without a token.

Answers: 200 run done · 400 bad body or Content-Length · 401 no or malformed token · 403 token
refused · 404/405 unknown path or method · 409 a run is in progress · 413 body over 4 KiB · 500 the
run failed (the body names the fix) · 503 the signing certificates could not be fetched, or every
worker is busy.

What a caller can make it spend is bounded: the body (at most 4 KiB, read only once the token is
accepted), the time a client may take to send (a socket timeout), and the requests handled at once
(a fixed number of workers; beyond it 503 at once). 401 and 403 bodies are fixed and say nothing of
why; the reason is logged.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from google.auth import transport

from analyzer import logs
from analyzer.errors import AnalyzerError, ConfigError
from analyzer.oidc import IAM_HEADER, CachedCertsRequest, TokenPolicy, TokenRejected, behind_cloud_run, verify

log = logs.get("serve")
MAX_BODY = 4096
WORKERS = 8  # requests handled at once; a run holds one for its whole length
SOCKET_TIMEOUT_S = 10.0  # the longest a client may stay silent while sending its request
DIGEST_MODES = ("auto", "now", "skip")
Runner = Callable[[str], Mapping[str, Any]]  # digest mode -> outcome
# Fixed answers: a refused caller learns nothing about why (the reason is logged instead).
REFUSED = {
    HTTPStatus.UNAUTHORIZED: {"error": "unauthorized"},
    HTTPStatus.FORBIDDEN: {"error": "forbidden"},
    HTTPStatus.SERVICE_UNAVAILABLE: {"error": "the token cannot be checked now; retry later"},
}
_LENGTH = re.compile(r"[0-9]{1,12}")
_BUSY_BODY = b'{"error": "every worker is busy; retry later"}'
_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


class TriggerServer(HTTPServer):
    """An HTTP server that runs ``runner`` for each authorized ``POST /run``, one at a time, on at
    most ``workers`` threads."""

    def __init__(
        self,
        address: tuple[str, int],
        *,
        policy: TokenPolicy,
        runner: Runner,
        request: transport.Request | None = None,
        workers: int = WORKERS,
        timeout_s: float = SOCKET_TIMEOUT_S,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if policy.mode == "iam" and not behind_cloud_run(env):
            raise ConfigError(
                "serve.mode iam trusts Cloud Run IAM to have checked each token, and this is not Cloud Run "
                "(K_SERVICE is not set)",
                hint="deploy it as a Cloud Run service that requires roles/run.invoker, or use serve.mode public",
            )
        super().__init__(address, _Handler)
        self.policy = policy
        self.runner = runner
        self.env = env
        self.timeout_s = timeout_s
        self.certs_request = request or CachedCertsRequest()
        self.busy = threading.Lock()
        self.slots = threading.BoundedSemaphore(workers)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Handle the request on a thread of its own while a worker slot is free; 503 otherwise."""
        if not self.slots.acquire(blocking=False):
            try:
                request.settimeout(1.0)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        threading.Thread(target=self._work, args=(request, client_address), daemon=True).start()

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self.slots.release()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: TriggerServer

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.timeout_s)  # a silent client is dropped, not waited for

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
        length = self._content_length()
        if length is None:
            self._answer(HTTPStatus.BAD_REQUEST, {"error": "Content-Length must be one non-negative integer"})
            return
        if length > MAX_BODY:
            self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body over {MAX_BODY} bytes"})
            return
        try:
            self._single_token_headers()
            claims = verify(self.headers, self.server.policy, request=self.server.certs_request, env=self.server.env)
        except TokenRejected as exc:
            log.warning("refused a run request: %s", exc.reason, extra={"status": exc.status})
            self._answer(exc.status, REFUSED.get(HTTPStatus(exc.status), REFUSED[HTTPStatus.FORBIDDEN]))
            self._discard(length)
            return
        try:
            body = self.rfile.read(length) if length else b""
        except TimeoutError:
            self.close_connection = True
            return
        try:
            mode = _digest_mode(body)
        except ValueError as exc:
            self._answer(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        self._run(str(claims.get("email")), mode)

    def _single_token_headers(self) -> None:
        """Refuse a repeated token header: which copy Cloud Run IAM checked is not known, so none is trusted."""
        for name in (IAM_HEADER, "Authorization"):
            if len(self.headers.get_all(name) or []) > 1:
                raise TokenRejected(f"{name} sent more than once", status=401)

    def _content_length(self) -> int | None:
        """The declared body length (0 when absent); None when it is not one non-negative integer."""
        values = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        if not values:
            return 0
        if len(values) > 1 or not _LENGTH.fullmatch(next(iter(values))):
            return None
        return int(next(iter(values)))

    def _discard(self, length: int) -> None:
        """Read and drop a refused request's (bounded) body, so closing does not reset the connection
        before the client has read the answer."""
        try:
            self.wfile.flush()
            self.connection.settimeout(min(1.0, self.server.timeout_s))  # what has arrived, not more
            self.rfile.read(length)
        except OSError:
            pass

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
