"""The sink protocol: where the pipeline's results go (video file, JSON lines, display, HTTP viewer, ...).

Structural (``typing.Protocol``) rather than a base class, so any object with ``write`` and ``close`` is a
sink, including a user's own. Concrete sinks live beside it, one module per kind; this module stays tiny so both the
pipeline and the sinks import it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..errors import EdgevisionError
from ..frames import Frame
from ..results import Detections

__all__ = ["Sink", "SinkContext", "SinkWriteError", "start_sink"]


class SinkWriteError(EdgevisionError):
    """A sink could not write (disk full, I/O error): the run stops with this one line and exit code 1."""

    exit_code = 1


@dataclass
class SinkContext:
    """What a sink may want to know before the first frame (passed to an optional ``start(ctx)``)."""

    class_names: list[str]
    task: str = "detect"
    source: str = ""
    fps: float | None = None
    is_live: bool = False
    snapshot: Callable[[], dict[str, Any]] = dict
    keypoint_skeleton: list[tuple[int, int]] = field(default_factory=list)


@runtime_checkable
class Sink(Protocol):
    """Receives every result, in order, on one thread (the pipeline's sink thread).

    ``write`` gets the original frame (do not draw on ``frame.image`` in place: copy first) and its
    detections in source pixels. ``close`` flushes and releases; it is called once at the end, also after
    Ctrl-C or an error. A sink may also define ``start(ctx: SinkContext)``, called once before the first
    ``write``.
    """

    def write(self, frame: Frame, detections: Detections) -> None: ...

    def close(self) -> None: ...


def start_sink(sink: Sink, ctx: SinkContext) -> None:
    """Call ``sink.start(ctx)`` when the sink defines it."""
    start = getattr(sink, "start", None)
    if callable(start):
        start(ctx)
