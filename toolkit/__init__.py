"""edgevision.toolkit: build, compress, export and evaluate models (torch). Needs Python >= 3.10.

The runtime also runs on Python 3.8 (JetPack 5, whose TensorRT 8.5 bindings exist only for 3.8), and the
``edgevision`` command lives here, so on 3.8 this package still imports, but only the modules the runtime's
commands need (``run``, ``bench``, ``doctor``, ``devices``, ``engine``, ``export-triton``,
``export-deepstream``): any other toolkit module refuses to
import with one line saying so (``ToolkitUnavailable``, a ``UserError``: the CLI prints it and exits 2).
"""

from __future__ import annotations

import sys

# what `edgevision run/bench/doctor/devices/engine` import from here (the CLI registers every command; the
# toolkit ones import their work lazily), plus the pytest plugin, which pytest loads in every session of an
# environment with edgevision installed: all of it is Python 3.8-compatible
RUNTIME_SIDE = frozenset({"__main__", "cli", "cli_dataset", "cli_engine", "cli_handoff", "cli_regress",
                          "cli_report", "cli_runtime", "cli_serve", "devices", "engine_build", "engine_plan",
                          "entry", "handoff", "handoff_deepstream", "handoff_triton", "pytest_plugin", "run_signals"})

if sys.version_info < (3, 10):
    from edgevision.runtime.errors import UserError

    class ToolkitUnavailable(UserError, ImportError):
        """A toolkit module imported on Python < 3.10."""

    class _RuntimeOnly:  # a meta path finder needs only find_spec; importlib.abc costs ~10 ms of start-up on 3.8
        def find_spec(self, fullname: str, path: object, target: object = None) -> None:
            parts = fullname.split(".")
            if parts[:2] == ["edgevision", "toolkit"] and len(parts) > 2 and parts[2] not in RUNTIME_SIDE:
                raise ToolkitUnavailable(
                    f"{fullname} needs Python >= 3.10 (torch), this is Python {sys.version.split()[0]}: here only "
                    "the runtime works (edgevision run, bench, doctor, devices, engine); build and export the "
                    "model on a machine with Python >= 3.10"
                )
            return None

    sys.meta_path.insert(0, _RuntimeOnly())
