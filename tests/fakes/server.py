"""What every fake Google API shares: a loopback gRPC server, injected faults and latency, a call log.

A fake is an object with ``handlers() -> list[grpc.GenericRpcHandler]`` and a ``behaviour``.
``serve(fake, ...)`` starts a real gRPC server on 127.0.0.1 (port 0 = any free port) so Google's own
client libraries can talk to it over a plaintext channel, exactly as with the emulator variables.

Faults are rules matched in order against each incoming call (method, project, and optionally a text
its detail holds, e.g. a filter term); a rule fires ``times`` times (None = forever) and answers with
a gRPC status, optionally with the rich ``google.rpc`` error details the real APIs attach (ErrorInfo
for a disabled API).
"""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


@dataclass
class Fault:
    """Answer matching calls with ``code`` instead of data."""

    code: grpc.StatusCode
    message: str
    methods: tuple[str, ...] = ()  # e.g. ("ListTimeSeries",); empty matches every method
    project: str | None = None  # None matches every project
    times: int | None = 1  # how many calls it fails; None = every call
    details: tuple[Message, ...] = ()
    detail_contains: str = ""  # matches only calls whose detail (parent/name and filter) holds this text

    def matches(self, method: str, project: str, detail: str = "") -> bool:
        return (
            (self.times is None or self.times > 0)
            and (not self.methods or method in self.methods)
            and self.project in (None, project)
            and self.detail_contains in detail
        )


@dataclass(frozen=True)
class Call:
    method: str
    project: str
    detail: str  # the request's parent/name and filter, for assertions and debugging
    status: str  # "OK" or the status code name answered
    metadata: tuple[tuple[str, str], ...] = ()  # the request headers the client sent (gRPC metadata)


@dataclass
class Behaviour:
    """Latency, faults and the call log of one or more fakes (they may share one)."""

    latency_s: float = 0.0
    faults: list[Fault] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def count(
        self, method: str | None = None, project: str | None = None, *, status: str | None = None
    ) -> int:
        with self._lock:
            return sum(
                1
                for c in self.calls
                if method in (None, c.method) and project in (None, c.project) and status in (None, c.status)
            )

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(c.method for c in self.calls)

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.faults.clear()

    def enter(self, method: str, project: str, detail: str, context: grpc.ServicerContext) -> None:
        """Called first by every fake RPC: sleeps the latency, logs the call, fires a fault if due."""
        if self.latency_s:
            time.sleep(self.latency_s)
        with self._lock:
            fault = next((f for f in self.faults if f.matches(method, project, detail)), None)
            if fault is not None and fault.times is not None:
                fault.times -= 1
            headers = tuple((str(m.key), str(m.value)) for m in context.invocation_metadata() or ())
            self.calls.append(Call(method, project, detail, fault.code.name if fault else "OK", headers))
        if fault is not None:
            abort(context, fault.code, fault.message, fault.details)


def abort(
    context: grpc.ServicerContext, code: grpc.StatusCode, message: str, details: Sequence[Message] = ()
) -> None:
    """End the call with a status carrying google.rpc details, as Google's front ends do."""
    packed = []
    for detail in details:
        wrapper = any_pb2.Any()
        wrapper.Pack(detail)
        packed.append(wrapper)
    status = status_pb2.Status(code=code.value[0], message=message, details=packed)
    context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("abort_with_status returned")  # pragma: no cover - grpc always raises


HTTP_STATUS = {"INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404,
               "RESOURCE_EXHAUSTED": 429, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504}


def rest_error_body(code: grpc.StatusCode, message: str, details: Sequence[Message] = ()) -> dict[str, Any]:
    """The body the REST front end answers for a call that a fake (or Google) refused with ``code``:
    ``{"error": {"code": HTTP, "message": ..., "status": NAME, "details": [...]}}``, what curl saves."""
    error: dict[str, Any] = {"code": HTTP_STATUS.get(code.name, 500), "message": message, "status": code.name}
    if details:
        error["details"] = [{"@type": f"type.googleapis.com/{d.DESCRIPTOR.full_name}",
                             **json_format.MessageToDict(d)} for d in details]
    return {"error": error}


def list_page(items: Sequence[Any], request: Any, response: Any, field_name: str, context: grpc.ServicerContext,
         *, default_size: int) -> Any:
    """Fill ``response.<field_name>`` with one page of ``items`` for a List request, as Google's APIs
    page: ``page_size`` items (the default when 0) and an opaque ``next_page_token`` while more remain."""
    offset = 0
    if request.page_token:
        try:
            offset = int(base64.urlsafe_b64decode(request.page_token).decode())
        except (ValueError, UnicodeDecodeError):
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "invalid page_token")
    size = request.page_size if request.page_size > 0 else default_size
    getattr(response, field_name).extend(items[offset : offset + size])
    if offset + size < len(items):
        response.next_page_token = base64.urlsafe_b64encode(str(offset + size).encode()).decode()
    return response


def unary(method: Any, request_pb: Any) -> grpc.RpcMethodHandler:
    """A unary gRPC handler whose request parses into ``request_pb`` and whose response is a protobuf."""
    return grpc.unary_unary_rpc_method_handler(
        method,
        request_deserializer=request_pb.FromString,
        response_serializer=lambda message: bytes(message.SerializeToString()),
    )


# ---------------------------------------------------------------------------------------------
# Faults as the real APIs send them


def _methods(method: str | None) -> tuple[str, ...]:
    return (method,) if method else ()


def unavailable(*, times: int | None = 1, method: str | None = None, project: str | None = None) -> Fault:
    return Fault(
        grpc.StatusCode.UNAVAILABLE, "The service is currently unavailable.", _methods(method), project, times
    )


def deadline_exceeded(
    *, times: int | None = 1, method: str | None = None, project: str | None = None
) -> Fault:
    return Fault(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "Deadline expired before operation could complete.",
        _methods(method),
        project,
        times,
    )


def resource_exhausted(
    *, times: int | None = 1, method: str | None = None, project: str | None = None
) -> Fault:
    return Fault(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "Quota exceeded for quota metric 'Time series queries' and limit 'Time series queries per minute' "
        f"of service 'monitoring.googleapis.com' for consumer 'project_number:{project or '000000000000'}'.",
        _methods(method),
        project,
        times,
        (
            error_details_pb2.ErrorInfo(
                reason="RATE_LIMIT_EXCEEDED",
                domain="googleapis.com",
                metadata={"service": "monitoring.googleapis.com"},
            ),
        ),
    )


PERMISSIONS = {
    "ListTimeSeries": "monitoring.timeSeries.list",
    "ListRevisions": "run.revisions.list",
    "ListServices": "run.services.list",
}


def permission_denied(project: str, *, method: str = "ListTimeSeries", times: int | None = None) -> Fault:
    permission = PERMISSIONS.get(method, "unknown.permission")
    return Fault(
        grpc.StatusCode.PERMISSION_DENIED,
        f"Permission '{permission}' denied on resource 'projects/{project}' (or it may not exist).",
        (method,),
        project,
        times,
        (
            error_details_pb2.ErrorInfo(
                reason="IAM_PERMISSION_DENIED",
                domain="iam.googleapis.com",
                metadata={"permission": permission},
            ),
        ),
    )


API_TITLES = {
    "monitoring.googleapis.com": "Cloud Monitoring API",
    "run.googleapis.com": "Cloud Run Admin API",
}
API_METHODS = {
    "monitoring.googleapis.com": ("ListTimeSeries",),
    "run.googleapis.com": ("ListRevisions", "ListServices"),
}


def service_disabled(
    project: str, service: str = "monitoring.googleapis.com", *, times: int | None = None
) -> Fault:
    """PERMISSION_DENIED with ErrorInfo reason SERVICE_DISABLED: what an API not enabled answers."""
    title = API_TITLES.get(service, service)
    return Fault(
        grpc.StatusCode.PERMISSION_DENIED,
        f"{title} has not been used in project {project} before or it is disabled. Enable it by visiting "
        f"https://console.developers.google.com/apis/api/{service}/overview?project={project} then retry.",
        API_METHODS.get(service, ()),
        project,
        times,
        (
            error_details_pb2.ErrorInfo(
                reason="SERVICE_DISABLED",
                domain="googleapis.com",
                metadata={"service": service, "consumer": f"projects/{project}"},
            ),
        ),
    )


# ---------------------------------------------------------------------------------------------
# Serving


class Fake(Protocol):
    behaviour: Behaviour

    def handlers(self) -> list[grpc.GenericRpcHandler]: ...


@dataclass
class RunningServer:
    server: grpc.Server
    address: str  # "127.0.0.1:PORT", the value for MONITORING_EMULATOR_HOST / RUN_EMULATOR_HOST

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def stop(self) -> None:
        self.server.stop(grace=None).wait()


def start(
    fakes: Iterable[Any], *, host: str = "127.0.0.1", port: int = 0, max_workers: int = 64
) -> RunningServer:
    """Serve every handler of ``fakes`` on one loopback port; stop() it when done."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="fake-google"),
        options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
    )
    for fake in fakes:
        for handler in fake.handlers():
            server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    return RunningServer(server, f"{host}:{bound}")


@contextmanager
def serving(*fakes: Any, port: int = 0) -> Iterator[RunningServer]:
    running = start(fakes, port=port)
    try:
        yield running
    finally:
        running.stop()
