"""``SinkRouter``: every result to the global sinks, and to the sinks of its own stream.

Per-stream sinks start with a ``SinkContext`` naming their own source (its URI, rate and liveness), so a
video sink per camera gets that camera's frame rate; global sinks get the first source's context (a single
source: exactly as before). Closing closes every sink once, whatever failed before, and returns the one error
the run reports: the error that stopped the sinks stays first, and write errors of several sinks (a JSON-lines
and a video sink on one full disk, each camera's video) are joined into one line, so the CLI prints one line
and no error is reported twice (a logged close error and the same error re-raised made two).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from ..frames import Frame
from ..results import Detections
from ..sinks.base import Sink, SinkContext, SinkWriteError, start_sink

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

    def close(self, first: BaseException | None = None) -> BaseException | None:
        """Close every sink once; return the error to report, None when there is none.

        ``first``: the error that stopped the run's sinks (a failed write), reported before any close error.
        ``SinkWriteError``s after a ``SinkWriteError`` are joined into its line; any other later error is
        logged (it cannot replace the first).
        """
        errors: list[BaseException] = [] if first is None else [first]
        for sink in self.all():
            try:
                sink.close()
            except Exception as exc:
                errors.append(exc)
        if not errors:
            return None
        head, joined = errors[0], [errors[0]]
        for later in errors[1:]:
            if isinstance(head, SinkWriteError) and isinstance(later, SinkWriteError):
                joined.append(later)
            else:
                log.error("closing a sink failed: %s", later)
        if len(joined) > 1:
            return SinkWriteError("; ".join(str(e) for e in joined))
        return head
