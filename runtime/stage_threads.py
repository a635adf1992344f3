"""The pipeline's stage threads: start them, know which still run, wait for them, also across Ctrl-C.

Hand-written (a few lines over ``threading``) because of two facts measured here on CPython 3.11.7:

- A ``Thread.join`` interrupted by Ctrl-C marks the still running thread as stopped (the bpo-45274 fix
  releases the running thread's own state lock): afterwards ``is_alive()`` is False and ``join`` returns at
  once while the thread keeps running (a thread sleeping 2 s, join interrupted at 0.3 s: the next join took
  0.0 s). So each stage sets an ``Event`` as it ends, and every wait here uses those events.
- A daemon thread that is inside OpenCV or ONNX Runtime (GIL released) when the interpreter exits is ended
  by ``pthread_exit`` as it reaches for the GIL; the unwind through their C++ frames calls
  ``std::terminate``: SIGABRT, "terminate called without an active exception" (a daemon thread looping in
  ``cv2.GaussianBlur`` or ``InferenceSession.run`` when the main thread exits: 8 of 8 runs each aborted).
  Hence ``wait_through_interrupts``: after Ctrl-C the pipeline waits for every stage, absorbing more Ctrl-Cs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["StageThreads"]

log = logging.getLogger("edgevision.pipeline")


class StageThreads:
    """Daemon threads named ``edgevision-NAME``, each with an end-of-body event."""

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []
        self._done: list[threading.Event] = []

    def spawn(self, name: str, body: Callable[[], None], on_error: Callable[[BaseException], None],
              on_exit: Callable[[], None]) -> None:
        """Run ``body``; an exception goes to ``on_error``; ``on_exit`` runs last (releases channels)."""
        done = threading.Event()

        def target() -> None:
            try:
                body()
            except BaseException as exc:
                on_error(exc)
            finally:
                try:
                    on_exit()
                finally:
                    done.set()

        t = threading.Thread(target=target, name=f"edgevision-{name}", daemon=True)
        self._threads.append(t)
        self._done.append(done)
        t.start()

    def alive(self) -> list[str]:
        """Names of the threads whose body has not ended."""
        return [t.name for t, done in zip(self._threads, self._done) if not done.is_set()]

    def all_done(self) -> bool:
        return all(done.is_set() for done in self._done)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every thread (at most ``timeout`` s in all); True when all have ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t, done in zip(self._threads, self._done):
            if done.wait(None if deadline is None else max(0.0, deadline - time.monotonic())):
                t.join()  # it has left its body: returns at once
        return self.all_done()

    def wait_some(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the first thread still running (a polling step, Ctrl-C can interrupt)."""
        waiting = [done for done in self._done if not done.is_set()]
        if waiting:
            waiting[-1].wait(timeout)

    def wait_through_interrupts(self, timeout: float) -> bool:
        """Wait for every thread up to ``timeout`` s; further Ctrl-Cs are logged, not raised."""
        deadline = time.monotonic() + timeout
        while not self.all_done() and time.monotonic() < deadline:
            try:
                self.wait_some(min(0.5, max(0.0, deadline - time.monotonic())))
            except KeyboardInterrupt:
                log.warning("stopping: writing the results already computed and closing the sinks")
        return self.all_done()
