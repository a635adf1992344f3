"""The ``Source`` iterator every frame source derives from, and the limits all sources share."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator
from types import TracebackType

import numpy as np

from ..frames import Frame
from ..lazy import cv2 as _cv2

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
        self.name = uri  # what results call this stream (``Frame.source``); a multi-stream run may rename it
        self._pace = pace and bool(fps)
        self._closed = threading.Event()
        self._active = False

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _read(self) -> np.ndarray | None:
        raise NotImplementedError

    def _frame_name(self) -> str:
        """The file name of the image ``_read`` returned last (image folders), else ``""``."""
        return ""

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
                yield Frame(self._fit(img), index, time.monotonic(), self.stream_id, self.name, self._frame_name())
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


def timed_frames(source: Source, max_frames: int | None, on_capture: Callable[[float], None]
                 ) -> Generator[Frame, None, None]:
    """``source``'s frames (at most ``max_frames``), each read timed into ``on_capture(seconds)``; the source's
    iterator is closed when this generator is (use it under ``contextlib.closing`` to close it on ``break``)."""
    it = iter(source)
    n = 0
    try:
        while max_frames is None or n < max_frames:
            t0 = time.perf_counter()
            frame = next(it, None)
            if frame is None:
                return
            on_capture(time.perf_counter() - t0)
            yield frame
            n += 1
    finally:
        close = getattr(it, "close", None)
        if callable(close):
            close()
