"""Headless Chromium for the HTML tests, driven over the Chrome DevTools Protocol on a pipe.

``--remote-debugging-pipe`` makes Chromium read NUL-terminated JSON commands on fd 3 and write replies and
events on fd 4, so no port, websocket library or driver binary is needed. Every request a page makes is
logged from ``Network.requestWillBeSent`` (``Browser.requests``), and the browser is started with every host
name resolving to nothing (``--host-resolver-rules``) and background networking off, so a page that tries to
reach the internet both fails and is seen trying. Pages are served from a loopback-only HTTP server
(``serve``), as ``asv preview`` does: asv's JavaScript fetches its JSON, which browsers refuse for file://.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """The path of a Chromium-family browser on PATH, or None."""
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass


@contextlib.contextmanager
def serve(directory: str | os.PathLike) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (an ephemeral port) for the duration; yields the base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class BrowserError(Exception):
    """The browser did not answer as expected; the message carries what it said."""


class Browser:
    """One headless Chromium process; ``open`` loads a page in a fresh tab and waits for a condition."""

    def __init__(self, executable: str, width: int = 1280, height: int = 900) -> None:
        self._profile = tempfile.mkdtemp(prefix="harness-chromium-")
        self._log = open(Path(self._profile) / "chromium.log", "w+b")  # noqa: SIM115 (closed in close())
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        args = [f"--user-data-dir={self._profile}", "--headless", "--no-sandbox", "--disable-gpu",
                "--remote-debugging-pipe", "--no-first-run", "--no-default-browser-check",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--disable-extensions", "--metrics-recording-only",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                f"--window-size={width},{height}", "about:blank"]
        # bash moves our pipe ends to the fds Chromium expects (3: commands in, 4: replies out); dash cannot
        # redirect from fds above 9
        self._proc = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w}', executable, *args],
            pass_fds=(to_chrome_r, from_chrome_w), stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=self._log)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self._cond = threading.Condition()
        self.requests: list[str] = []          # every URL any page requested, in order
        self.console_errors: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    # ---------------------------------------------------------------- protocol
    def _read(self) -> None:
        buf = b""
        while True:
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cond:
                        self._replies[msg["id"]] = msg
                        self._cond.notify_all()
                    continue
                if msg.get("method") == "Network.requestWillBeSent":
                    self.requests.append(msg["params"]["request"]["url"])
                elif msg.get("method") == "Runtime.exceptionThrown":
                    self.console_errors.append(json.dumps(msg["params"]["exceptionDetails"])[:500])

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        """Send one command and return its result; raises BrowserError on an error reply or no reply."""
        with self._cond:
            self._next_id += 1
            msg_id = self._next_id
        msg = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        try:
            os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        except BrokenPipeError:
            raise BrowserError(f"chromium exited (code {self._proc.wait()}): {self.log_tail()}") from None
        deadline = time.monotonic() + timeout
        with self._cond:
            while msg_id not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self._proc.poll() is not None:
                    raise BrowserError(f"no reply to {method} (exit code {self._proc.poll()}): {self.log_tail()}")
                self._cond.wait(min(left, 0.5))
            reply = self._replies.pop(msg_id)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def log_tail(self) -> str:
        """The last lines Chromium printed (its own diagnostics), for error messages."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    # ---------------------------------------------------------------- pages
    def open(self, url: str, ready: str, timeout: float = 30.0) -> "Page":
        """Load ``url`` in a new tab and wait until the JavaScript expression ``ready`` is truthy."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Network", "Page", "Runtime"):
            self.send(f"{domain}.enable", session=session)
        page = Page(self, session, target)
        self.send("Page.navigate", {"url": url}, session=session)
        page.wait_for(ready, timeout)
        return page

    def close(self) -> None:
        """End the browser and remove its profile."""
        with contextlib.suppress(OSError, BrowserError):
            self.send("Browser.close", timeout=5)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for fd in (self._to_chrome, self._from_chrome):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._log.close()
        shutil.rmtree(self._profile, ignore_errors=True)


class Page:
    """One tab: evaluate JavaScript, wait for conditions, take screenshots."""

    def __init__(self, browser: Browser, session: str, target: str) -> None:
        self.browser, self.session, self.target = browser, session, target

    def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` in the page; raises BrowserError when it throws."""
        result = self.browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                         "awaitPromise": True}, session=self.session)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {result['exceptionDetails'].get('text')} "
                               f"{result['exceptionDetails'].get('exception', {}).get('description', '')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        """Poll ``expression`` until truthy; raises BrowserError with the page's URL and errors on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except BrowserError:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                where = self.evaluate("window.location.href")
                raise BrowserError(f"timed out waiting for {expression!r} at {where}; "
                                   f"page errors: {self.browser.console_errors[-3:]}")
            time.sleep(0.2)

    def screenshot(self, path: str | os.PathLike) -> Path:
        """Save a PNG of the viewport to ``path``."""
        data = self.browser.send("Page.captureScreenshot", {"format": "png"}, session=self.session)["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        """Close the tab."""
        self.browser.send("Target.closeTarget", {"targetId": self.target})
