"""Where results go: annotated video file, JSON lines, a display window, the HTTP live viewer.

Every sink follows ``sinks_base.Sink`` (``write(frame, detections)``, ``close()``, optional
``start(ctx)``). Errors the user can fix (a path that cannot be written, no screen, a port in use) are
raised as ``UserError`` by the constructor, i.e. when ``make_sink`` parses ``--sink``, not at the first
frame minutes into a run. Sinks never draw on ``frame.image`` in place: other sinks share it.

The file sinks (video, JSON lines) live in ``file_sinks``: how they never leave an incomplete file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import urllib.parse
from collections.abc import Sequence
from typing import Any, Protocol

from .draw import _cv2, draw_detections
from .errors import UserError
from .file_sinks import JsonlSink, VideoSink, result_record
from .frames import Frame
from .results import Detections
from .sinks_base import Sink, SinkContext

__all__ = ["DisplaySink", "HttpViewerSink", "JsonlSink", "VideoSink", "make_sink", "result_record"]

log = logging.getLogger(__name__)

SPEC_FORMS = ("video:PATH (.mp4/.avi)", "jsonl:PATH", "display", "http[://HOST:PORT][?token=SECRET][&insecure=1]")


class _HasSnapshot(Protocol):
    def snapshot(self) -> dict[str, Any]: ...


class DisplaySink:
    """A window per stream via ``cv2.imshow``; ``q`` or Esc in the window stops the run like Ctrl-C."""

    def __init__(self, class_names: Sequence[str] | None = None,
                 skeleton: Sequence[tuple[int, int]] | None = None, title: str = "edgevision") -> None:
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise UserError("display sink: no screen ($DISPLAY is not set); use --sink http to watch in a "
                            "browser or --sink video:out.mp4")
        cv2 = _cv2()
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise UserError("display sink: this OpenCV build has no GUI support (opencv-python-headless?); "
                            "use --sink http to watch in a browser") from None
        self.title = title
        self.class_names = list(class_names) if class_names is not None else None
        self.skeleton = list(skeleton) if skeleton is not None else None
        self.stop_requested = False
        self._windows: set[str] = {title}

    def start(self, ctx: SinkContext) -> None:
        if self.class_names is None:
            self.class_names = list(ctx.class_names)
        if self.skeleton is None:
            self.skeleton = list(ctx.keypoint_skeleton)

    def write(self, frame: Frame, detections: Detections) -> None:
        cv2 = _cv2()
        name = self.title if frame.stream_id == 0 else f"{self.title} [{frame.stream_id}]"
        self._windows.add(name)
        cv2.imshow(name, draw_detections(frame.image, detections, self.class_names, self.skeleton))
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27) and not self.stop_requested:
            self.stop_requested = True
            import _thread

            _thread.interrupt_main()  # the pipeline treats it as Ctrl-C: stops cleanly, flushes sinks

    def close(self) -> None:
        cv2 = _cv2()
        for name in self._windows:
            with contextlib.suppress(cv2.error):
                cv2.destroyWindow(name)
        self._windows.clear()


class HttpViewerSink:
    """Serves the live viewer (``viewer.LiveViewer``) while the pipeline runs; ``.url`` says where.

    ``write`` only stores a reference to the newest frame (microseconds): drawing and JPEG encoding
    happen in the viewer's own thread, and only while a browser is watching.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
                 class_names: Sequence[str] | None = None, skeleton: Sequence[tuple[int, int]] | None = None,
                 snapshot: Any = None, *, allow_insecure: bool = False) -> None:
        from .viewer import LiveViewer

        self.viewer = LiveViewer(host, port, token=token, class_names=class_names, skeleton=skeleton,
                                 snapshot=snapshot, allow_insecure=allow_insecure)
        self.url = self.viewer.url
        log.info("live viewer at %s", self.url)

    def start(self, ctx: SinkContext) -> None:
        self.viewer.configure(class_names=ctx.class_names, skeleton=ctx.keypoint_skeleton,
                              snapshot=ctx.snapshot)

    def write(self, frame: Frame, detections: Detections) -> None:
        self.viewer.publish(frame, detections)

    def close(self) -> None:
        self.viewer.close()


def _parse_http(spec: str) -> tuple[str, int, str | None, bool]:
    """(host, port, token, insecure) of ``http[://HOST:PORT][?token=SECRET][&insecure=1]``."""
    if spec == "http":
        return "127.0.0.1", 8080, None, False
    u = urllib.parse.urlsplit(spec)
    try:
        port = u.port
    except ValueError:
        raise UserError(f"--sink {spec!r}: bad port; expected http://HOST:PORT") from None
    if u.scheme != "http" or u.path not in ("", "/"):
        raise UserError(f"--sink {spec!r}: expected http://HOST:PORT[?token=SECRET]")
    query = urllib.parse.parse_qs(u.query, keep_blank_values=True)  # an empty ?token= is an error, not "no token"
    unknown = sorted(set(query) - {"token", "insecure"})
    if unknown:
        raise UserError(f"--sink {spec!r}: unknown option(s) {', '.join(unknown)}; only ?token=SECRET, ?insecure=1")
    token = query.get("token", [None])[-1]
    if token is not None and not token.strip():
        raise UserError(f"--sink {spec!r}: the token is empty; give ?token=SECRET")
    insecure = query.get("insecure", ["0"])[-1]
    if insecure not in ("0", "1"):
        raise UserError(f"--sink {spec!r}: insecure must be 0 or 1, got {insecure!r}")
    return u.hostname or "127.0.0.1", 8080 if port is None else port, token, insecure == "1"


def make_sink(spec: str, *, class_names: Sequence[str] | None = None,
              skeleton: Sequence[tuple[int, int]] | None = None, fps: float | None = None,
              metrics: _HasSnapshot | None = None) -> Sink:
    """Build a sink from an ``--sink`` spec: ``video:PATH``, ``jsonl:PATH``, ``display`` or
    ``http[://HOST:PORT][?token=SECRET]`` (default 127.0.0.1:8080; port 0 picks a free one).

    Anything not given here (class names, skeleton, fps, metrics) is taken from ``start(ctx)`` when the
    pipeline starts. Raises ``UserError`` for an unknown spec or one that cannot work (unwritable path,
    no screen, port in use).
    """
    kind, sep, arg = spec.partition(":")
    if kind == "video" and sep:
        if not arg:
            raise UserError(f"--sink {spec!r}: missing path, e.g. video:out.mp4")
        return VideoSink(arg, fps, class_names, skeleton)
    if kind == "jsonl" and sep:
        if not arg:
            raise UserError(f"--sink {spec!r}: missing path, e.g. jsonl:results.jsonl")
        return JsonlSink(arg, class_names)
    if spec == "display":
        return DisplaySink(class_names, skeleton)
    if spec == "http" or spec.startswith("http://"):
        host, port, token, insecure = _parse_http(spec)
        snapshot = metrics.snapshot if metrics is not None else None
        return HttpViewerSink(host, port, token, class_names, skeleton, snapshot, allow_insecure=insecure)
    raise UserError(f"--sink {spec!r}: unknown sink; use one of: {'; '.join(SPEC_FORMS)}")
