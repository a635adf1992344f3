"""How a caller drives a ``Pipeline``: ``run()``, iteration, ``with``, ``join`` (the stages live in ``pipeline``).

Split from ``pipeline.py`` to keep each file about one thing: this half only starts, waits for and stops the
stage threads through the hooks ``Pipeline`` defines (``start``, ``stop``, ``_close_sources``,
``_close_unstarted_sinks``); why a stop waits through Ctrl-C is in ``stage_threads``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from .channel import END, Channel
from .errors import UserError
from .frames import Frame
from .metrics import Metrics, StatusPrinter
from .results import Detections
from .stage_threads import StageThreads

__all__ = ["STOP_TIMEOUT_S", "PipelineControl"]

STOP_TIMEOUT_S = 60.0  # the longest a stop waits for the stages to finish writing (then: alive_threads())


class PipelineControl:
    """The public run/iterate/stop surface over the stage threads (``Pipeline`` subclasses it)."""

    metrics: Metrics
    _stages: StageThreads
    _status: StatusPrinter | None
    _error: BaseException | None
    _out: Channel | None
    _started: bool

    def start(self, collect: bool = False) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def _close_sources(self) -> None:
        raise NotImplementedError

    def _close_unstarted_sinks(self) -> None:
        raise NotImplementedError

    def alive_threads(self) -> list[str]:
        """Names of the stage threads still running (after ``join``: none, unless its timeout passed)."""
        return self._stages.alive()

    def join(self, timeout: float | None = None) -> None:
        """Wait for every stage thread; re-raise the first error a stage hit."""
        self._stages.wait(timeout)
        self.metrics.running = False
        if self._status is not None:
            self._status.stop()
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def run(self) -> dict[str, Any]:
        """Process the whole source (or until ``stop()``/Ctrl-C) and return ``metrics.snapshot()``."""
        try:
            self.start()  # inside the try: Ctrl-C while the stages spawn must stop the ones already running
            while not self._stages.all_done():
                self._stages.wait_some(0.2)
        except KeyboardInterrupt:
            self.stop()
            # computed results reach the sinks; never let the interpreter exit under a stage in native code
            self._stages.wait_through_interrupts(STOP_TIMEOUT_S)
            self._close_unstarted_sinks()
            with contextlib.suppress(Exception):  # a stage broken by the interrupt: the user's Ctrl-C wins
                self.join(timeout=0)
            raise
        self.join()
        return self.metrics.snapshot()

    def iter_frames(self) -> Iterator[tuple[Frame, Detections]]:
        """Yield ``(frame, detections)`` in order (newest policy: results may be skipped)."""
        if not self._started:
            self.start(collect=True)
        out = self._out
        if out is None:
            raise UserError("iterate a Pipeline instead of calling run()/start() first, not both")
        try:
            while (item := out.get()) is not END:
                yield item
        finally:
            self.stop()
            out.cancel()
            self.join(timeout=STOP_TIMEOUT_S)

    def __iter__(self) -> Iterator[Detections]:
        for _, det in self.iter_frames():
            yield det

    def __enter__(self) -> Any:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._started:
            self._close_sources()
            self._close_unstarted_sinks()
            return
        self.stop()
        try:
            self.join(timeout=STOP_TIMEOUT_S)
        except Exception:
            if exc is None:
                raise
