"""The weekly digest end to end: built, sent through a real SMTP server on loopback (aiosmtpd, with
AUTH over STARTTLS or implicit TLS and a certificate made here), and read back as a mail client
would: MIME structure, cid: references, the size bound, the plain-text twin. History across runs
gives new, ongoing and resolved; the CLI's --dry-run writes the .eml."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from analyzer.analysis import Analysis
from analyzer.cli import cli
from analyzer.config import DigestConfig, SmtpConfig
from analyzer.delivery.history import PREFIX, previous_record
from analyzer.delivery.store import LocalStore
from analyzer.delivery.weekly import run_digest, sent_marker
from analyzer.errors import ConfigError, DeliveryError
from analyzer.model import RawData
from analyzer.pipeline import analyze
from analyzer.render.digest import MAX_HTML_BYTES
from analyzer.render.fleet_digest import record_from_report
from analyzer.render.week import Change, compare
from analyzer.sources.snapshot import read_snapshot
from tests.digests import digest_of, finished_of
from tests.hostile import HOSTILE_ANNOTATION, HOSTILE_SERVICE, write_hostile_snapshot
from tests.sidecars import SIDECAR_LEAKS, analysis_of

USER, PASSWORD = "digest-bot", "s3cret-Pa55-not-for-logs"
ENV = {"CLOUDRUN_ANALYZER_SMTP_USER": USER, "CLOUDRUN_ANALYZER_SMTP_PASSWORD": PASSWORD}
NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
GMAIL_CLIP = 102 * 1024


# ---------------------------------------------------------------------------------------------
# A real SMTP server on loopback


@dataclass(frozen=True)
class Tls:
    ca_file: Path
    server: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it."""
    folder = tmp_path_factory.mktemp("tls")
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    return Tls(ca_file, server)


@dataclass
class Mailbox:
    """What the server received, and how each session was secured."""

    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    sessions: list[dict[str, Any]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        implicit = server.transport.get_extra_info("ssl_object") is not None
        self.sessions.append(
            {"tls": session.ssl is not None or implicit, "authenticated": session.authenticated}
        )
        return "250 Message accepted"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            self.logins.append(auth_data.login.decode())
            ok = auth_data.login.decode() == USER and auth_data.password.decode() == PASSWORD
            return AuthResult(success=ok, handled=False, auth_data=auth_data)
        return AuthResult(success=False, handled=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _serve(mailbox: Mailbox, tls: Tls, *, implicit_tls: bool) -> Iterator[int]:
    port = _free_port()
    options: dict[str, Any] = {"authenticator": mailbox.authenticate, "auth_require_tls": True}
    if implicit_tls:
        # aiosmtpd counts only STARTTLS as TLS for auth_require_tls; here the whole connection is TLS.
        options["auth_require_tls"] = False
        controller = Controller(mailbox, hostname="127.0.0.1", port=port, ssl_context=tls.server, **options)
    else:
        controller = Controller(
            mailbox, hostname="127.0.0.1", port=port, tls_context=tls.server, require_starttls=True, **options
        )
    # aiosmtpd logs a deprecation of its own Session.login_data on every AUTH: not ours to act on.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


@pytest.fixture
def starttls_port(mailbox: Mailbox, tls: Tls) -> Iterator[int]:
    yield from _serve(mailbox, tls, implicit_tls=False)


@pytest.fixture
def smtps_port(mailbox: Mailbox, tls: Tls) -> Iterator[int]:
    yield from _serve(mailbox, tls, implicit_tls=True)


def smtp_config(port: int, tls: Tls, security: str = "starttls") -> SmtpConfig:
    return SmtpConfig.model_validate(
        {
            "host": "127.0.0.1",
            "port": port,
            "security": security,
            "sender": "cloudrun-analyzer@example.com",
            "ca_file": str(tls.ca_file),
            "timeout_seconds": 10,
        }
    )


DIGEST = DigestConfig.model_validate(
    {
        "recipients": ["oncall@example.com", "lead@example.com"],
        "report_url_base": "https://reports.example.com/cloudrun",
    }
)


# ---------------------------------------------------------------------------------------------
# Reading a message as a mail client would


class Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def read_html(html: str) -> Html:
    parser = Html()
    parser.feed(html)
    parser.close()
    return parser


def check_structure(message: EmailMessage) -> tuple[str, str, dict[str, bytes]]:
    """related(alternative(plain, html), png…); returns (text, html, {content-id: png})."""
    assert message.get_content_type() == "multipart/related"
    assert message.get_param("type") == "multipart/alternative"
    alternative, *images = message.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    plain, html = alternative.iter_parts()
    assert (plain.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert images, "the charts travel as related image parts"
    parts = {}
    for image in images:
        assert image.get_content_type() == "image/png"
        assert image.get_content_disposition() == "inline"
        data = image.get_payload(decode=True)
        assert isinstance(data, bytes)
        assert data.startswith(b"\x89PNG")
        assert len(data) < 40_000
        parts[str(image["Content-ID"]).strip("<>")] = data
    return str(plain.get_content()), str(html.get_content()), parts


def check_email_safe(html: str, parts: dict[str, bytes]) -> Html:
    assert len(html.encode()) < GMAIL_CLIP
    parsed = read_html(html)
    tags = {tag for tag, _ in parsed.tags}
    assert not tags & {"script", "style", "link", "iframe", "object", "form"}
    sources = [attrs["src"] for tag, attrs in parsed.tags if tag == "img"]
    assert sources
    assert all(src.startswith("cid:") for src in sources)
    assert {src.removeprefix("cid:") for src in sources} == set(parts), (
        "every cid: resolves, every part is used"
    )
    assert all(attrs.get("alt") for tag, attrs in parsed.tags if tag == "img")
    for tag, attrs in parsed.tags:
        assert not any(name.startswith("on") for name in attrs), f"<{tag}> has an event handler"
        assert "class" not in attrs, f"<{tag}> relies on a stylesheet class"
    return parsed


# ---------------------------------------------------------------------------------------------
# Data: the demo cut into weekly windows


def window(raw: RawData, end: datetime, shift: timedelta) -> RawData:
    """The demo's data up to ``end``, moved in time by ``shift`` (a stand-in for another week)."""
    cut, seconds = int(end.timestamp()), int(shift.total_seconds())
    series = []
    for s in raw.series:
        keep = s.end_times <= cut
        if not keep.any():
            continue
        h = s.histograms
        series.append(
            dataclasses.replace(
                s,
                start_times=s.start_times[keep] + seconds,
                end_times=s.end_times[keep] + seconds,
                values=None if s.values is None else s.values[keep],
                histograms=None
                if h is None
                else dataclasses.replace(
                    h,
                    counts=h.counts[keep],
                    count=h.count[keep],
                    mean=h.mean[keep],
                    range_min=h.range_min[keep],
                    range_max=h.range_max[keep],
                ),
            )
        )
    revisions = [
        dataclasses.replace(r, create_time=r.create_time + shift if r.create_time else None)
        for r in raw.revisions
        if r.create_time is None or r.create_time <= end
    ]
    assert raw.window_start is not None
    return RawData(
        series,
        revisions,
        list(raw.services),
        list(raw.problems),
        raw.window_start + shift,
        end + shift,
        raw.origin,
    )


# ---------------------------------------------------------------------------------------------
# Tests


def test_digest_goes_through_starttls_with_auth_and_reads_right(
    demo_analysis: Analysis,
    mailbox: Mailbox,
    starttls_port: int,
    tls: Tls,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = LocalStore(tmp_path / "store")
    outcome = run_digest(
        finished_of(demo_analysis),
        store=store,
        smtp=smtp_config(starttls_port, tls),
        config=DIGEST,
        generated_at=NOW,
        env=ENV,
    )
    assert outcome.sent
    assert not outcome.already_sent
    ((sender, recipients, message),) = mailbox.messages
    assert mailbox.sessions == [{"tls": True, "authenticated": True}]
    assert mailbox.logins == [USER]
    assert sender == "cloudrun-analyzer@example.com"
    assert recipients == ["oncall@example.com", "lead@example.com"]
    assert message["To"] == "oncall@example.com, lead@example.com"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"]
    subject = str(message["Subject"])
    assert subject.startswith("[cloudrun-analyzer] week to 23 Nov: ")
    assert "4 resolved" in subject
    text, html, parts = check_structure(message)
    parsed = check_email_safe(html, parts)
    words = " ".join(parsed.text)
    assert outcome.digest.headline in words
    assert outcome.digest.headline in text
    for needle in (
        "Resolved: 4 findings",
        "llm-router-00042-xyz",
        "Memory leak",
        "fixed by llm-router-00043-fix",
    ):
        assert needle in words, needle
    assert "RESOLVED: 4 findings" in text
    assert "https://console.cloud.google.com/run/detail/" in text
    links = [attrs["href"] for tag, attrs in parsed.tags if tag == "a"]
    assert "https://reports.example.com/cloudrun/2026-11-23/report.html" in links
    assert (
        "https://reports.example.com/cloudrun/2026-11-23/report.html#incident-llm-router-llm-router-00042-xyz"
        in links
    )
    # The full report the links point at, the history record and the sent marker are in the store.
    assert store.read("reports/2026-11-23/report.html") is not None
    assert store.read(sent_marker(demo_analysis.window_end)) is not None
    assert store.list(PREFIX) == ["history/2026-11-23T00-00-00Z.json"]
    captured = capsys.readouterr()
    assert PASSWORD not in captured.out + captured.err + caplog.text


def test_a_retry_does_not_send_twice_and_resend_does(
    demo_analysis: Analysis, mailbox: Mailbox, starttls_port: int, tls: Tls, tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "store")
    smtp = smtp_config(starttls_port, tls)
    run_digest(finished_of(demo_analysis), store=store, smtp=smtp, config=DIGEST, generated_at=NOW, env=ENV)
    again = run_digest(finished_of(demo_analysis), store=store, smtp=smtp, config=DIGEST, generated_at=NOW, env=ENV)
    assert again.already_sent
    assert not again.sent
    assert not again.record_written
    assert len(mailbox.messages) == 1
    forced = run_digest(
        finished_of(demo_analysis), store=store, smtp=smtp, config=DIGEST, generated_at=NOW, env=ENV, resend=True
    )
    assert forced.sent
    assert len(mailbox.messages) == 2


def test_implicit_tls_on_the_smtps_port(
    demo_analysis: Analysis, mailbox: Mailbox, smtps_port: int, tls: Tls, tmp_path: Path
) -> None:
    outcome = run_digest(
        finished_of(demo_analysis),
        store=LocalStore(tmp_path),
        smtp=smtp_config(smtps_port, tls, "ssl"),
        config=DIGEST,
        generated_at=NOW,
        env=ENV,
        recipients=["one@example.com"],
    )
    assert outcome.sent
    assert mailbox.sessions == [{"tls": True, "authenticated": True}]
    assert mailbox.messages[0][1] == ["one@example.com"]


def test_a_rejected_password_is_a_delivery_error_that_names_no_secret(
    demo_analysis: Analysis, mailbox: Mailbox, starttls_port: int, tls: Tls, tmp_path: Path
) -> None:
    store = LocalStore(tmp_path)
    wrong = {**ENV, "CLOUDRUN_ANALYZER_SMTP_PASSWORD": "wrong-" + PASSWORD}
    with pytest.raises(DeliveryError) as failure:
        run_digest(
            finished_of(demo_analysis),
            store=store,
            smtp=smtp_config(starttls_port, tls),
            config=DIGEST,
            generated_at=NOW,
            env=wrong,
        )
    assert "CLOUDRUN_ANALYZER_SMTP_USER" in str(failure.value)
    assert PASSWORD not in str(failure.value)
    assert failure.value.exit_code == 6
    assert mailbox.messages == []
    assert store.read(sent_marker(demo_analysis.window_end)) is None, (
        "a failed send must leave the retry free"
    )
    assert run_digest(
        finished_of(demo_analysis),
        store=store,
        smtp=smtp_config(starttls_port, tls),
        config=DIGEST,
        generated_at=NOW,
        env=ENV,
    ).sent


def test_an_untrusted_certificate_is_refused(
    demo_analysis: Analysis, starttls_port: int, tls: Tls, tmp_path: Path
) -> None:
    smtp = smtp_config(starttls_port, tls).model_copy(update={"ca_file": None})
    with pytest.raises(DeliveryError, match="not trusted") as failure:
        run_digest(
            finished_of(demo_analysis), store=LocalStore(tmp_path), smtp=smtp, config=DIGEST, generated_at=NOW, env=ENV
        )
    assert "smtp.ca_file" in failure.value.hint


def test_credentials_are_never_sent_in_plaintext_to_another_host() -> None:
    from analyzer.delivery.email import credentials

    plain = SmtpConfig.model_validate({"host": "mail.example.com", "port": 25, "security": "none"})
    with pytest.raises(ConfigError, match="plaintext"):
        credentials(plain, ENV)
    relay = plain.model_copy(update={"username_env": None})
    assert credentials(relay, {}) is None  # a relay that needs no login: no AUTH, nothing to protect
    with pytest.raises(ConfigError, match="CLOUDRUN_ANALYZER_SMTP_PASSWORD"):
        credentials(SmtpConfig(), {"CLOUDRUN_ANALYZER_SMTP_USER": USER})


def test_a_server_that_needs_a_login_is_never_sent_to_without_one() -> None:
    """Regression: with the user variable unset the digest went out without AUTH, which relays refuse."""
    from analyzer.delivery.email import credentials

    with pytest.raises(ConfigError, match=r"needs a login but \$CLOUDRUN_ANALYZER_SMTP_USER is empty") as failure:
        credentials(SmtpConfig(), {"CLOUDRUN_ANALYZER_SMTP_PASSWORD": PASSWORD})
    assert "smtp.username_env: null" in failure.value.hint
    with pytest.raises(ConfigError, match=r"USER and .*PASSWORD are empty"):
        credentials(SmtpConfig(), {})
    assert credentials(SmtpConfig(), ENV) == (USER, PASSWORD)


def test_history_says_new_then_ongoing_then_resolved(
    demo_raw: RawData, mailbox: Mailbox, starttls_port: int, tls: Tls, tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "history")
    smtp = smtp_config(starttls_port, tls)
    weeks = [
        (datetime(2026, 11, 19, 12, tzinfo=UTC), timedelta(days=-7)),  # leaking, first seen
        (datetime(2026, 11, 20, tzinfo=UTC), timedelta(0)),  # still leaking a week later
        (datetime(2026, 11, 23, tzinfo=UTC), timedelta(days=7)),
    ]  # the fix rolled out
    changes = []
    for end, shift in weeks:
        analysis = analyze(window(demo_raw, end, shift))
        outcome = run_digest(
            finished_of(analysis), store=store, smtp=smtp, config=DIGEST, generated_at=end + shift, env=ENV
        )
        assert outcome.sent
        assert outcome.record_written
        changes.append(outcome.digest.changes)
    keys = {f.finding.key for f in changes[0].new}
    assert (
        "demo-project",
        "europe-west1",
        "llm-router",
        "memory_baseline_rise",
        "llm-router-00042-xyz",
    ) in keys
    assert changes[0].ongoing == changes[0].resolved == []
    assert changes[0].previous_end is None
    assert {f.finding.key for f in changes[1].ongoing} == keys
    assert changes[1].new == []
    assert changes[1].previous_end == weeks[0][0] + weeks[0][1]
    assert {f.finding.key for f in changes[2].resolved} == keys
    assert changes[2].new == changes[2].ongoing == []
    assert all(
        c.change is Change.RESOLVED and "fixed by llm-router-00043-fix" in c.note for c in changes[2].resolved
    )
    texts = [str(m.get_body(("plain",)).get_content()) for _, _, m in mailbox.messages]  # type: ignore[union-attr]
    assert "NEW THIS WEEK: 4 findings" in texts[0]
    assert "STILL ONGOING: 4 findings" in texts[1]
    assert "open since 17 Nov" in texts[1]
    assert "RESOLVED: 4 findings" in texts[2]
    assert "fixed by llm-router-00043-fix this week" in texts[2]
    assert "vs last week" in texts[2]  # week-over-week cost, from the stored record
    record = previous_record(store, datetime(2026, 12, 7, tzinfo=UTC))
    assert record is not None
    assert record.window_end == datetime(2026, 11, 30, tzinfo=UTC)


def test_hostile_names_are_inert_in_the_digest(tmp_path: Path) -> None:
    analysis = analyze(read_snapshot(write_hostile_snapshot(tmp_path / "snap")))
    assert analysis.findings
    digest = digest_of(analysis, previous=None, config=DIGEST, generated_at=NOW)
    parts = {image.cid: image.data for image in digest.images}
    parsed = check_email_safe(digest.html, parts)
    assert HOSTILE_SERVICE in " ".join(parsed.text)
    assert "<script" not in digest.html
    assert "&lt;script&gt;" in digest.html
    from analyzer.delivery.email import build_message

    message = build_message(digest, sender="a@example.com", recipients=["b@example.com"], date=NOW)
    assert "\n" not in str(message["Subject"])
    assert HOSTILE_SERVICE in str(message["Subject"])
    assert all(
        image.filename.endswith(".png") and "<" not in image.filename and "<" not in image.cid
        for image in digest.images
    )
    assert HOSTILE_SERVICE in digest.text  # plain text is never parsed as markup
    assert HOSTILE_ANNOTATION not in digest.html  # annotations stay in the full report


def test_the_html_stays_under_the_clip_by_listing_fewer_services(demo_analysis: Analysis) -> None:
    full = digest_of(demo_analysis, previous=None, config=DIGEST, generated_at=NOW)
    assert full.html_bytes < MAX_HTML_BYTES
    assert full.services_shown == full.services_total == 3
    squeezed = digest_of(
        demo_analysis, previous=None, config=DIGEST, generated_at=NOW, max_html_bytes=full.html_bytes - 1
    )
    assert squeezed.html_bytes <= full.html_bytes - 1
    assert squeezed.services_shown < 3
    assert "more service" in squeezed.html
    assert "in the full report" in squeezed.html


def test_cli_dry_run_writes_the_eml_and_leaves_the_store_alone(tmp_path: Path) -> None:
    snapshot = write_hostile_snapshot(tmp_path / "snap")
    eml, store = tmp_path / "out" / "digest.eml", tmp_path / "store"
    result = CliRunner().invoke(
        cli,
        [
            "digest",
            "--snapshot",
            str(snapshot),
            "--dry-run",
            str(eml),
            "--store",
            str(store),
            "--to",
            "someone@example.com",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "not sent" in result.output
    assert "subject: [cloudrun-analyzer] week to 17 Nov:" in result.output
    message = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert message["To"] == "someone@example.com"
    _, html, parts = check_structure(message)
    check_email_safe(html, parts)
    assert not store.exists()


def test_cli_send_without_recipients_is_a_config_error(tmp_path: Path) -> None:
    snapshot = write_hostile_snapshot(tmp_path / "snap")
    result = CliRunner().invoke(cli, ["digest", "--snapshot", str(snapshot), "--store", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "no recipients" in result.output
    assert "--to" in result.output


def test_cli_delivery_failure_exits_6(tmp_path: Path) -> None:
    snapshot = write_hostile_snapshot(tmp_path / "snap")
    config = tmp_path / "c.yaml"
    config.write_text(
        f"smtp: {{host: 127.0.0.1, port: {_free_port()}, security: starttls, username_env: null, "
        "sender: a@example.com, timeout_seconds: 5}\ndigest: {recipients: [b@example.com]}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        cli,
        ["digest", "--snapshot", str(snapshot), "--config", str(config), "--store", str(tmp_path / "s")],
    )
    assert result.exit_code == 6, result.output
    assert "cannot connect to 127.0.0.1" in result.output
    assert "fix:" in result.output


def test_default_yaml_documents_the_delivery_sections_with_their_defaults() -> None:
    from analyzer.config import StoreConfig, load_yaml
    from analyzer.resources import config_file

    data = load_yaml(config_file("default.yaml"))
    for key, model in (("smtp", SmtpConfig), ("digest", DigestConfig), ("store", StoreConfig)):
        assert model.model_validate(data[key]) == model.model_validate({}), key


def test_cli_sends_through_starttls_and_a_person_can_read_it(
    mailbox: Mailbox, starttls_port: int, tls: Tls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = write_hostile_snapshot(tmp_path / "snap")
    config = tmp_path / "analyzer.yaml"
    config.write_text(
        f"smtp: {{host: 127.0.0.1, port: {starttls_port}, security: starttls, sender: analyzer@example.com, "
        f"ca_file: {tls.ca_file}}}\ndigest: {{recipients: [oncall@example.com], "
        "report_url_base: 'https://reports.example.com/cr'}\n",
        encoding="utf-8",
    )
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    store = tmp_path / "store"
    args = ["digest", "--snapshot", str(snapshot), "--config", str(config), "--store", str(store)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "sent to 1 recipient via 127.0.0.1" in result.output
    assert PASSWORD not in result.output
    ((_, recipients, message),) = mailbox.messages
    assert recipients == ["oncall@example.com"]
    artifacts = Path(__file__).resolve().parent.parent / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "digest-received.eml").write_bytes(message.as_bytes(policy=policy.SMTP))
    text, html, parts = check_structure(message)
    check_email_safe(html, parts)
    assert "NEW THIS WEEK: 1 finding" in text
    assert "Memory leak (rising baseline)" in text
    assert (store / "reports" / "2026-11-17" / "report.html").is_file()
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0
    assert "already sent" in again.output
    assert len(mailbox.messages) == 1


def test_the_fleet_digest_and_the_report_say_the_same_headline(demo_analysis: Analysis) -> None:
    from analyzer.render.fleet import merge_reports
    from analyzer.render.fleet_digest import fleet_headline
    from analyzer.render.html import headline, incidents_of
    from analyzer.render.json_report import report_json
    from analyzer.render.week import FindingRecord

    now = datetime(2026, 11, 27, tzinfo=UTC)
    fleet = merge_reports({"only": report_json(demo_analysis, generated_at=now)}, generated_at=now)
    stored = [FindingRecord.from_json(f) for f in fleet["findings"]]
    at_risk = demo_analysis.at_risk_usd_per_month
    incidents = [i for r in demo_analysis.services for i in incidents_of(r, demo_analysis.window_end)]
    said = headline(incidents, at_risk=at_risk)
    assert fleet_headline(stored, at_risk=at_risk) == said
    assert said.startswith("Nothing ongoing; 1 revision with findings already fixed, saving $")
    # Had the fix not come, the stored findings say which revision costs what, as the report would.
    ongoing = [FindingRecord(**{**{k: getattr(f, k) for k in FindingRecord.__dataclass_fields__}, "ongoing": True})
               for f in stored]
    text = fleet_headline(ongoing, at_risk=at_risk)
    assert text == ("llm-router: memory leak (rising baseline) and instance creep since llm-router-00042-xyz, "
                    "instances OOM-killed 2 times, p95 latency +1,159 ms (+26%), ≈$72/month")



def test_a_dry_run_links_the_report_it_wrote_not_one_it_did_not(demo_analysis: Analysis, tmp_path: Path) -> None:
    """Issue 16: with report_url_base set, the dry run's email linked reports.example.com/.../report.html,
    which only a real run writes. Now it writes the report beside the .eml and links that file."""
    store = LocalStore(tmp_path / "store")
    outcome = run_digest(finished_of(demo_analysis), store=store, smtp=SmtpConfig(), config=DIGEST,
                         generated_at=datetime(2026, 11, 23, tzinfo=UTC), dry_run=tmp_path / "out" / "d.eml")
    report = tmp_path / "out" / "d.report.html"
    assert outcome.report == report and report.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    text = (tmp_path / "out" / "d.eml").read_bytes().decode("ascii", "replace")
    message = message_from_bytes((tmp_path / "out" / "d.eml").read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    bodies = [part.get_content() for part in message.walk() if part.get_content_type() in ("text/plain", "text/html")]
    assert bodies and all("reports.example.com" not in body for body in bodies)
    assert all(str(report) in body for body in bodies)
    assert "reports.example.com" not in text
    assert not (tmp_path / "store").exists()


def test_cli_digest_reads_in_batches_and_says_the_same(tmp_path: Path) -> None:
    """Issue 11: `digest` reads and analyzes in batches as `report` does (memory follows the batch);
    one service a batch mails the same digest as one batch of all."""
    def plain(batch_size: str, workers: str) -> str:
        eml = tmp_path / f"d-{batch_size}.eml"
        result = CliRunner().invoke(cli, ["digest", "--demo", "--dry-run", str(eml), "--to", "a@example.com",
                                          "--batch-size", batch_size, "--workers", workers])
        assert result.exit_code == 0, result.output
        message = message_from_bytes(eml.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        body = message.get_body(("plain",))
        assert body is not None
        return re.sub(r"(?m)^.*[Gg]enerated.*$", "", str(body.get_content())).replace(eml.stem, "d")

    one_each, whole = plain("1", "1"), plain("3", "1")
    assert "NEW THIS WEEK" in whole and "llm-router" in whole
    assert one_each == whole


def test_a_sidecars_leak_is_its_own_finding_from_week_to_week_and_its_line_names_it() -> None:
    analysis = analysis_of(SIDECAR_LEAKS)
    report = finished_of(analysis, NOW, charts=False).report
    digest = digest_of(analysis, generated_at=NOW, charts=False, previous=None, config=DIGEST)
    assert "Memory leak (rising baseline): Sidecar otel-collector leaks: its memory troughs" in digest.text
    assert digest.headline.startswith("svc-0000: memory leak (rising baseline) in sidecar otel-collector since ")
    record = record_from_report(report, generated_at=NOW)
    (sidecar,) = record.findings
    assert sidecar.container == "otel-collector"
    # Last week the same revision's own (ingress) memory leaked: that one ended, the sidecar's is new.
    ingress = replace(sidecar, container="")
    changes = compare(record.findings, replace(record, findings=[ingress]))
    assert [c.finding for c in changes.new] == [sidecar]
    assert [c.finding for c in changes.resolved] == [ingress]


def test_a_fixs_saving_is_counted_once_as_the_report_counts_it(demo_analysis: Analysis) -> None:
    """Regression: the digest summed the saving over every finding of the fixed revision (the demo's four
    findings each carry the same fix: $216.48 said, $54.12 saved), while the report and the headline count
    it once per revision."""
    from analyzer.render.html import usd
    from analyzer.render.parts import render_part, report_context

    saved = report_context([render_part(demo_analysis, generated_at=NOW)], generated_at=NOW)["saved_usd_per_month"]
    digest = digest_of(demo_analysis, previous=None, config=DIGEST, generated_at=NOW, charts=False)
    assert saved > 0
    assert f"{usd(saved)} per month saved by fixes" in digest.text
    assert f"saving {usd(saved)}/month" in digest.subject
