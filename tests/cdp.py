"""A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe``: the system's headless
Chromium driven without chromedriver, websockets or a browser download.

Chromium reads commands from fd 3 and writes replies and events to fd 4, each a JSON message ended by
a NUL byte. One page target is attached in flat mode; its commands carry the session id.
"""

from __future__ import annotations

import base64
import fcntl
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM_BIN", ""), *CANDIDATES):
        if name and (path := shutil.which(name)):
            return path
    return None


class CdpError(RuntimeError):
    pass


class Page:
    """One tab of a headless Chromium; ``events`` collects everything the page reported."""

    def __init__(self, process: subprocess.Popen[bytes], write_fd: int, read_fd: int) -> None:
        self._process = process
        self._write = os.fdopen(write_fd, "wb", buffering=0)
        self._read = os.fdopen(read_fd, "rb", buffering=0)
        self._ids = itertools.count(1)
        self._replies: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()
        self._session = ""
        target = self.call("Target.createTarget", url="about:blank", session=False)["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True, session=False)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def _pump(self) -> None:
        buffer = b""
        while chunk := self._read.read(65536):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                with self._cond:
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self.events.append(message)
                    self._cond.notify_all()

    def call(
        self, method: str, *, session: bool = True, timeout: float = 30.0, **params: Any
    ) -> dict[str, Any]:
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session and self._session:
            message["sessionId"] = self._session
        self._write.write(json.dumps(message).encode() + b"\0")
        with self._cond:
            if not self._cond.wait_for(lambda: ident in self._replies, timeout=timeout):
                raise CdpError(f"{method}: no answer within {timeout} s")
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def wait_for_event(self, method: str, timeout: float = 30.0, *, since: int | None = None) -> dict[str, Any]:
        """The first ``method`` event after the ``since``-th one (default: after those seen now)."""
        with self._cond:
            seen = len(self.events) if since is None else since

            def arrived() -> bool:
                return any(e.get("method") == method for e in self.events[seen:])

            if not self._cond.wait_for(arrived, timeout=timeout):
                raise CdpError(f"no {method} within {timeout} s")
            return next(e for e in self.events[seen:] if e.get("method") == method)

    def navigate(self, url: str) -> None:
        with self._cond:
            self.events.clear()
        self.call("Page.navigate", url=url)
        # Counted from the clear: the load event may arrive before Page.navigate's reply is read.
        self.wait_for_event("Page.loadEventFired", since=0)

    def reload(self) -> None:
        """Load the page again, in its renderer process (``navigate`` may start another)."""
        with self._cond:
            self.events.clear()
        self.call("Page.reload", ignoreCache=True)
        self.wait_for_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise CdpError(f"{expression[:60]}…: {result['exceptionDetails']}")
        return result["result"].get("value")

    def set_viewport(self, width: int, height: int, *, mobile: bool = False, scale: float = 1.0) -> None:
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=scale,
            mobile=mobile,
        )

    def screenshot(self, path: Path) -> None:
        """The whole page, not only the viewport."""
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))

    def pdf(self, path: Path) -> None:
        data = self.call("Page.printToPDF", printBackground=True, preferCSSPageSize=False)["data"]
        path.write_bytes(base64.b64decode(data))

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads the page reported."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails'].get('text')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        return found

    def close(self) -> None:
        with suppress(CdpError, OSError):
            self.call("Browser.close", session=False, timeout=5)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._write.close()
        self._read.close()


@contextmanager
def headless_page(binary: str) -> Iterator[Page]:
    """A page of a fresh headless Chromium (own profile, no network services, no first-run UI)."""
    commands_read, commands_write = os.pipe()
    replies_read, replies_write = os.pipe()

    def to_fds_3_and_4() -> None:  # in the child, before exec: where --remote-debugging-pipe looks
        # Copy both above fd 9 first (a pipe end may itself be fd 3 or 4), then into place; dup2 onto
        # the same number would keep close-on-exec, so mark both inheritable explicitly.
        commands = fcntl.fcntl(commands_read, fcntl.F_DUPFD, 10)
        replies = fcntl.fcntl(replies_write, fcntl.F_DUPFD, 10)
        os.dup2(commands, 3)
        os.dup2(replies, 4)
        os.set_inheritable(3, True)
        os.set_inheritable(4, True)

    with tempfile.TemporaryDirectory(prefix="cdp-profile-") as profile:
        process = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--mute-audio",
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=to_fds_3_and_4,
        )
        os.close(commands_read)
        os.close(replies_write)
        page = Page(process, commands_write, replies_read)
        try:
            yield page
        finally:
            page.close()
