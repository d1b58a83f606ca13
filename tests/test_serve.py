"""``serve``'s OIDC checks with tokens minted here (RS256, google.auth.jwt) and Google-style x509 certs
served from a local HTTP server, and ``POST /run`` end to end over loopback HTTP."""

from __future__ import annotations

import datetime
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import google.auth.transport.requests
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from analyzer.oidc import STRIPPED_SIGNATURE, CachedCertsRequest, TokenPolicy, TokenRejected, verify
from analyzer.serve import TriggerServer

AUDIENCE = "https://analyzer-abc-uc.a.run.app"
SCHEDULER = "scheduler@shop-prod.iam.gserviceaccount.com"


def _key_and_cert(name: str) -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, cert.public_bytes(serialization.Encoding.PEM).decode()


GOOD_KEY, GOOD_CERT = _key_and_cert("google")
EVIL_KEY, _ = _key_and_cert("attacker")


def mint(key: bytes = GOOD_KEY, kid: str = "k1", **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "email": SCHEDULER,
        "email_verified": True,
        "sub": "1234",
        "iat": now,
        "exp": now + 3600,
        **claims,
    }
    signer = crypt.RSASigner.from_string(key, key_id=kid)
    return jwt.encode(signer, payload).decode()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def certs_url() -> Iterator[str]:
    class Certs(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"k1": GOOD_CERT}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Certs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/oauth2/v1/certs"
    server.shutdown()
    server.server_close()


def policy(certs_url: str, mode: str = "public", audience: str | None = AUDIENCE) -> TokenPolicy:
    return TokenPolicy(
        mode=mode, allowed_accounts=frozenset({SCHEDULER}), audience=audience, certs_url=certs_url
    )


REQUEST = CachedCertsRequest(google.auth.transport.requests.Request())


def test_a_good_token_is_accepted(certs_url: str) -> None:
    claims = verify(f"Bearer {mint()}", policy(certs_url), request=REQUEST)
    assert claims["email"] == SCHEDULER


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (lambda: mint(aud="https://someone-else.a.run.app"), "audience"),
        (lambda: mint(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600), "expired"),
        (lambda: mint(key=EVIL_KEY), "signature"),
        (lambda: mint(email="intruder@evil-project.iam.gserviceaccount.com"), "not allowed"),
        (lambda: mint(email_verified=False), "not verified"),
        (lambda: mint(iss="https://evil.example.com"), "issuer"),
        (
            lambda: mint().rsplit(".", 1)[0] + "." + STRIPPED_SIGNATURE,
            "signature",
        ),  # public mode: no stripping
    ],
)
def test_forged_or_wrong_tokens_are_refused_in_public_mode(certs_url: str, token: Any, reason: str) -> None:
    with pytest.raises(TokenRejected, match=reason) as refused:
        verify(f"Bearer {token()}", policy(certs_url), request=REQUEST)
    assert refused.value.status == 403


def test_a_missing_or_malformed_header_is_401(certs_url: str) -> None:
    for header in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(TokenRejected) as refused:
            verify(header, policy(certs_url), request=REQUEST)
        assert refused.value.status == 401


def stripped(**claims: Any) -> str:
    return mint(**claims).rsplit(".", 1)[0] + "." + STRIPPED_SIGNATURE


def test_iam_mode_trusts_the_stripped_signature_but_checks_the_account_and_expiry(certs_url: str) -> None:
    iam = policy(certs_url, mode="iam", audience=None)
    assert verify(f"Bearer {stripped()}", iam, request=REQUEST)["email"] == SCHEDULER
    for claims, reason in (
        ({"email": "intruder@evil.iam.gserviceaccount.com"}, "not allowed"),
        ({"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}, "expired"),
    ):
        with pytest.raises(TokenRejected, match=reason):
            verify(f"Bearer {stripped(**claims)}", iam, request=REQUEST)
    with pytest.raises(TokenRejected, match="audience"):
        verify(f"Bearer {stripped(aud='https://other')}", policy(certs_url, mode="iam"), request=REQUEST)
    with pytest.raises(TokenRejected, match="signature"):  # a token that still has a signature is verified
        verify(f"Bearer {mint(key=EVIL_KEY)}", iam, request=REQUEST)


@pytest.fixture
def trigger(certs_url: str) -> Iterator[tuple[str, list[str]]]:
    runs: list[str] = []

    def runner(mode: str) -> Mapping[str, Any]:
        runs.append(mode)
        return {"window": "20260101T000000Z", "merged": "merged", "digest": mode}

    server = TriggerServer(("127.0.0.1", 0), policy=policy(certs_url), runner=runner, request=REQUEST)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.url, runs
    server.shutdown()
    server.server_close()


def post(url: str, token: str | None, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"{url}/run", data=body, method="POST")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def test_post_run_runs_only_for_the_scheduler(trigger: tuple[str, list[str]]) -> None:
    url, runs = trigger
    assert post(url, None)[0] == 401
    assert post(url, mint(key=EVIL_KEY))[0] == 403
    assert post(url, mint(email="intruder@evil.iam.gserviceaccount.com"))[0] == 403
    assert runs == []
    status, body = post(url, mint(), b'{"digest": "now"}')
    assert (status, body["status"], runs) == (200, "done", ["now"])
    assert post(url, mint(), b'{"digest": "always"}')[0] == 400
    with urllib.request.urlopen(f"{url}/healthz", timeout=10) as answer:
        assert answer.status == 200
