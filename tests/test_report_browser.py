"""report.html in a real browser: headless Chromium (Debian's `chromium` package) opens it offline,
with no console error, no exception and no request for anything but the page itself, and a
screenshot is taken. Driven over the DevTools protocol on a pipe (--remote-debugging-pipe), so the
test needs nothing but the browser and the standard library."""

import base64
import fcntl
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium)"),
]


class DevTools:
    """The DevTools protocol over --remote-debugging-pipe: fd 3 carries commands to the browser,
    fd 4 its answers and events, each message a JSON text ending in NUL."""

    def __init__(self, profile_dir: Path) -> None:
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()
        # The browser reads fd 3 and writes fd 4. Copies above any fd the child could be handed make
        # the two dup2() calls in the child independent of which numbers os.pipe() returned.
        child_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 10)
        self.proc = subprocess.Popen(
            [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile_dir}", "--remote-debugging-pipe", "about:blank"],
            close_fds=False,  # dup2() leaves 3 and 4 inheritable; every other fd of ours is close-on-exec
            preexec_fn=lambda: (os.dup2(child_r, 3), os.dup2(child_w, 4)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fd in (to_browser_r, from_browser_w, child_r, child_w):
            os.close(fd)
        self.buffer, self.next_id, self.events = b"", 0, []

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self.from_browser, 1 << 16)
            if not chunk:
                raise EOFError("chromium closed the pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, session: str | None = None, timeout: float = 60, **params) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(self.to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._read(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]
            self.events.append(m)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for m in self.events:
            if m.get("method") == method:
                return m
        while True:
            m = self._read(deadline)
            self.events.append(m)
            if m.get("method") == method:
                return m

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (OSError, EOFError, TimeoutError, RuntimeError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.to_browser)
        os.close(self.from_browser)


def test_report_html_loads_offline_without_errors_and_screenshots(built_report, tmp_path):
    report_html = built_report["paths"]["html"]
    dt = DevTools(tmp_path / "profile")
    try:
        target = dt.send("Target.createTarget", url="about:blank")["targetId"]
        session = dt.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            dt.send(f"{domain}.enable", session)
        dt.send("Emulation.setDeviceMetricsOverride", session, width=1280, height=1600, deviceScaleFactor=1, mobile=False)
        dt.send("Page.navigate", session, url=report_html.resolve().as_uri())
        dt.wait_for("Page.loadEventFired")
        headline = dt.send("Runtime.evaluate", session, expression="document.getElementById('verdict').textContent")
        shot = dt.send("Page.captureScreenshot", session, format="png")
    finally:
        dt.close()
    errors = [
        m["params"]
        for m in dt.events
        if m.get("method") == "Runtime.exceptionThrown"
        or (m.get("method") == "Runtime.consoleAPICalled" and m["params"]["type"] in ("error", "assert"))
        or (m.get("method") == "Log.entryAdded" and m["params"]["entry"]["level"] == "error")
        or m.get("method") == "Network.loadingFailed"
    ]
    assert errors == []
    requested = [m["params"]["request"]["url"] for m in dt.events if m.get("method") == "Network.requestWillBeSent"]
    assert requested and all(url.startswith(("file:", "data:")) for url in requested), requested
    assert "findings" in headline["result"]["value"] and "unexplained" in headline["result"]["value"]
    png = base64.b64decode(shot["data"])
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    out = Path(os.environ.get("TCFUZZ_SCREENSHOT", tmp_path / "report.png"))
    out.write_bytes(png)
