"""``serve``'s OIDC checks with tokens minted here (RS256, google.auth.jwt) and Google-style x509 certs
served from a local HTTP server, and ``POST /run`` end to end over loopback HTTP."""

from __future__ import annotations

import base64
import datetime
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import google.auth.transport.requests
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from analyzer.cli import cli
from analyzer.errors import ConfigError
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


def policy(certs_url: str, mode: str = "public", audience: str = AUDIENCE) -> TokenPolicy:
    return TokenPolicy(
        mode=mode, allowed_accounts=frozenset({SCHEDULER}), audience=audience, certs_url=certs_url
    )


REQUEST = CachedCertsRequest(google.auth.transport.requests.Request())
ON_CLOUD_RUN = {"K_SERVICE": "cloudrun-analyzer"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_good_token_is_accepted(certs_url: str) -> None:
    claims = verify(bearer(mint()), policy(certs_url), request=REQUEST)
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
        verify(bearer(token()), policy(certs_url), request=REQUEST, env=ON_CLOUD_RUN)
    assert refused.value.status == 403


def test_a_missing_or_malformed_header_is_401(certs_url: str) -> None:
    for header in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(TokenRejected) as refused:
            verify({"Authorization": header} if header is not None else {}, policy(certs_url), request=REQUEST)
        assert refused.value.status == 401


def stripped(**claims: Any) -> str:
    return mint(**claims).rsplit(".", 1)[0] + "." + STRIPPED_SIGNATURE


def forged(**claims: Any) -> str:
    """What the security review sent: an unsigned ``alg: none`` token claiming the Scheduler's
    account, expiring in 1e300, with the stripped-signature marker as its signature."""
    def part(data: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    payload = {"iss": "https://accounts.google.com", "aud": AUDIENCE, "email": SCHEDULER,
               "email_verified": True, "exp": 1e300, **claims}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}.{STRIPPED_SIGNATURE}"


def test_iam_mode_trusts_the_stripped_signature_on_cloud_run_but_checks_the_claims(certs_url: str) -> None:
    iam = policy(certs_url, mode="iam")
    assert verify(bearer(stripped()), iam, request=REQUEST, env=ON_CLOUD_RUN)["email"] == SCHEDULER
    for claims, reason in (
        ({"email": "intruder@evil.iam.gserviceaccount.com"}, "not allowed"),
        ({"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}, "expired"),
        ({"aud": "https://other"}, "audience"),
    ):
        with pytest.raises(TokenRejected, match=reason):
            verify(bearer(stripped(**claims)), iam, request=REQUEST, env=ON_CLOUD_RUN)
    with pytest.raises(TokenRejected, match="signature"):  # a token that still has a signature is verified
        verify(bearer(mint(key=EVIL_KEY)), iam, request=REQUEST, env=ON_CLOUD_RUN)


def test_iam_mode_off_cloud_run_trusts_no_stripped_signature(certs_url: str) -> None:
    """Regression: a forged alg-none token was accepted wherever iam mode ran (no IAM in front)."""
    with pytest.raises(TokenRejected, match="only in iam mode on Cloud Run") as refused:
        verify(bearer(forged()), policy(certs_url, mode="iam"), request=REQUEST, env={})
    assert refused.value.status == 403


def test_iam_mode_reads_the_header_iam_checked(certs_url: str) -> None:
    """Regression: with X-Serverless-Authorization sent, Cloud Run IAM checks that header and passes
    Authorization through untouched, so an invoker could claim the Scheduler's account there."""
    iam = policy(certs_url, mode="iam")
    invoker = stripped(email="someone-with-run-invoker@shop-prod.iam.gserviceaccount.com")
    cross = {"X-Serverless-Authorization": f"Bearer {invoker}", "Authorization": f"Bearer {forged()}"}
    with pytest.raises(TokenRejected, match="not allowed"):
        verify(cross, iam, request=REQUEST, env=ON_CLOUD_RUN)
    scheduler = {"X-Serverless-Authorization": f"Bearer {stripped()}", "Authorization": "Bearer anything"}
    assert verify(scheduler, iam, request=REQUEST, env=ON_CLOUD_RUN)["email"] == SCHEDULER
    with pytest.raises(TokenRejected) as missing:  # an empty IAM header is not replaced by Authorization
        verify({"X-Serverless-Authorization": "", **bearer(stripped())}, iam, request=REQUEST, env=ON_CLOUD_RUN)
    assert missing.value.status == 401


def test_the_audience_is_always_checked(certs_url: str) -> None:
    """Regression: with no audience set, a token Google signed for another service was accepted."""
    with pytest.raises(TokenRejected, match="audience"):
        verify(bearer(mint(aud="https://other-service.a.run.app")), policy(certs_url, mode="iam"),
               request=REQUEST, env=ON_CLOUD_RUN)


def test_iam_mode_refuses_to_start_off_cloud_run(certs_url: str) -> None:
    with pytest.raises(ConfigError, match="K_SERVICE"):
        TriggerServer(("127.0.0.1", 0), policy=policy(certs_url, mode="iam"), runner=lambda mode: {}, env={})


def test_serve_refuses_a_config_without_audience(tmp_path: Path) -> None:
    config = tmp_path / "job.yaml"
    config.write_text(
        "projects: [shop-prod]\n"
        "serve: {mode: iam, allowed_service_accounts: [" + SCHEDULER + "]}\n"
    )
    result = CliRunner().invoke(cli, ["serve", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert "serve.audience" in result.output


@pytest.fixture
def trigger(certs_url: str) -> Iterator[tuple[str, list[str]]]:
    runs: list[str] = []

    def runner(mode: str) -> Mapping[str, Any]:
        runs.append(mode)
        return {"window": "20260101T000000Z", "merged": "merged", "digest": mode}

    server = TriggerServer(("127.0.0.1", 0), policy=policy(certs_url), runner=runner, request=REQUEST,
                           workers=3, timeout_s=0.5)
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


def test_refusals_say_nothing_of_the_token_or_the_audience(trigger: tuple[str, list[str]]) -> None:
    """Regression: 401/403 bodies echoed the malformed token and the expected audience."""
    url, _ = trigger
    assert post(url, "not-a-jwt-SECRET") == (403, {"error": "forbidden"})
    assert post(url, mint(aud="https://someone-else.a.run.app")) == (403, {"error": "forbidden"})
    assert post(url, None) == (401, {"error": "unauthorized"})


def raw(url: str, request: bytes, *, wait_s: float = 5.0) -> bytes:
    """Send ``request`` as is and read the answer until the server closes the connection."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait_s) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "+5", "5, 7"])
def test_a_bad_content_length_is_400(trigger: tuple[str, list[str]], length: str) -> None:
    """Regression: Content-Length -1 read the whole stream before the token check; abc dropped the
    connection with an exception."""
    url, runs = trigger
    answer = raw(url, f"POST /run HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode())
    assert status_of(answer) == 400
    assert runs == []


def test_an_absurd_content_length_is_413_without_reading(trigger: tuple[str, list[str]]) -> None:
    url, _ = trigger
    started = time.monotonic()
    answer = raw(url, b"POST /run HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n")
    assert status_of(answer) == 413 and time.monotonic() - started < 2


def test_the_body_is_not_read_before_the_token_is_checked(trigger: tuple[str, list[str]]) -> None:
    """Regression: a request without a token waited for its whole body before being refused."""
    url, _ = trigger
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        started = time.monotonic()
        connection.sendall(b"POST /run HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n{")
        first = connection.recv(65536)  # the answer comes while the body is still missing
        assert time.monotonic() - started < 3
    assert status_of(first) == 401


def test_a_slow_client_is_dropped_and_the_workers_are_bounded(trigger: tuple[str, list[str]]) -> None:
    """Regression: no socket timeout and a thread per connection: silent clients held threads forever."""
    url, _ = trigger
    host, port = url.removeprefix("http://").split(":")
    silent = [socket.create_connection((host, int(port)), timeout=5) for _ in range(3)]
    try:
        for connection in silent:
            connection.sendall(b"POST /run HTTP/1.1\r\n")  # and then nothing
        time.sleep(0.1)
        assert status_of(raw(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")) == 503  # all 3 busy
        started = time.monotonic()
        for connection in silent:
            assert connection.recv(65536) == b""  # closed without an answer
        assert time.monotonic() - started < 3  # the 0.5 s timeout let them go
    finally:
        for connection in silent:
            connection.close()
    time.sleep(0.2)
    assert status_of(raw(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")) == 200


def test_iam_mode_end_to_end_on_cloud_run(certs_url: str) -> None:
    """Over HTTP: the forged token the review sent, and an invoker claiming the Scheduler's account
    in Authorization while IAM checked X-Serverless-Authorization, are refused; the Scheduler runs."""
    runs: list[str] = []
    server = TriggerServer(("127.0.0.1", 0), policy=policy(certs_url, mode="iam"), request=REQUEST,
                           runner=lambda mode: runs.append(mode) or {}, env=ON_CLOUD_RUN)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        invoker = stripped(email="someone-with-run-invoker@shop-prod.iam.gserviceaccount.com")
        for headers in (
            {"Authorization": f"Bearer {forged(aud='https://other.a.run.app')}"},
            {"X-Serverless-Authorization": f"Bearer {invoker}", "Authorization": f"Bearer {forged()}"},
        ):
            head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            answer = raw(server.url, f"POST /run HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
            assert status_of(answer) == 403 and answer.endswith(b'{"error": "forbidden"}')
        assert runs == []
        twice = f"X-Serverless-Authorization: Bearer {invoker}\r\nX-Serverless-Authorization: Bearer {forged()}\r\n"
        assert status_of(raw(server.url, f"POST /run HTTP/1.1\r\nHost: x\r\n{twice}\r\n".encode())) == 401
        head = f"X-Serverless-Authorization: Bearer {stripped()}\r\n"
        answer = raw(server.url, f"POST /run HTTP/1.1\r\nHost: x\r\n{head}Content-Length: 0\r\n\r\n".encode())
        assert status_of(answer) == 200 and runs == ["auto"]
    finally:
        server.shutdown()
        server.server_close()
