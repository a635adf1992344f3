"""``StreamMux``: N sources read in parallel, handed out as fair batches (one frame per stream per batch).

Each source has a reader thread (started by the pipeline as a stage thread) and a small queue of its own:

- live streams keep only their newest frame (a new frame replaces a waiting one, counted as that stream's
  drop), so a camera that inference cannot keep up with never builds a backlog;
- files and folders are lossless: the reader blocks while its queue is full, so every frame is inferred,
  in order within its stream.

``next_batch`` takes at most one frame from each stream that has one, visiting streams round-robin from just
after the last stream taken, so with more streams than the model's batch every stream is served in turn and
none starves. When some streams have no frame yet, it waits for them until the first stream ready has been
ready for ``timeout_s`` (the batching timeout: a slow or dead camera delays the others by at most that much;
a live stream's newer frame replacing its waiting one does not restart the clock), then sends what is there.
A stream that ends (a file at its end) or fails (its source raised, it could not be reopened) drops out of
the batches; its failure is logged once and kept in ``errors``; the mux ends when every stream has ended.
The default timeout (10 ms, ``run --batch-timeout``) is a third of a 30 fps camera's frame period, chosen,
not tuned: it bounds the latency batching adds. Hand-written: the round-robin take, the per-stream drop policy
and the batching timeout are this runtime's scheduling rules; a ``queue.Queue`` per stream has no "wait for
any of N".
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ..channel import END
from ..frames import Frame
from ..sources.base import Source, timed_frames

__all__ = ["StreamMux"]

log = logging.getLogger("edgevision.streams")


class _Stream:
    def __init__(self, source: Source, newest: bool, capacity: int) -> None:
        self.source = source
        self.newest = newest
        self.capacity = 1 if newest else max(1, capacity)
        self.items: deque[Frame] = deque()
        self.ended = False
        self.since = 0.0  # when this stream's waiting frame(s) became ready (kept while newer frames replace it)


class StreamMux:
    """Per-stream readers + the round-robin batch scheduler (see the module docstring).

    ``newest``: per stream, whether it keeps only its newest frame (default: ``source.is_live``).
    ``max_frames``: frames read per stream; ``max_batch``: frames per batch (default: one per stream).
    ``on_capture(stream_id, seconds)``, ``on_drop(stream_id, n)``, ``on_error(stream_id, line)``: metrics
    hooks. Frames keep their source's ``stream_id``; give each source its own.
    """

    def __init__(self, sources: Sequence[Source], *, newest: Sequence[bool] | None = None, capacity: int = 4,
                 timeout_s: float = 0.01, max_frames: int | None = None, max_batch: int | None = None,
                 on_capture: Callable[[int, float], None] | None = None,
                 on_drop: Callable[[int, int], None] | None = None,
                 on_error: Callable[[int, str], None] | None = None) -> None:
        flags = [s.is_live for s in sources] if newest is None else list(newest)
        self._streams = [_Stream(s, n, capacity) for s, n in zip(sources, flags)]
        self.timeout_s = timeout_s
        self.max_frames = max_frames
        self.max_batch = max_batch or len(self._streams)
        self.errors: dict[int, str] = {}  # stream id -> the one line its failure was reported with
        self._on_capture = on_capture or (lambda sid, s: None)
        self._on_drop = on_drop or (lambda sid, n: None)
        self._on_error = on_error or (lambda sid, line: None)
        self._cond = threading.Condition()
        self._next = 0  # round-robin position: the stream served first in the next batch
        self._closed = False
        self._seq = 0

    @property
    def sources(self) -> list[Source]:
        return [st.source for st in self._streams]

    def __len__(self) -> int:
        return len(self._streams)

    # -- readers (one thread each) ----------------------------------------------------------------------
    def reader(self, index: int) -> Callable[[], None]:
        """The body of stream ``index``'s reader thread."""
        return lambda: self._read(index)

    def _read(self, index: int) -> None:
        st = self._streams[index]
        sid = st.source.stream_id
        try:
            with contextlib.closing(timed_frames(st.source, self.max_frames,
                                                 lambda secs: self._on_capture(sid, secs))) as frames:
                for frame in frames:
                    if not self._put(st, frame):
                        break
        except Exception as exc:  # one stream's failure must not end the others
            text = str(exc).strip()
            line = f"stream {sid} ({st.source.uri}): {text.splitlines()[0] if text else type(exc).__name__}"
            log.error("%s; the other streams go on", line)
            self.errors[sid] = line
            self._on_error(sid, line)
        finally:
            st.source.close()
            with self._cond:
                st.ended = True
                self._cond.notify_all()

    def _put(self, st: _Stream, frame: Frame) -> bool:
        with self._cond:
            if not st.items:
                st.since = time.monotonic()
            if st.newest:
                dropped = 0
                while len(st.items) >= st.capacity:
                    st.items.popleft()
                    dropped += 1
                if dropped:
                    self._on_drop(st.source.stream_id, dropped)
            else:
                while len(st.items) >= st.capacity and not self._closed:
                    self._cond.wait()
            if self._closed:
                return False
            st.items.append(frame)
            self._cond.notify_all()
            return True

    # -- the scheduler (inference or batching thread) ---------------------------------------------------
    def next_batch(self, max_batch: int) -> tuple[int, list[Frame]] | None:
        """``(sequence number, frames)``, at most one per stream and ``max_batch`` in all, round-robin;
        None once every stream has ended and been drained, or after ``close()``."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                ready = [st for st in self._streams if st.items]
                if not ready:
                    if all(st.ended for st in self._streams):
                        return None
                    self._cond.wait()
                    continue
                waiting_for = [st for st in self._streams if not st.items and not st.ended]
                if len(ready) >= max_batch or not waiting_for:
                    break
                left = min(st.since for st in ready) + self.timeout_s - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            n, start = len(self._streams), self._next
            frames: list[Frame] = []
            for k in range(n):
                st = self._streams[(start + k) % n]
                if st.items and len(frames) < max_batch:
                    frames.append(st.items.popleft())
                    if st.items:  # lossless: the next frame has waited since it was captured
                        st.since = st.items[0].timestamp
                    self._next = (start + k + 1) % n  # the next batch starts after the last stream served
            seq, self._seq = self._seq, self._seq + 1
            self._cond.notify_all()  # lossless readers waiting for room
            return seq, frames

    def get(self) -> Any:
        """``next_batch(max_batch)`` in ``Channel.get``'s terms: the batch, or ``channel.END``."""
        got = self.next_batch(self.max_batch)
        return END if got is None else got

    def cancel(self) -> None:
        """``Channel.cancel``'s name for ``close`` (a stage that ends releases its input)."""
        self.close()

    def close(self) -> None:
        """Stop every reader (a blocked read returns within its timeout) and end ``next_batch``."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for st in self._streams:
            st.source.close()
