"""File sinks: the annotated video and JSON lines, and the JSON record of one frame's results.

File sinks create nothing until the first result is written, so a run that fails before it has a result
(a bad model, a source that cannot be opened) leaves no empty file behind. A write that fails (disk full,
I/O error) raises ``SinkWriteError``: the run stops with one line and exit code 1, never a traceback.

The video file is written under a temporary sibling name (``name.tmp-PID-XXXX.mp4``) and renamed on
``close()`` only after OpenCV reads it back with as many frames as were written: OpenCV's ``VideoWriter``
reports no write errors (a full disk under it leaves an mp4 without its index, which no player opens), so
the check at close is what keeps an incomplete file from appearing under the requested name. During the run
the free space under the temporary file is checked once a second, and below ``_MIN_FREE_BYTES`` the run stops
as for a failed write. Temporary videos of dead processes (their PID is gone, e.g. after ``kill -9``) are
removed when the next video sink opens in that directory.

JSON lines are written straight to the target, one ``os.write`` per line with no buffering, so ``tail -f``
works; a line that cannot be written whole is cut off again (``ftruncate`` to the last complete line), so
every line in the file parses.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..draw import _cv2, draw_detections
from ..errors import UserError
from ..frames import Frame
from ..fsutil import new_file_mode
from ..results import Detections
from .base import SinkContext, SinkWriteError

__all__ = ["JsonlSink", "VideoSink", "check_writable", "remove_dead_temps", "result_record"]

log = logging.getLogger(__name__)

_VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}
_MIN_FREE_BYTES = 256 << 10  # below this much free space under a video being written, stop the run (disk full)
_SPACE_CHECK_S = 1.0


def _wall_offset() -> float:
    """Add to a ``time.monotonic()`` stamp to get Unix time."""
    return time.time() - time.monotonic()


def result_record(frame: Frame, detections: Detections, class_names: Sequence[str] | None = None, *,
                  wall_offset: float | None = None) -> dict[str, Any]:
    """One frame's results as a JSON-ready dict (the JSON-lines sink's line, the viewer's ``/api/latest``).

    ``source`` names the stream (its URI unless named), ``file`` the image's file name (image folders only).
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
        "source": frame.source,
        "frame": frame.index,
        "t_capture": round(t_cap + offset, 6),
        "t_result": round(t_res + offset, 6),
        "latency_ms": round(float(meta.get("latency_ms", (t_res - t_cap) * 1000.0)), 3),
    }
    if frame.name:
        out["file"] = frame.name  # the image's file name (image folders)
    out.update(detections.to_dict(list(names) if names is not None else None))
    out.setdefault("classes", [str(i) for i in out["class_ids"]])
    out.setdefault("keypoints", None)
    return out


def check_writable(path: Path, what: str) -> None:
    """Fail now (``UserError``) if ``path`` cannot be created later: it is a directory, or its nearest existing
    ancestor is not a writable directory. Creates nothing."""
    if path.is_dir():
        raise UserError(f"{what}: {path} is a directory")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{what}: cannot write {path} ({parent} is not a directory)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{what}: cannot write {path} (no permission in {parent})")


def _mkdirs(path: Path, what: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SinkWriteError(f"{what}: cannot create {path.parent} ({exc.strerror})") from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_dead_temps(path: Path) -> int:
    """Remove ``path``'s temporary siblings (``stem.tmp-PID-XXXX.suffix``) whose process no longer runs."""
    pattern = re.compile(re.escape(path.stem) + r"\.tmp-(\d+)-[^/]*" + re.escape(path.suffix) + "$")
    n = 0
    with contextlib.suppress(OSError):
        for p in path.parent.iterdir():
            m = pattern.match(p.name)
            if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
                with contextlib.suppress(OSError):
                    p.unlink()
                    n += 1
    return n


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
        self._tmp: Path | None = None
        self._closed = False
        self._next_space_check = 0.0
        check_writable(self.path, "video sink")

    def start(self, ctx: SinkContext) -> None:
        if self.fps is None and ctx.fps:
            self.fps = ctx.fps
        if self.class_names is None:
            self.class_names = list(ctx.class_names)
        if self.skeleton is None:
            self.skeleton = list(ctx.keypoint_skeleton)

    def _open(self, w: int, h: int) -> None:
        """Create the temporary file and its writer (at the first frame: a run without results leaves nothing)."""
        cv2 = _cv2()
        _mkdirs(self.path, "video sink")
        remove_dead_temps(self.path)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f"{self.path.stem}.tmp-{os.getpid()}-", suffix=self.path.suffix,
                                       dir=self.path.parent)
        except OSError as exc:
            raise SinkWriteError(f"video sink: cannot write {self.path} ({exc.strerror})") from None
        os.fchmod(fd, new_file_mode())
        os.close(fd)
        self._tmp = Path(tmp)
        fps = float(self.fps) if self.fps and self.fps > 0 else 30.0
        writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*self.fourcc), fps, (w, h))
        if not writer.isOpened():
            self._discard()
            raise UserError(f"video sink {self.path}: OpenCV cannot encode {self.fourcc!r} here; "
                            "try the other container (.avi uses MJPG)")
        self._writer, self._size = writer, (w, h)

    def _check_space(self) -> None:
        now = time.monotonic()
        if now < self._next_space_check or self._tmp is None:
            return
        self._next_space_check = now + _SPACE_CHECK_S
        try:
            st = os.statvfs(self._tmp.parent)
        except OSError:
            return
        if st.f_bavail * st.f_frsize < _MIN_FREE_BYTES:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def write(self, frame: Frame, detections: Detections) -> None:
        if self._closed:
            return
        img = draw_detections(frame.image, detections, self.class_names, self.skeleton)
        h, w = img.shape[:2]
        if self._writer is None:
            self._open(w, h)
        elif (w, h) != self._size:
            img = _cv2().resize(img, self._size)
        try:
            self._check_space()
            self._writer.write(img)
        except OSError as exc:
            self._discard()
            raise SinkWriteError(f"video sink {self.path}: cannot write ({exc.strerror}); no video written, "
                                 f"{self.frames_written} frames lost") from None
        self.frames_written += 1

    def _discard(self) -> None:
        """Drop the writer and the temporary file (a failed run leaves nothing under the target name)."""
        self._closed = True
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.release()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.unlink()

    def _frames_on_disk(self) -> int:
        """How many frames OpenCV finds in the temporary file (0 when it cannot open it: no index)."""
        cv2 = _cv2()
        cap = cv2.VideoCapture(str(self._tmp))
        try:
            return int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if cap.isOpened() else 0
        finally:
            cap.release()

    def close(self) -> None:
        """Finish the file and move it under its name, only when OpenCV reads back every frame written."""
        if self._closed:
            return
        if self._writer is None or self._tmp is None:
            self._closed = True
            log.debug("video sink %s: no frames, no file written", self.path)
            return
        self._closed = True
        self._writer.release()
        self._writer = None
        found = self._frames_on_disk()
        if found != self.frames_written:
            self._discard()
            raise SinkWriteError(f"video sink {self.path}: the finished file holds {found} of "
                                 f"{self.frames_written} frames (disk full or I/O error?); no video written")
        try:
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self._discard()
            raise SinkWriteError(f"video sink {self.path}: cannot move the finished video into place "
                                 f"({exc.strerror})") from None


class JsonlSink:
    """One JSON object per frame: ``stream_id``, ``frame``, ``t_capture``/``t_result`` (Unix seconds),
    ``latency_ms``, ``boxes`` (xyxy source pixels), ``scores``, ``class_ids``, ``classes`` (names) and
    ``keypoints`` ([N, K, 3]) for pose models."""

    def __init__(self, path: str | os.PathLike[str], class_names: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self.class_names = list(class_names) if class_names is not None else None
        self._offset = _wall_offset()
        self._fd: int | None = None
        self._size = 0  # bytes of complete lines in the file
        self.lines_written = 0
        self._closed = False
        check_writable(self.path, "jsonl sink")

    def start(self, ctx: SinkContext) -> None:
        if self.class_names is None:
            self.class_names = list(ctx.class_names)

    def record(self, frame: Frame, detections: Detections) -> dict[str, Any]:
        """The JSON object written for one frame."""
        return result_record(frame, detections, self.class_names, wall_offset=self._offset)

    def _error(self, exc: OSError) -> SinkWriteError:
        return SinkWriteError(f"jsonl sink {self.path}: cannot write ({exc.strerror}); the file holds the first "
                              f"{self.lines_written} results, each line complete")

    def write(self, frame: Frame, detections: Detections) -> None:
        if self._closed:
            return
        data = (json.dumps(self.record(frame, detections), separators=(",", ":")) + "\n").encode()
        if self._fd is None:
            _mkdirs(self.path, "jsonl sink")
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
            except OSError as exc:
                raise SinkWriteError(f"jsonl sink: cannot write {self.path} ({exc.strerror})") from None
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)  # cut the partial line: every line in the file parses
            self._close_fd()
            raise self._error(exc) from None
        self._size += len(data)
        self.lines_written += 1

    def _close_fd(self) -> None:
        self._closed = True
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        if self._fd is None:
            self._closed = True
            return
        try:
            os.fsync(self._fd)  # a delayed write error (EIO, ENOSPC on some filesystems) surfaces here
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EROFS):  # a pipe or special file: nothing to sync
                self._close_fd()
                raise self._error(exc) from None
        self._close_fd()
