"""``SinkRouter``: every result to the global sinks, and to the sinks of its own stream.

Per-stream sinks start with a ``SinkContext`` naming their own source (its URI, rate and liveness), so a
video sink per camera gets that camera's frame rate; global sinks get the first source's context (a single
source: exactly as before). Closing closes every sink once, whatever failed before, and returns the errors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from ..frames import Frame
from ..results import Detections
from ..sinks.base import Sink, SinkContext, start_sink

__all__ = ["SinkRouter"]

log = logging.getLogger("edgevision.pipeline")


class SinkRouter:
    """``sinks`` get every result; ``per_stream[stream_id]`` only that stream's."""

    def __init__(self, sinks: Sequence[Sink], per_stream: Mapping[int, Sequence[Sink]] | None = None) -> None:
        self.sinks = list(sinks)
        self.per_stream = {int(k): list(v) for k, v in (per_stream or {}).items()}

    def all(self) -> list[Sink]:
        return [*self.sinks, *(s for group in self.per_stream.values() for s in group)]

    def __bool__(self) -> bool:
        return bool(self.all())

    def start(self, context: Callable[[int | None], SinkContext]) -> None:
        """``context(stream_id)`` (None: the global sinks' context)."""
        if self.sinks:
            ctx = context(None)
            for sink in self.sinks:
                start_sink(sink, ctx)
        for sid, group in self.per_stream.items():
            ctx = context(sid)
            for sink in group:
                start_sink(sink, ctx)

    def write(self, frame: Frame, det: Detections) -> None:
        for sink in self.sinks:
            sink.write(frame, det)
        for sink in self.per_stream.get(frame.stream_id, ()):
            sink.write(frame, det)

    def close(self) -> list[BaseException]:
        errors: list[BaseException] = []
        for sink in self.all():
            try:
                sink.close()
            except Exception as exc:
                log.error("closing sink %r failed: %s", sink, exc)
                errors.append(exc)
        return errors
