"""ListTimeSeries pages as the bytes that came off the wire, through the Monitoring client's own channel.

The client parses every page into protobuf messages (upb) before handing it over, and the column
reader (``sources/columnar.py``) wants the wire bytes back: a second parse and a re-serialization
of up to 100,000 points per page, about twice the cost of receiving the page. So the report asks
for the bytes themselves, with nothing but public APIs and everything the client's call does that
matters kept:

1. the method on the client's gRPC channel (``transport.grpc_channel``) with the client's request
   serializer and no response deserializer (gRPC then hands back the bytes);
2. wrapped by ``gapic_v1.method.wrap_method`` as the transport wraps its own: the caller's Retry and
   timeout, errors turned into ``google.api_core.exceptions`` (``from_grpc_error``), the
   ``x-goog-api-client`` header of the client's ``DEFAULT_CLIENT_INFO``;
3. each call sends the ``x-goog-request-params`` routing header with the project name, as the
   client does, and the pages follow ``next_page_token`` (read from the bytes) with the same Retry
   and timeout, as the client's pager does.

Not kept: the client's check that the credentials' universe domain matches its endpoint (a private
method; the channel was built for the endpoint already) and its debug-logging interceptor. A
transport that is not gRPC has no channel: ``method_for`` answers None and the caller keeps the
client's own call. Which of the two a fetch uses is decided in one place, ``live._time_series_pages``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from google.api_core import exceptions as api_exceptions
from google.api_core import gapic_v1
from google.api_core.retry import Retry
from google.cloud import monitoring_v3
from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcTransport
from google.cloud.monitoring_v3.services.metric_service.transports.base import DEFAULT_CLIENT_INFO
from google.protobuf.message import DecodeError

from analyzer.sources.columnar import Page

LIST_TIME_SERIES = "/google.monitoring.v3.MetricService/ListTimeSeries"
RawMethod = Callable[..., bytes]  # (request, *, retry, timeout, metadata) -> one page's bytes


def method_for(client: monitoring_v3.MetricServiceClient) -> RawMethod | None:
    """ListTimeSeries answering wire bytes over the client's channel; None unless the transport is gRPC."""
    transport = client.transport
    if not isinstance(transport, MetricServiceGrpcTransport):
        return None
    stub = transport.grpc_channel.unary_unary(
        LIST_TIME_SERIES,
        request_serializer=monitoring_v3.ListTimeSeriesRequest.serialize,
        response_deserializer=None,  # the page's bytes, unparsed
    )
    return gapic_v1.method.wrap_method(  # type: ignore[no-any-return,no-untyped-call]
        stub, client_info=DEFAULT_CLIENT_INFO
    )


def pages(
    method: RawMethod, request: monitoring_v3.ListTimeSeriesRequest, retry: Retry, timeout: float
) -> Iterator[Page]:
    """Every page of one ListTimeSeries, decoded: the first is requested now, the others when iterated
    (the client's pager does the same)."""
    request = monitoring_v3.ListTimeSeriesRequest(request)  # a copy: the page token is set on it
    metadata = (gapic_v1.routing_header.to_grpc_metadata((("name", request.name),)),)  # type: ignore[no-untyped-call]
    first = _decoded(method(request, retry=retry, timeout=timeout, metadata=metadata))
    return _following(first, method, request, retry, timeout, metadata)


def _following(page: Page, method: RawMethod, request: Any, retry: Retry, timeout: float,
               metadata: tuple[tuple[str, str], ...]) -> Iterator[Page]:
    yield page
    while page.next_page_token:
        request.page_token = page.next_page_token
        page = _decoded(method(request, retry=retry, timeout=timeout, metadata=metadata))
        yield page


def _decoded(data: bytes) -> Page:
    try:
        return Page.from_wire(data)
    except DecodeError as exc:  # what gRPC reports when the client's own deserializer fails
        message = f"Exception deserializing response! {exc}"
        raise api_exceptions.InternalServerError(message) from exc  # type: ignore[no-untyped-call]
