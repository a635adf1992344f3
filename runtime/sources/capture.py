"""OpenCV captures: video files, USB (V4L2) and Jetson CSI cameras, RTSP/HTTP streams.

Decoding is OpenCV's (``cv2.VideoCapture``); only opening with a timeout, reconnection with backoff and
looping are written here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import UserError
from ..lazy import cv2 as _cv2
from .base import _BACKOFF_MAX_S, _BACKOFF_START_S, Source, log


def _open_capture(uri: str, opener: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Run ``opener`` (returns a cv2.VideoCapture) in a helper thread so a stuck open cannot hang us."""
    box: dict[str, Any] = {}
    done = threading.Event()  # not Thread.join after a Ctrl-C: on 3.11 it then reports a running thread stopped

    def target() -> None:
        try:
            box["cap"] = opener()
        except Exception as exc:  # cv2.error and friends
            box["err"] = exc
        finally:
            done.set()

    t = threading.Thread(target=target, name="edgevision-open", daemon=True)
    t.start()
    try:
        done.wait(timeout_s + 1.0)
    except KeyboardInterrupt:
        # let the open finish (bounded by its timeout) before the interpreter may exit: a thread inside
        # OpenCV when it does dies by SIGABRT ("terminate called without an active exception")
        done.wait(timeout_s + 1.0)
        if box.get("cap") is not None:
            box["cap"].release()
        raise
    if not done.is_set():
        raise UserError(f"{uri}: no answer after {timeout_s:g} s opening the {what}")
    cap = box.get("cap")
    if "err" in box or cap is None or not cap.isOpened():
        if cap is not None:
            cap.release()
        detail = f" ({str(box['err']).strip().splitlines()[-1]})" if "err" in box else ""
        if not detail and what == "stream":
            detail = " (OPENCV_FFMPEG_LOGLEVEL=16 shows FFmpeg's reason)"
        raise UserError(f"{uri}: cannot open the {what}{detail}")
    return cap


class CaptureSource(Source):
    """A ``cv2.VideoCapture``: a file (ends, optionally loops) or a live stream (reconnects with backoff).

    ``live=None`` decides by the stream itself: live unless it reports a frame count (a file over HTTP).
    """

    def __init__(self, uri: str, opener: Callable[[], Any], *, live: bool | None, what: str,
                 timeout_s: float = 10.0, loop: bool = False, max_reconnects: int | None = None,
                 width: int | None = None, height: int | None = None, fps: float | None = None,
                 stream_id: int = 0) -> None:
        self._lock = threading.Lock()
        self._cap: Any = None
        cap = _open_capture(uri, opener, timeout_s, what)
        cv2 = _cv2()
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        live = count <= 0 if live is None else live
        nominal = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        pace = fps is not None and not live
        super().__init__(uri, width=width, height=height, fps=fps or (nominal if 0 < nominal < 1000 else None),
                         pace=pace, stream_id=stream_id)
        self._cap = cap
        self._opener, self._what, self._timeout = opener, what, timeout_s
        self._loop, self._max_reconnects, self._reconnects = loop, max_reconnects, live
        self.is_live = live or pace
        self.frame_count = 0 if live else count

    def _read(self) -> np.ndarray | None:
        with self._lock:
            cap = self._cap
        ok, img = cap.read() if cap is not None else (False, None)
        if ok:
            return np.asarray(img)
        if self._closed.is_set():
            return None
        if self._reconnects:
            return self._reconnect()
        if self._loop:
            self._release()
            with self._lock:
                self._cap = _open_capture(self.uri, self._opener, self._timeout, self._what)
                ok, img = self._cap.read()
            return np.asarray(img) if ok else None
        return None

    def _reconnect(self) -> np.ndarray | None:
        delay, attempt = _BACKOFF_START_S, 0
        while not self._closed.is_set():
            attempt += 1
            if self._max_reconnects is not None and attempt > self._max_reconnects:
                log.error("%s: giving up after %d reconnect attempts", self.uri, attempt - 1)
                return None
            log.warning("%s: stream lost; reconnecting in %.1f s (attempt %d)", self.uri, delay, attempt)
            if self._closed.wait(delay):
                return None
            self._release()
            delay = min(delay * 2, _BACKOFF_MAX_S)
            try:
                cap = _open_capture(self.uri, self._opener, self._timeout, self._what)
            except UserError as exc:
                log.warning("%s", exc)
                continue
            with self._lock:
                self._cap = cap
            ok, img = cap.read()
            if ok:
                log.warning("%s: reconnected", self.uri)
                return np.asarray(img)
        return None

    def _release(self) -> None:
        with self._lock:
            cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()



def _has_gstreamer(cv2: Any) -> bool:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


def csi_pipeline(sensor_id: int, width: int, height: int, fps: float) -> str:
    """The GStreamer pipeline for a Jetson CSI camera (Argus -> NVMM -> BGR appsink, newest buffer only)."""
    return (f"nvarguscamerasrc sensor-id={sensor_id} ! video/x-raw(memory:NVMM), width={width}, "
            f"height={height}, framerate={round(fps)}/1 ! nvvidconv ! video/x-raw, format=BGRx ! "
            "videoconvert ! video/x-raw, format=BGR ! appsink drop=true max-buffers=1 sync=false")


def _open_camera(uri: str, target: str, *, width: int | None, height: int | None, fps: float | None,
                 timeout_s: float, **kw: Any) -> Source:
    cv2 = _cv2()
    dev: str | int = int(target) if target.isdigit() else target
    if isinstance(dev, str) and not os.path.exists(dev):
        raise UserError(f"{uri}: no such camera device {dev}")
    props = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(timeout_s * 1000)]
    for prop, val in ((cv2.CAP_PROP_FRAME_WIDTH, width), (cv2.CAP_PROP_FRAME_HEIGHT, height),
                      (cv2.CAP_PROP_FPS, fps)):
        if val:
            props += [prop, int(val)]
    return CaptureSource(uri, lambda: cv2.VideoCapture(dev, cv2.CAP_V4L2, props), live=True, what="camera",
                         timeout_s=timeout_s, width=width, height=height, fps=fps, **kw)


def _open_csi(uri: str, target: str, *, width: int | None, height: int | None, fps: float | None,
              timeout_s: float, **kw: Any) -> Source:
    cv2 = _cv2()
    if not target.isdigit():
        raise UserError(f"{uri}: expected csi://N with N the sensor id, e.g. csi://0")
    if not _has_gstreamer(cv2):
        raise UserError(f"{uri}: this OpenCV ({cv2.__version__}) was built without GStreamer; use the "
                        "system OpenCV of JetPack (do not pip-install opencv-python on a Jetson)")
    pipe = csi_pipeline(int(target), width or 1280, height or 720, fps or 30)
    return CaptureSource(uri, lambda: cv2.VideoCapture(pipe, cv2.CAP_GSTREAMER), live=True,
                         what="CSI camera", timeout_s=timeout_s, width=width, height=height, fps=fps, **kw)


def _open_stream(uri: str, *, timeout_s: float, **kw: Any) -> Source:
    cv2 = _cv2()
    ms = int(timeout_s * 1000)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
    live = None if uri.lower().startswith("http") else True  # a video file served over HTTP ends
    return CaptureSource(uri, lambda: cv2.VideoCapture(uri, cv2.CAP_FFMPEG, params), live=live, what="stream",
                         timeout_s=timeout_s, **kw)

