"""Build Google's API clients: Application Default Credentials, or a local emulator when told to.

Emulator variables follow ``STORAGE_EMULATOR_HOST``: when ``MONITORING_EMULATOR_HOST``,
``RUN_EMULATOR_HOST`` or ``BILLING_EMULATOR_HOST`` holds ``host:port``, that client talks plaintext
gRPC to the address with anonymous credentials (no TLS, no token, no metadata-server probe). Each
API is switched on its own, so one can be emulated while another is real.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import google.auth
import grpc
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.exceptions import DefaultCredentialsError
from google.cloud import monitoring_v3, run_v2
from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcTransport
from google.cloud.run_v2.services.revisions.transports import RevisionsGrpcTransport
from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport

from analyzer.errors import ConfigError, CredentialsError
from analyzer.sources.quota import ReadBudget

MONITORING_EMULATOR_HOST = "MONITORING_EMULATOR_HOST"
RUN_EMULATOR_HOST = "RUN_EMULATOR_HOST"
BILLING_EMULATOR_HOST = "BILLING_EMULATOR_HOST"
QUOTA_PROJECT = "GOOGLE_CLOUD_QUOTA_PROJECT"  # google-auth's own variable for the consumer project
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
LOGIN_HINT = (
    "run `gcloud auth application-default login` (and `gcloud auth application-default set-quota-project "
    "PROJECT`), or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file; on Cloud Run and GCE "
    "the attached service account is used automatically"
)
# Google's own transports lift gRPC's 4 MB receive limit; a 100,000-point page of distributions needs it.
CHANNEL_OPTIONS = (("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1))


@dataclass(frozen=True, slots=True)
class GoogleClients:
    """The clients the live source uses; build them with ``build_clients`` (or by hand in tests)."""

    monitoring: monitoring_v3.MetricServiceClient
    revisions: run_v2.RevisionsClient
    services: run_v2.ServicesClient
    emulated: tuple[str, ...] = ()  # which APIs talk to an emulator, for messages
    # The project read quota is charged to ("" when unknown: then every call shares one budget), and
    # the budget every fetch made with these clients draws on.
    quota_project: str = ""
    reads: ReadBudget = field(default_factory=ReadBudget, compare=False, repr=False)

    def close(self) -> None:
        """Close the clients' channels (only for clients this process built for itself)."""
        for client in (self.monitoring, self.revisions, self.services):
            client.transport.close()  # type: ignore[no-untyped-call]


def emulator_channel(variable: str, env: Mapping[str, str]) -> grpc.Channel | None:
    """A plaintext channel to ``env[variable]`` (``host:port``), or None when it is not set."""
    address = env.get(variable, "").strip()
    if not address:
        return None
    address = address.removeprefix("http://").rstrip("/")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"{variable}={env[variable]!r} is not host:port", hint=f"e.g. {variable}=localhost:8085"
        )
    return grpc.insecure_channel(address, options=list(CHANNEL_OPTIONS))


def _anonymous() -> Credentials:
    return AnonymousCredentials()  # type: ignore[no-untyped-call]


class _Credentials:
    """Application Default Credentials, looked up once and only if some client needs them."""

    def __init__(self) -> None:
        self._value: Credentials | None = None
        self.project = ""

    def get(self) -> Credentials:
        if self._value is None:
            try:
                credentials, project = google.auth.default(scopes=list(SCOPES))
            except DefaultCredentialsError as exc:
                raise CredentialsError(f"no Application Default Credentials: {exc}", hint=LOGIN_HINT) from exc
            self._value = credentials
            # The consumer of every call: the quota project when one is set, else the credentials' own.
            self.project = str(getattr(credentials, "quota_project_id", None) or project or "")
        return self._value


def build_clients(env: Mapping[str, str] | None = None) -> GoogleClients:
    """Clients for Monitoring and Cloud Run: emulators where the variables say so, ADC otherwise."""
    env = os.environ if env is None else env
    adc = _Credentials()
    emulated: list[str] = []

    monitoring_channel = emulator_channel(MONITORING_EMULATOR_HOST, env)
    if monitoring_channel is not None:
        emulated.append("monitoring")
        monitoring = monitoring_v3.MetricServiceClient(
            transport=MetricServiceGrpcTransport(channel=monitoring_channel, credentials=_anonymous())
        )
    else:
        monitoring = monitoring_v3.MetricServiceClient(credentials=adc.get())

    run_channel = emulator_channel(RUN_EMULATOR_HOST, env)
    if run_channel is not None:
        emulated.append("run")
        revisions = run_v2.RevisionsClient(
            transport=RevisionsGrpcTransport(channel=run_channel, credentials=_anonymous())
        )
        services = run_v2.ServicesClient(
            transport=ServicesGrpcTransport(channel=run_channel, credentials=_anonymous())
        )
    else:
        revisions = run_v2.RevisionsClient(credentials=adc.get())
        services = run_v2.ServicesClient(credentials=adc.get())
    quota_project = env.get(QUOTA_PROJECT, "").strip() or adc.project
    return GoogleClients(monitoring, revisions, services, tuple(emulated), quota_project)


def build_catalog_client(env: Mapping[str, str] | None = None) -> Any:
    """A Cloud Billing Catalog client (``billing_v1.CloudCatalogClient``), honouring BILLING_EMULATOR_HOST."""
    from google.cloud import billing_v1
    from google.cloud.billing_v1.services.cloud_catalog.transports import CloudCatalogGrpcTransport

    env = os.environ if env is None else env
    channel = emulator_channel(BILLING_EMULATOR_HOST, env)
    if channel is not None:
        return billing_v1.CloudCatalogClient(
            transport=CloudCatalogGrpcTransport(channel=channel, credentials=_anonymous())
        )
    return billing_v1.CloudCatalogClient(credentials=_Credentials().get())
