"""Checking the OIDC token Cloud Scheduler sends with each call of ``serve``'s ``POST /run``.

Two modes, because Cloud Run changes what the service sees (docs/operations.md explains both):

- ``public`` (the service allows unauthenticated calls, so this is the only check): the token's
  signature is verified against Google's certificates (``certs_url``), then its audience, issuer,
  expiry, ``email`` (one of the allowed service accounts) and ``email_verified``.
- ``iam`` (the service requires ``roles/run.invoker``): Cloud Run has already verified the token and
  forwards it with its signature replaced by ``SIGNATURE_REMOVED_BY_GOOGLE``, so the signature cannot
  be checked here. IAM is relied on for authenticity, but only where IAM can have checked it: on
  Cloud Run (``K_SERVICE`` set) and in the header IAM reads, ``X-Serverless-Authorization`` when the
  request has one (then ``Authorization`` passes through unchecked and is ignored here), else
  ``Authorization``. The claims are still checked (issuer, expiry, audience, the allowed account).
  A token that still carries a signature is verified as in public mode. Never use ``iam`` on a
  service that allows unauthenticated calls.

The audience is required in both modes: without it a token Google signed for any other service
would do.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import google.auth.transport.requests
from google.auth import exceptions as auth_exceptions
from google.auth import transport
from google.oauth2 import id_token

STRIPPED_SIGNATURE = "SIGNATURE_REMOVED_BY_GOOGLE"
IAM_HEADER = "X-Serverless-Authorization"  # read by Cloud Run IAM instead of Authorization when sent
CERTS_MAX_AGE_S = 3600.0


class Headers(Protocol):
    """A request's headers (``http.server``'s message, or a plain mapping in tests)."""

    def get(self, name: str, /) -> Any: ...


class TokenRejected(Exception):
    """The request's token does not allow a run; ``status`` is the HTTP status to answer."""

    def __init__(self, reason: str, *, status: int = 403) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    """What a token must satisfy (from the ``serve`` section of the config)."""

    mode: str  # "public" | "iam"
    allowed_accounts: frozenset[str]
    audience: str
    issuers: tuple[str, ...] = ("https://accounts.google.com", "accounts.google.com")
    certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"
    clock_skew_s: int = 10


class CachedCertsRequest(transport.Request):
    """A transport that keeps each GET answer for up to an hour, so certificates are not fetched per call."""

    def __init__(self, inner: transport.Request | None = None, *, max_age_s: float = CERTS_MAX_AGE_S) -> None:
        self.inner = inner or google.auth.transport.requests.Request()
        self.max_age_s = max_age_s
        self._cache: dict[str, tuple[float, transport.Response]] = {}
        self._lock = threading.Lock()

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> transport.Response:
        if method != "GET" or body is not None:
            passed: transport.Response = self.inner(
                url, method=method, body=body, headers=headers, timeout=timeout, **kwargs
            )
            return passed
        with self._lock:
            cached = self._cache.get(url)
            if cached is not None and time.monotonic() - cached[0] < self.max_age_s:
                return cached[1]
        response: transport.Response = self.inner(
            url, method="GET", headers=headers, timeout=timeout or 10, **kwargs
        )
        if response.status == 200:
            with self._lock:
                self._cache[url] = (time.monotonic(), response)
        return response


def behind_cloud_run(env: Mapping[str, str] | None = None) -> bool:
    """True in a Cloud Run service (``K_SERVICE`` set), the only place IAM can stand in front."""
    return bool((os.environ if env is None else env).get("K_SERVICE"))


def bearer_token(authorization: str | None, *, header: str = "Authorization") -> str:
    """The token of a ``Bearer`` header; 401 when there is none."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenRejected(f"missing '{header}: Bearer <OIDC token>' header", status=401)
    return token.strip()


def request_token(headers: Headers) -> str:
    """The token Cloud Run IAM checked: ``X-Serverless-Authorization`` when the request carries one
    (IAM then ignores ``Authorization``, so this does too), else ``Authorization``."""
    sent = headers.get(IAM_HEADER)
    if sent is not None:
        return bearer_token(sent, header=IAM_HEADER)
    return bearer_token(headers.get("Authorization"))


def _unverified_claims(token: str) -> Mapping[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenRejected("malformed token: not a JWT (header.payload.signature)", status=401)
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TokenRejected(f"malformed token payload: {exc}", status=401) from exc
    if not isinstance(claims, dict):
        raise TokenRejected("malformed token payload: not a JSON object", status=401)
    return claims


def _check_claims(claims: Mapping[str, Any], policy: TokenPolicy, *, now: float) -> None:
    if claims.get("iss") not in policy.issuers:
        raise TokenRejected(f"issuer {claims.get('iss')!r} is not one of {', '.join(policy.issuers)}")
    expiry = claims.get("exp")
    if not isinstance(expiry, int | float) or now > expiry + policy.clock_skew_s:
        raise TokenRejected("token expired")
    audience = claims.get("aud")
    audiences: Sequence[Any] = audience if isinstance(audience, list) else [audience]
    if policy.audience not in audiences:
        raise TokenRejected(f"audience {audience!r} is not the configured serve.audience")
    email = claims.get("email")
    if email not in policy.allowed_accounts:
        raise TokenRejected(
            f"account {email!r} is not allowed to trigger runs (serve.allowed_service_accounts)"
        )
    if claims.get("email_verified") is not True:
        raise TokenRejected(f"account {email!r} is not verified (email_verified is not true)")


def verify(
    headers: Headers,
    policy: TokenPolicy,
    *,
    request: transport.Request,
    now: float | None = None,
    env: Mapping[str, str] | None = None,
) -> Mapping[str, Any]:
    """The claims of the request's token when it may trigger a run; TokenRejected otherwise."""
    token = request_token(headers)
    now = time.time() if now is None else now
    if token.rsplit(".", 1)[-1] == STRIPPED_SIGNATURE:
        if policy.mode != "iam" or not behind_cloud_run(env):
            raise TokenRejected("a stripped signature is trusted only in iam mode on Cloud Run")
        claims = _unverified_claims(token)  # Cloud Run IAM verified the signature and removed it
    else:
        try:
            claims = id_token.verify_token(
                token,
                request,
                audience=policy.audience,
                certs_url=policy.certs_url,
                clock_skew_in_seconds=policy.clock_skew_s,
            )
        except auth_exceptions.TransportError as exc:
            raise TokenRejected(
                f"cannot fetch the signing certificates from {policy.certs_url}: {exc}", status=503
            ) from exc
        except (ValueError, auth_exceptions.GoogleAuthError) as exc:
            raise TokenRejected(f"token refused: {exc}") from exc
    _check_claims(claims, policy, now=now)
    return claims
