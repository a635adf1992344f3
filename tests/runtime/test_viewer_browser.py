"""The live viewer page in a real browser (headless Chromium): it loads, shows frames, the stats update.

Driven through the DevTools protocol over ``--remote-debugging-pipe`` (NUL-separated JSON on fds 3/4), so
no websocket client or browser-automation package is needed. ``--dump-dom`` alone is not enough here: it
returns at the page's load event (about one poll in), so it cannot show the stats changing on one page.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgevision.runtime.frames import Frame
from edgevision.runtime.results import Detections
from edgevision.runtime.sinks.viewer import LiveViewer

CHROMIUM = "/usr/bin/chromium"
cv2 = pytest.importorskip("cv2")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="headless Chromium absent (/usr/bin/chromium): apt-get install -y chromium")


class Browser:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, user_dir: Path, log: Path) -> None:
        cmd_r, cmd_w = os.pipe()  # we write commands, Chromium reads fd 3
        evt_r, evt_w = os.pipe()  # Chromium writes fd 4, we read
        # move the child's ends above 9 so that bash's "3<&a 4>&b" cannot clobber one with the other
        cmd_r, evt_w = (self._high(fd) for fd in (cmd_r, evt_w))
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--mute-audio", "--disable-breakpad",
                "--remote-debugging-pipe", f"--user-data-dir={user_dir}", "--window-size=1000,700",
                "about:blank"]
        with log.open("wb") as err:
            self.proc = subprocess.Popen(["/bin/bash", "-c", f'exec "$0" "$@" 3<&{cmd_r} 4>&{evt_w}', *args],
                                         pass_fds=(cmd_r, evt_w), stdout=subprocess.DEVNULL, stderr=err)
        os.close(cmd_r)
        os.close(evt_w)
        self._w, self._r, self.log = cmd_w, evt_r, log
        self._buf = b""
        self._id = 0
        self.session: str | None = None

    @staticmethod
    def _high(fd: int) -> int:
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(fd)
        return high

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 15.0) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if self.session is not None and not method.startswith("Target."):
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        end = time.monotonic() + timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return dict(reply.get("result", {}))
            left = end - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError(f"Chromium did not answer {method}")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                tail = self.log.read_text(errors="replace").splitlines()[-5:]
                raise RuntimeError("Chromium exited: " + " | ".join(tail))
            self._buf += chunk

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def js(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return res["result"].get("value")

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)


@pytest.fixture
def live() -> Iterator[LiveViewer]:
    viewer = LiveViewer("127.0.0.1", 0, class_names=["circle", "square"], token="s3cret")
    stop = threading.Event()

    def feed() -> None:
        i = 0
        while not stop.wait(0.04):
            img = np.zeros((240, 320, 3), np.uint8)
            img[:, :, 1] = 60 + (i % 100)  # a green ramp: frames differ
            t = time.monotonic()
            d = Detections(np.array([[40, 40, 200, 180]], np.float32), np.array([0.9], np.float32),
                           np.array([1]))
            d.meta = {"t_capture": t - 0.005, "t_result": t, "latency_ms": 5.0}
            viewer.publish(Frame(image=img, index=i, timestamp=t - 0.005), d)
            i += 1

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    yield viewer
    stop.set()
    t.join()
    viewer.close()


def wait_js(browser: Browser, expression: str, timeout: float = 15.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = browser.js(expression)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"page never satisfied {expression!r}: {browser.js('document.body.innerText')!r}")


def test_page_shows_frames_and_stats_update(live: LiveViewer, tmp_path: Path) -> None:
    browser = Browser(tmp_path / "profile", tmp_path / "chromium.log")
    try:
        browser.open(live.url + "?token=s3cret")
        wait_js(browser, "document.getElementById('stream').naturalWidth > 0")
        assert browser.js("document.getElementById('stream').naturalWidth") == 320, "MJPEG frames decoded"
        first = int(wait_js(browser, "Number(document.getElementById('frame').textContent) || 0"))
        assert browser.js("document.getElementById('status').textContent") == "live"
        assert browser.js("document.getElementById('dets').innerText").startswith("square")
        time.sleep(1.2)
        second = int(browser.js("Number(document.getElementById('frame').textContent)"))
        assert second > first, "the stats on the open page update over time"
        assert float(browser.js("document.getElementById('fps').textContent")) > 0

        rect = browser.js("(() => { const r = document.getElementById('stream').getBoundingClientRect();"
                          " return [r.left, r.top, r.width, r.height]; })()")
        shot = browser.call("Page.captureScreenshot", {"format": "png"})["data"]
        png = cv2.imdecode(np.frombuffer(base64.b64decode(shot), np.uint8), cv2.IMREAD_COLOR)
        x, y, w, h = (round(v) for v in rect)
        assert w > 100 and h > 50
        region = png[y + 2: y + h - 2, x + 2: x + w - 2].astype(np.int32)
        assert region[..., 1].mean() > 40, "the green frame is on screen (not a blank image)"
        box_px = (np.abs(region - np.array(region[..., :].reshape(-1, 3).mean(0))).sum(-1) > 80).mean()
        assert box_px > 0.002, "the drawn box/label shows in the frame"
    finally:
        browser.close()
    assert live.jpeg_frames > 0
