"""The digest as an email: MIME assembly and SMTP delivery.

Structure (RFC 2387, what Gmail, Outlook and Apple Mail render)::

    multipart/related; type="multipart/alternative"
    ├── multipart/alternative
    │   ├── text/plain   (the plain-text twin)
    │   └── text/html    (inline styles; images as cid:…)
    └── image/png …      (Content-ID <…>, Content-Disposition: inline)

Sending uses smtplib over STARTTLS or implicit TLS (SMTPS), with AUTH when the user variable named in
the config is set. Credentials are read from the environment at send time and never logged: error
messages name the variables, not their values.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from analyzer.config import SmtpConfig
from analyzer.errors import ConfigError, DeliveryError
from analyzer.render.digest import Digest

LOOPBACK = ("localhost", "127.0.0.1", "::1")
DRY_RUN_SENDER = "cloudrun-analyzer@localhost"


def _one_line(text: str) -> str:
    """Header text from user-controlled names: no line breaks or control characters."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def build_message(digest: Digest, *, sender: str, recipients: Sequence[str], date: datetime) -> EmailMessage:
    """The digest as one MIME message (see the module docstring for its structure)."""
    message = EmailMessage(policy=policy.SMTP)
    message["Subject"] = _one_line(digest.subject)
    message["From"] = Address("Cloud Run analyzer", addr_spec=sender)
    message["To"] = ", ".join(recipients) if recipients else "undisclosed-recipients:;"
    message["Date"] = format_datetime(date)
    message["Message-ID"] = make_msgid("digest", domain=sender.rpartition("@")[2] or "localhost")
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies
    if not digest.images:
        message.set_content(digest.text, subtype="plain", charset="utf-8")
        message.add_alternative(digest.html, subtype="html", charset="utf-8")
        return message
    alternative = EmailMessage(policy=policy.SMTP)
    alternative.set_content(digest.text, subtype="plain", charset="utf-8")
    alternative.add_alternative(digest.html, subtype="html", charset="utf-8")
    message["MIME-Version"] = "1.0"
    message.make_related()  # an empty multipart/related; the alternative goes first, the images after it
    message.set_param("type", "multipart/alternative")
    message.attach(alternative)
    for image in digest.images:
        message.add_related(
            image.data,
            maintype="image",
            subtype="png",
            cid=f"<{image.cid}>",
            filename=image.filename,
            disposition="inline",
        )
    return message


def write_eml(message: EmailMessage, path: Path) -> None:
    write_file(path, message.as_bytes(policy=policy.SMTP))


def write_file(path: Path, data: bytes) -> None:
    """Write a local output file; a failure is a DeliveryError that names the path."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise DeliveryError(
            f"cannot write {path}: {exc.strerror}", hint="check the path and its permissions"
        ) from exc


def _tls_context(config: SmtpConfig) -> ssl.SSLContext:
    try:
        return (
            ssl.create_default_context(cafile=config.ca_file)
            if config.ca_file
            else ssl.create_default_context()
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load smtp.ca_file {config.ca_file}: {exc}",
            hint="point smtp.ca_file at a PEM file of CA certificates",
        ) from exc


def credentials(config: SmtpConfig, env: Mapping[str, str]) -> tuple[str, str] | None:
    """(user, password) from the environment, or None when the config says the relay needs no login
    (``smtp.username_env: null``). A server that needs one and a variable left empty is an error, not
    a silent send without AUTH that the relay refuses every week."""
    if not config.username_env:
        return None
    user, password = env.get(config.username_env, ""), env.get(config.password_env, "")
    empty = [f"${name}" for name, value in ((config.username_env, user), (config.password_env, password))
             if not value]
    if empty:
        raise ConfigError(
            f"the SMTP server {config.host} needs a login but {' and '.join(empty)} "
            f"{'is' if len(empty) == 1 else 'are'} empty",
            hint=f"set {config.username_env} and {config.password_env} (on Cloud Run deploy/deploy.sh sets "
            "them from SMTP_USER and the cloudrun-analyzer-smtp-password secret), or set "
            "smtp.username_env: null if the relay takes mail without a login",
        )
    if config.security == "none" and config.host not in LOOPBACK:
        raise ConfigError(
            f"refusing to send SMTP credentials in plaintext to {config.host}",
            hint="set smtp.security to starttls (port 587) or ssl (port 465)",
        )
    return user, password


def _connect(config: SmtpConfig) -> smtplib.SMTP:
    if config.security == "ssl":
        return smtplib.SMTP_SSL(
            config.host, config.port, timeout=config.timeout_seconds, context=_tls_context(config)
        )
    client = smtplib.SMTP(config.host, config.port, timeout=config.timeout_seconds)
    if config.security == "starttls":
        client.ehlo()
        if not client.has_extn("starttls"):
            client.close()
            raise DeliveryError(
                f"{config.host}:{config.port} does not offer STARTTLS",
                hint="use security: ssl with port 465, or the server's submission port 587",
            )
        client.starttls(context=_tls_context(config))
        client.ehlo()
    return client


def send(
    message: EmailMessage,
    config: SmtpConfig,
    *,
    sender: str,
    recipients: Sequence[str],
    env: Mapping[str, str] | None = None,
) -> None:
    """Deliver ``message`` through the configured server; raises DeliveryError naming what to fix."""
    where = f"{config.host}:{config.port} ({config.security})"
    login = credentials(config, os.environ if env is None else env)
    try:
        with _connect(config) as client:
            if login is not None:
                client.login(*login)
            refused = client.send_message(message, from_addr=sender, to_addrs=list(recipients))
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(
            f"SMTP AUTH at {where} rejected the user in ${config.username_env} ({exc.smtp_code})",
            hint=f"check ${config.username_env} and ${config.password_env}",
        ) from exc
    except smtplib.SMTPNotSupportedError as exc:
        raise DeliveryError(
            f"{where} does not support what was asked: {exc}",
            hint="AUTH usually needs TLS first: set smtp.security to starttls or ssl",
        ) from exc
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(
            f"{where} refused every recipient: {', '.join(exc.recipients)}",
            hint="check digest.recipients, and that the server relays for the sender",
        ) from exc
    except smtplib.SMTPSenderRefused as exc:
        raise DeliveryError(
            f"{where} refused the sender {exc.sender} ({exc.smtp_code})",
            hint="set smtp.sender to an address the server lets this account send as",
        ) from exc
    except ssl.SSLCertVerificationError as exc:
        raise DeliveryError(
            f"the TLS certificate of {where} is not trusted: {exc.verify_message}",
            hint="set smtp.ca_file to the CA that signed it, or fix smtp.host",
        ) from exc
    except (ssl.SSLError, smtplib.SMTPException) as exc:
        raise DeliveryError(
            f"sending the digest through {where} failed: {type(exc).__name__}: {exc}",
            hint="check smtp.host, smtp.port and smtp.security (587 starttls, 465 ssl)",
        ) from exc
    except TimeoutError as exc:
        raise DeliveryError(
            f"{where} did not answer within {config.timeout_seconds:g} s",
            hint="check smtp.host and smtp.port, and that outbound SMTP is allowed",
        ) from exc
    except OSError as exc:
        raise DeliveryError(
            f"cannot connect to {where}: {exc.strerror or exc}",
            hint="check smtp.host and smtp.port, and that outbound SMTP is allowed",
        ) from exc
    if refused:
        raise DeliveryError(
            f"{where} refused {', '.join(sorted(refused))} (the others were sent the digest)",
            hint="check those addresses in digest.recipients",
        )
