"""The `edgevision` console script: Ctrl-C while the command line is still starting exits with one line.

The real command line (``cli.py``) imports click, numpy and the runtime (~0.4 s here, seconds on a loaded
Jetson); before its ``main`` runs no handler is in place, so a Ctrl-C in that window printed a
KeyboardInterrupt traceback from deep inside an import. This module imports nothing but ``signal`` (``os``
and ``sys`` are loaded with the interpreter; not even ``typing``: ~4 ms here), puts a SIGINT handler in place
that writes ``interrupted`` and exits 130 at once (nothing has been written or opened yet, so there is
nothing to flush), and runs the real command line under it. The guard stays until a command starts
(``release_guard``, called by the ``cli`` group), not only until ``cli.py`` is imported: click's own
dispatch can run a finalizer or a weakref callback (the garbage collector runs them at any allocation), and
a KeyboardInterrupt raised inside one is printed as "Exception ignored" and lost. ``run`` keeps the guard
until its pipeline exists (``run_signals.StopSignals``): its imports build the pydantic models of the
sidecar and the stream specs, and on Python 3.8 a KeyboardInterrupt inside pydantic-core's Rust schema
build made Rust panic and print its own message (CI, 225 ms after start). Other commands get Python's
KeyboardInterrupt back when they start, which ``cli.main`` and their own handlers turn into a clean stop;
those that load a bundle import its sidecar models first, still under the guard (the ``cli`` group).

Not covered, because no program's code runs yet: the interpreter's own start-up (``site`` and the ``.pth``
files, ~20 ms with a wheel install, more with an editable one). A Ctrl-C there is Python's
``init_import_site`` error, as for any Python program.

Python 3.8-compatible (``RUNTIME_SIDE``): the runtime's commands start here too.
"""

from __future__ import annotations

import os
import signal
import sys

INTERRUPTED_EXIT = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C'd command


_owner = [False]  # set by main(): this process is the console script, so exiting at once is ours to do


def _exit_at_once(signum: int, frame: object) -> None:
    os.write(2, b"interrupted\n")
    os._exit(INTERRUPTED_EXIT)


def owns_process() -> bool:
    """True when the console script (``main``) started this process: a command may end it with ``os._exit``
    before it has written anything, instead of raising in whatever code runs when a signal comes."""
    return _owner[0]


def exit_now(signum: int) -> None:
    """End the process at once for ``signum`` (128 + signum) with one line; only before anything was written."""
    if signum == signal.SIGINT:
        _exit_at_once(signum, None)
    os.write(2, b"terminated by signal %d\n" % signum)
    os._exit(128 + signum)


def release_guard() -> None:
    """A command is starting: SIGINT is Python's KeyboardInterrupt again, if the start-up guard is still in place."""
    if signal.getsignal(signal.SIGINT) is _exit_at_once:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``[project.scripts] edgevision``): the CLI runs under a Ctrl-C guard until a command
    starts (``release_guard``)."""
    current = signal.getsignal(signal.SIGINT)
    try:
        # only over Python's own handler: a SIGINT the parent ignores (nohup, `cmd &` in a script) stays ignored
        if current is signal.default_int_handler:
            signal.signal(signal.SIGINT, _exit_at_once)
        elif current is not None:
            signal.signal(signal.SIGINT, current)  # unchanged; ValueError off the main thread
        _owner[0] = True
    except ValueError:  # not the main thread (embedded use): the caller owns signals
        pass
    from .cli import main as cli_main

    try:
        cli_main(argv)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(INTERRUPTED_EXIT)
    except Exception as exc:
        if not _caused_by_interrupt(exc):
            raise
        sys.stderr.write("interrupted\n")
        sys.exit(INTERRUPTED_EXIT)


def _caused_by_interrupt(exc: BaseException) -> bool:
    """A Ctrl-C that reached us as another exception: Python < 3.12 turns an exception raised in
    ``__set_name__`` into ``RuntimeError(...) from exc``, so a Ctrl-C while a command imports pydantic lazily
    (class creation) was a RuntimeError traceback (1 of 100 runs of scripts/chaos-interrupt)."""
    seen = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return True
        seen.add(id(cur))
        cur = cur.__cause__
    return False
