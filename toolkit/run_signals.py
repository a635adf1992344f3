"""Signals and exit of `edgevision run`: handlers for SIGINT/SIGTERM that never raise, and the last-resort exit
when a pipeline stage thread outlives the stop timeout (kept apart from the command's options in
``cli_runtime``)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any

import click

from .entry import exit_now, owns_process


def exit_if_stages_alive(pipe: Any) -> None:
    """The interpreter must not exit while a stage thread is inside native code (see ``Pipeline.run``): if one is
    still running after the pipeline's stop timeout, leave at once without finalising the interpreter."""
    alive = pipe.alive_threads()
    if alive:
        click.echo(f"error: pipeline stages still running after the stop timeout ({', '.join(alive)}); "
                   "exiting without waiting for them", err=True)
        sys.stderr.flush()
        os._exit(1)


class StopSignals:
    """SIGINT (Ctrl-C) and SIGTERM (``docker stop``, systemd, ``kill``) during ``run``: handlers that never raise.

    Python's own SIGINT raises KeyboardInterrupt in whatever code the main thread runs; inside a finalizer or a
    weakref callback (the garbage collector runs them at any allocation, click's dispatch included) it is
    printed as "Exception ignored" and lost: 1 of 100 runs of scripts/chaos-interrupt ran on for a minute after
    its Ctrl-C (tests/runtime/test_cli_run_signals.py delivers one inside a finalizer). So:

    - before the pipeline exists (loading the model, opening sources and sinks; nothing written yet: files
      appear with the first result), the console script ends at once with one line, exit 130 (Ctrl-C) or 143
      (SIGTERM), as its start-up guard (``entry``) does; called in-process, KeyboardInterrupt / SystemExit;
    - once it exists, ``stop()``: frames not yet inferred are dropped, computed results reach the sinks and
      every sink is closed (a video gets its index); ``run`` then ends 130 after a Ctrl-C, 0 after SIGTERM.
      Another Ctrl-C only says so: the stop waits for the sinks (``pipeline_control.STOP_TIMEOUT_S``).

    A SIGINT the parent ignores (nohup, ``cmd &`` in a script) stays ignored.
    """

    def __init__(self, holder: list[Any]) -> None:
        self.holder = holder
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}
        self._busy = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            current = signal.getsignal(sig)
            if current is signal.SIG_IGN and sig == signal.SIGINT:
                continue
            with contextlib.suppress(ValueError):  # not the main thread (embedded use): the caller owns signals
                self._previous[sig] = signal.signal(sig, self._handle)

    @property
    def interrupted(self) -> bool:
        return signal.SIGINT in self.received

    def _handle(self, signum: int, _frame: Any) -> None:
        self.received.append(signum)
        if self._busy:  # two signals at once: Python runs the second inside this handler, where stop() may hold a
            return      # (non-reentrant) lock of an Event; the first one's stop() does the work
        self._busy = True
        try:
            if not self.holder:
                if owns_process():
                    exit_now(signum)
                if signum == signal.SIGINT:
                    raise KeyboardInterrupt
                raise SystemExit(128 + signum)
            if signum != signal.SIGINT:
                os.write(2, b"received signal %d: stopping\n" % signum)
            elif self.received.count(signum) > 1:
                os.write(2, b"edgevision: stopping: writing the results already computed and closing the sinks\n")
            self.holder[0].stop()
        finally:
            self._busy = False

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
