"""Where results go: annotated video file, JSON lines, a display window, the HTTP live viewer.

Every sink follows ``sinks_base.Sink`` (``write(frame, detections)``, ``close()``, optional
``start(ctx)``). Errors the user can fix (a path that cannot be written, no screen, a port in use) are
raised as ``UserError`` by the constructor, i.e. when ``make_sink`` parses ``--sink``, not at the first
frame minutes into a run. Sinks never draw on ``frame.image`` in place: other sinks share it.

The video file is written under a temporary sibling name (``name.tmp-XXXX.mp4``) and renamed on
``close()``, so a crash never leaves a half-written file under the requested name
(``fsutil.remove_stale_temps`` clears leftovers). JSON lines are written straight to the target and
flushed per frame, so ``tail -f`` works; every line is complete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from .draw import _cv2, draw_detections
from .errors import UserError
from .frames import Frame
from .fsutil import new_file_mode
from .results import Detections
from .sinks_base import Sink, SinkContext

__all__ = ["DisplaySink", "HttpViewerSink", "JsonlSink", "VideoSink", "make_sink", "result_record"]

log = logging.getLogger(__name__)

_VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}
SPEC_FORMS = ("video:PATH (.mp4/.avi)", "jsonl:PATH", "display", "http[://HOST:PORT][?token=SECRET]")


class _HasSnapshot(Protocol):
    def snapshot(self) -> dict[str, Any]: ...


def _wall_offset() -> float:
    """Add to a ``time.monotonic()`` stamp to get Unix time."""
    return time.time() - time.monotonic()


def result_record(frame: Frame, detections: Detections, class_names: Sequence[str] | None = None, *,
                  wall_offset: float | None = None) -> dict[str, Any]:
    """One frame's results as a JSON-ready dict (the JSON-lines sink's line, the viewer's ``/api/latest``).

    Timestamps are converted from ``time.monotonic()`` to Unix seconds (``wall_offset`` fixes the
    conversion; by default it is taken now). Class names that do not cover every id are left out (ids
    only) rather than failing mid-run.
    """
    offset = _wall_offset() if wall_offset is None else wall_offset
    meta = detections.meta
    t_cap = float(meta.get("t_capture", frame.timestamp))
    t_res = float(meta.get("t_result", time.monotonic()))
    names = class_names
    if names is not None and len(detections) and int(detections.class_ids.max()) >= len(names):
        names = None
    out: dict[str, Any] = {
        "stream_id": frame.stream_id,
        "frame": frame.index,
        "t_capture": round(t_cap + offset, 6),
        "t_result": round(t_res + offset, 6),
        "latency_ms": round(float(meta.get("latency_ms", (t_res - t_cap) * 1000.0)), 3),
    }
    out.update(detections.to_dict(list(names) if names is not None else None))
    out.setdefault("classes", [str(i) for i in out["class_ids"]])
    out.setdefault("keypoints", None)
    return out


class VideoSink:
    """Annotated video file via ``cv2.VideoWriter``: ``mp4v`` for .mp4/.m4v/.mov, ``MJPG`` for .avi.

    The frame size is taken from the first frame (later frames of another size are resized to it).
    ``fps`` defaults to the source's nominal rate (from ``start``) or 30.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float | None = None,
                 class_names: Sequence[str] | None = None,
                 skeleton: Sequence[tuple[int, int]] | None = None) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in _VIDEO_CODECS:
            raise UserError(f"video sink {self.path}: unsupported extension {suffix or '(none)'!r}; "
                            f"use one of {', '.join(_VIDEO_CODECS)}")
        self.fourcc = _VIDEO_CODECS[suffix]
        self.fps = fps
        self.class_names = list(class_names) if class_names is not None else None
        self.skeleton = list(skeleton) if skeleton is not None else None
        self.frames_written = 0
        self._size: tuple[int, int] | None = None
        self._writer: Any = None
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=self.path.stem + ".tmp-", suffix=suffix, dir=self.path.parent)
        except OSError as exc:
            raise UserError(f"video sink: cannot write {self.path} ({exc.strerror})") from None
        os.fchmod(fd, new_file_mode())
        os.close(fd)
        self._tmp = Path(tmp)
        if self.path.is_dir():
            self._tmp.unlink()
            raise UserError(f"video sink: {self.path} is a directory")

    def start(self, ctx: SinkContext) -> None:
        if self.fps is None and ctx.fps:
            self.fps = ctx.fps
        if self.class_names is None:
            self.class_names = list(ctx.class_names)
        if self.skeleton is None:
            self.skeleton = list(ctx.keypoint_skeleton)

    def _open(self, w: int, h: int) -> None:
        cv2 = _cv2()
        fps = float(self.fps) if self.fps and self.fps > 0 else 30.0
        writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*self.fourcc), fps, (w, h))
        if not writer.isOpened():
            raise UserError(f"video sink {self.path}: OpenCV cannot encode {self.fourcc!r} here; "
                            "try the other container (.avi uses MJPG)")
        self._writer, self._size = writer, (w, h)

    def write(self, frame: Frame, detections: Detections) -> None:
        if self._closed:
            return
        img = draw_detections(frame.image, detections, self.class_names, self.skeleton)
        h, w = img.shape[:2]
        if self._writer is None:
            self._open(w, h)
        elif (w, h) != self._size:
            img = _cv2().resize(img, self._size)
        self._writer.write(img)
        self.frames_written += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.release()
        if self.frames_written:
            os.replace(self._tmp, self.path)
        else:
            with contextlib.suppress(OSError):
                self._tmp.unlink()
            log.warning("video sink %s: no frames, no file written", self.path)


class JsonlSink:
    """One JSON object per frame: ``stream_id``, ``frame``, ``t_capture``/``t_result`` (Unix seconds),
    ``latency_ms``, ``boxes`` (xyxy source pixels), ``scores``, ``class_ids``, ``classes`` (names) and
    ``keypoints`` ([N, K, 3]) for pose models."""

    def __init__(self, path: str | os.PathLike[str], class_names: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self.class_names = list(class_names) if class_names is not None else None
        self._offset = _wall_offset()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f: IO[str] | None = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise UserError(f"jsonl sink: cannot write {self.path} ({exc.strerror})") from None

    def start(self, ctx: SinkContext) -> None:
        if self.class_names is None:
            self.class_names = list(ctx.class_names)

    def record(self, frame: Frame, detections: Detections) -> dict[str, Any]:
        """The JSON object written for one frame."""
        return result_record(frame, detections, self.class_names, wall_offset=self._offset)

    def write(self, frame: Frame, detections: Detections) -> None:
        if self._f is None:
            return
        self._f.write(json.dumps(self.record(frame, detections), separators=(",", ":")) + "\n")
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


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
                 snapshot: Any = None) -> None:
        from .viewer import LiveViewer

        self.viewer = LiveViewer(host, port, token=token, class_names=class_names, skeleton=skeleton,
                                 snapshot=snapshot)
        self.url = self.viewer.url
        log.info("live viewer at %s", self.url)

    def start(self, ctx: SinkContext) -> None:
        self.viewer.configure(class_names=ctx.class_names, skeleton=ctx.keypoint_skeleton,
                              snapshot=ctx.snapshot)

    def write(self, frame: Frame, detections: Detections) -> None:
        self.viewer.publish(frame, detections)

    def close(self) -> None:
        self.viewer.close()


def _parse_http(spec: str) -> tuple[str, int, str | None]:
    if spec == "http":
        return "127.0.0.1", 8080, None
    u = urllib.parse.urlsplit(spec)
    try:
        port = u.port
    except ValueError:
        raise UserError(f"--sink {spec!r}: bad port; expected http://HOST:PORT") from None
    if u.scheme != "http" or u.path not in ("", "/"):
        raise UserError(f"--sink {spec!r}: expected http://HOST:PORT[?token=SECRET]")
    query = urllib.parse.parse_qs(u.query)
    unknown = sorted(set(query) - {"token"})
    if unknown:
        raise UserError(f"--sink {spec!r}: unknown option(s) {', '.join(unknown)}; only ?token=SECRET")
    token = query.get("token", [None])[0]
    return u.hostname or "127.0.0.1", 8080 if port is None else port, token


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
        host, port, token = _parse_http(spec)
        snapshot = metrics.snapshot if metrics is not None else None
        return HttpViewerSink(host, port, token, class_names, skeleton, snapshot)
    raise UserError(f"--sink {spec!r}: unknown sink; use one of: {'; '.join(SPEC_FORMS)}")
