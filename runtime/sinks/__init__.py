"""Where results go: annotated video file, JSON lines, a display window, the HTTP live viewer.

Every sink follows ``base.Sink`` (``write(frame, detections)``, ``close()``, optional
``start(ctx)``). Errors the user can fix (a path that cannot be written, no screen, a port in use) are
raised as ``UserError`` by the constructor, i.e. when ``make_sink`` parses ``--sink``, not at the first
frame minutes into a run. Sinks never draw on ``frame.image`` in place: other sinks share it.

One module per kind: ``files`` (video, JSON lines: how they never leave an incomplete file), ``display``,
``http`` + ``viewer`` (the live viewer); ``make_sink`` here parses ``--sink``. A new sink is one module plus
one branch in ``make_sink``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ..errors import UserError
from .base import Sink, SinkContext, SinkWriteError, start_sink
from .display import DisplaySink
from .files import JsonlSink, VideoSink, result_record
from .http import HttpViewerSink, _parse_http

__all__ = ["DisplaySink", "HttpViewerSink", "JsonlSink", "Sink", "SinkContext", "SinkWriteError", "VideoSink",
           "make_sink", "result_record", "start_sink"]


SPEC_FORMS = ("video:PATH (.mp4/.avi)", "jsonl:PATH", "display", "http[://HOST:PORT][?token=SECRET][&insecure=1]")


class _HasSnapshot(Protocol):
    def snapshot(self) -> dict[str, Any]: ...




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
