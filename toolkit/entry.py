"""The `edgevision` console script: Ctrl-C while the command line is still importing exits with one line.

The real command line (``cli.py``) imports click, numpy and the runtime (~0.4 s here, seconds on a loaded
Jetson); before its ``main`` runs no handler is in place, so a Ctrl-C in that window printed a
KeyboardInterrupt traceback from deep inside an import. This module imports nothing but ``signal`` (``os``
and ``sys`` are loaded with the interpreter; not even ``typing``: ~4 ms here), puts a SIGINT handler in place
that writes ``interrupted`` and exits 130 at once (nothing has been written or opened yet, so there is
nothing to flush), imports the real command line, then hands SIGINT back to Python's KeyboardInterrupt, which
``cli.main`` and the ``run`` command's own handlers turn into a clean stop.

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


def _exit_at_once(signum: int, frame: object) -> None:
    os.write(2, b"interrupted\n")
    os._exit(INTERRUPTED_EXIT)


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``[project.scripts] edgevision``): import the CLI under a Ctrl-C guard, then run it."""
    guarded = False
    # only over Python's own handler: a SIGINT the parent ignores (nohup, `cmd &` in a script) stays ignored
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        try:
            signal.signal(signal.SIGINT, _exit_at_once)
            guarded = True
        except ValueError:  # not the main thread (embedded use): the caller owns signals
            pass
    from .cli import main as cli_main

    try:  # handed back inside the try: a Ctrl-C right after it is still one line
        if guarded:
            signal.signal(signal.SIGINT, signal.default_int_handler)
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
