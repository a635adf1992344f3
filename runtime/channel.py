"""``Channel``: the bounded hand-off between two pipeline stages, with the two drop policies.

Hand-written because the semantics are the product: ``queue.Queue`` has no "replace the oldest" put (the
newest-frame policy of live sources), no cancel that wakes every waiter at once (a clean stop), and wakes
a blocked producer for every freed slot, while this one lets it sleep until the channel is half empty.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["EMPTY", "END", "Channel"]

#: What ``Channel.get`` returns once the channel is closed and drained, or cancelled.
END = object()
#: What ``Channel.get(timeout=...)`` returns when no item arrived in time.
EMPTY = object()


class Channel:
    """Bounded FIFO between threads; ``newest`` mode drops the oldest item instead of blocking."""

    def __init__(self, capacity: int, newest: bool, on_drop: Callable[[int], None]) -> None:
        self._items: deque[Any] = deque()
        self._cond = threading.Condition()
        self.capacity, self._newest, self._on_drop = max(1, capacity), newest, on_drop
        self._closed = self._cancelled = False

    def put(self, item: Any) -> bool:
        """Queue ``item``; False when the channel was cancelled (the producer should stop).

        Lossless: a producer that finds the channel full sleeps until it has drained to half, then refills
        it in a burst; this halves the thread wake-ups, which cost as much CPU as preprocessing a frame.
        """
        with self._cond:
            if self._newest:
                dropped = 0
                while len(self._items) >= self.capacity:
                    self._items.popleft()
                    dropped += 1
                if dropped:
                    self._on_drop(dropped)
            elif len(self._items) >= self.capacity:
                while len(self._items) > self.capacity // 2 and not self._cancelled:
                    self._cond.wait()
            if self._cancelled:
                return False
            self._items.append(item)
            if len(self._items) == 1:  # consumers wait only on an empty channel
                self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> Any:
        """Next item; ``END`` once the producer closed the channel and it is empty, or it was cancelled;
        ``EMPTY`` if ``timeout`` seconds pass with none of these."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items and not self._closed and not self._cancelled:
                if deadline is None:
                    self._cond.wait()
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    return EMPTY
                self._cond.wait(left)
            if self._cancelled or not self._items:
                return END
            item = self._items.popleft()
            if len(self._items) == self.capacity // 2:  # the low-water mark a blocked producer waits for
                self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def cancel(self) -> None:
        with self._cond:
            self._cancelled = True
            self._items.clear()
            self._cond.notify_all()
