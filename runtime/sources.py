"""URI -> frame source: video files, image folders/globs, USB/CSI cameras, RTSP/HTTP streams, synthetic.

``open_source(uri)`` returns a ``Source``: an iterator of ``Frame`` (BGR uint8, capture timestamp, index,
stream id) with ``is_live`` (drives the pipeline's drop policy) and ``close()``.

=========================  ==================================================================  ========
URI                        what                                                                 live
=========================  ==================================================================  ========
``clip.mp4``, ``file://``  video file through OpenCV (FFmpeg); ends cleanly, ``loop`` rewinds       no
``dir/``, ``dir/*.jpg``    image folder (natural sort: 2 before 10) or glob; single image too      no
``v4l2:///dev/video0``     USB camera (V4L2; ``v4l2://0`` = index 0)                               yes
``csi://0``                Jetson CSI camera: GStreamer ``nvarguscamerasrc`` pipeline              yes
``rtsp://``, ``http(s)://``  network stream via FFmpeg; open/read timeouts                        yes
``synthetic://?fps=30``    built-in scene generator (``width height seed frames objects pool``)   if fps
=========================  ==================================================================  ========

Decoding is OpenCV's (``cv2.VideoCapture``); only the URI dispatch, timeouts, reconnection and pacing are
written here. A live source whose stream drops reconnects with exponential backoff (0.5 s doubling to 10 s)
and logs it; opening fails fast with a one-line ``UserError`` naming the URI (an unreachable stream is given
up after ``timeout_s``, never a hang). A file or folder paced with ``fps`` behaves like a camera (live).
"""

from __future__ import annotations

import glob
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from .errors import UserError
from .frames import Frame
from .lazy import cv2 as _cv2

__all__ = ["IMAGE_SUFFIXES", "SCHEMES", "Source", "open_source"]

log = logging.getLogger("edgevision.sources")

SCHEMES = ("file", "v4l2", "csi", "rtsp", "rtsps", "http", "https", "synthetic")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_BACKOFF_START_S, _BACKOFF_MAX_S = 0.5, 10.0
MAX_FRAME_SIDE = 8192  # resize targets: a 100,000-px side would allocate tens of GB per frame
MAX_FPS = 1000.0
DECODE_THREADS = 1  # FFmpeg decode threads: inference owns the other cores (see runtime/bench.py)


class Source:
    """Iterator of ``Frame``. Subclasses implement ``_read()`` (next image or None at the end)."""

    is_live: bool = False

    def __init__(self, uri: str, *, width: int | None = None, height: int | None = None,
                 fps: float | None = None, pace: bool = False, stream_id: int = 0) -> None:
        self.uri = uri
        self.width, self.height = width, height
        self.fps = fps
        self.stream_id = stream_id
        self._pace = pace and bool(fps)
        self._closed = threading.Event()
        self._active = False

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _read(self) -> np.ndarray | None:
        raise NotImplementedError

    def _release(self) -> None:
        """Free the underlying capture; called once iteration ends or on ``close()``."""

    def _fit(self, img: np.ndarray) -> np.ndarray:
        w, h = self.width, self.height
        if w is None and h is None:
            return img
        ih, iw = img.shape[:2]
        tw = w if w is not None else round(iw * (h or ih) / ih)
        th = h if h is not None else round(ih * tw / iw)
        if (th, tw) == (ih, iw):
            return img
        cv2 = _cv2()
        return np.asarray(cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA if tw < iw else cv2.INTER_LINEAR))

    def __iter__(self) -> Iterator[Frame]:
        self._active = True
        index = 0
        period = 1.0 / self.fps if self._pace and self.fps else 0.0
        due = time.monotonic()
        try:
            while not self._closed.is_set():
                img = self._read()
                if img is None:
                    return
                if period:
                    wait = due - time.monotonic()
                    if wait > 0 and self._closed.wait(wait):
                        return
                    due = max(due + period, time.monotonic() - period)
                yield Frame(self._fit(img), index, time.monotonic(), self.stream_id, self.uri)
                index += 1
        finally:
            self._active = False
            self._release()

    def close(self) -> None:
        """Stop iteration (a blocked read returns within its timeout) and release the device or file."""
        self._closed.set()
        if not self._active:
            self._release()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r}, live={self.is_live})"


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


class ImageSource(Source):
    """Images from a sorted list of files; unreadable files are skipped with a warning."""

    def __init__(self, uri: str, files: list[Path], *, loop: bool = False, fps: float | None = None,
                 **kw: Any) -> None:
        super().__init__(uri, fps=fps, pace=fps is not None, **kw)
        self.files, self._loop, self._i = files, loop, 0
        self.is_live = fps is not None
        self.frame_count = len(files)

    def _read(self) -> np.ndarray | None:
        cv2 = _cv2()
        misses = 0
        while misses < len(self.files):
            if self._i >= len(self.files):
                if not self._loop:
                    return None
                self._i = 0
            path = self.files[self._i]
            self._i += 1
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is not None:
                return np.asarray(img)
            misses += 1
            log.warning("%s: not a readable image, skipped", path)
        return None


def _natural_key(p: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(p))]


def _image_files(uri: str, paths: list[Path]) -> list[Path]:
    files = sorted((p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), key=_natural_key)
    if not files:
        raise UserError(f"{uri}: no images found ({', '.join(IMAGE_SUFFIXES)})")
    return files


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


def _open_file(uri: str, path: Path, *, timeout_s: float, loop: bool, **kw: Any) -> Source:
    if not path.exists():
        raise UserError(f"{uri}: no such file or directory")
    if path.is_dir():
        return ImageSource(uri, _image_files(uri, list(path.iterdir())), loop=loop, **kw)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(uri, [path], loop=loop, **kw)
    cv2 = _cv2()
    params = [cv2.CAP_PROP_N_THREADS, DECODE_THREADS] if hasattr(cv2, "CAP_PROP_N_THREADS") else []
    return CaptureSource(uri, lambda: cv2.VideoCapture(str(path), cv2.CAP_ANY, params), live=False,
                         what="video file", timeout_s=timeout_s, loop=loop, **kw)


def _open_synthetic(uri: str, query: str, **kw: Any) -> Source:
    from .synthetic import SyntheticSource

    opts: dict[str, float] = {}
    for key, vals in parse_qs(query, keep_blank_values=True).items():
        try:
            opts[key] = float(vals[-1])
        except ValueError:
            raise UserError(f"{uri}: {key}={vals[-1]!r} is not a number") from None
    for key in ("width", "height", "fps"):
        if kw.get(key) is not None:
            opts[key] = float(kw[key])
    return SyntheticSource(uri, opts, stream_id=kw.get("stream_id", 0))


def open_source(uri: str | os.PathLike[str], *, width: int | None = None, height: int | None = None,
                fps: float | None = None, loop: bool = False, timeout_s: float = 10.0,
                stream_id: int = 0) -> Source:
    """Open a frame source by URI (see the module docstring for the schemes).

    ``width``/``height`` resize frames (cameras are asked for that mode first; one of them keeps the aspect
    ratio); ``fps`` asks a camera for that rate and paces files/folders/synthetic to it (making them live);
    ``loop`` restarts files and folders at the end; ``timeout_s`` bounds opening a device or stream.
    Raises ``UserError`` naming the URI when it cannot be opened.
    """
    text = os.fspath(uri)
    for key, side in (("width", width), ("height", height)):
        if side is not None and not 1 <= side <= MAX_FRAME_SIDE:
            raise UserError(f"{text}: {key} {side} out of range [1, {MAX_FRAME_SIDE}]")
    if fps is not None and not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise UserError(f"{text}: fps {fps:g} out of range (0, {MAX_FPS:g}]")
    kw: dict[str, Any] = {"width": width, "height": height, "fps": fps, "stream_id": stream_id}
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", text)
    if m is None:
        if text.isdigit() and not Path(text).exists():
            return _open_camera(text, text, timeout_s=timeout_s, **kw)
        if glob.has_magic(text):
            return ImageSource(text, _image_files(text, [Path(p) for p in glob.glob(text, recursive=True)]),
                               loop=loop, **kw)
        return _open_file(text, Path(text).expanduser(), timeout_s=timeout_s, loop=loop, **kw)
    scheme, rest = m.group(1).lower(), m.group(2)
    if scheme not in SCHEMES:
        raise UserError(f"{text}: unknown source scheme {scheme!r}; use a file or folder path or one of "
                        + ", ".join(f"{s}://" for s in SCHEMES))
    if scheme == "file":
        return _open_file(text, Path(urlsplit(text).path), timeout_s=timeout_s, loop=loop, **kw)
    if scheme == "v4l2":
        return _open_camera(text, rest or "/dev/video0", timeout_s=timeout_s, **kw)
    if scheme == "csi":
        return _open_csi(text, rest.strip("/"), timeout_s=timeout_s, **kw)
    if scheme == "synthetic":
        return _open_synthetic(text, urlsplit(text).query, **kw)
    return _open_stream(text, timeout_s=timeout_s, **kw)
