"""Python 3.8 (JetPack 5): the `edgevision` command's runtime side works, the toolkit refuses with one line.

These run where the interpreter is older than 3.10, i.e. under ``scripts/test-runtime-pythons`` (the runtime-only
venvs); on the project's main Python the toolkit is importable and they skip, saying so.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(sys.version_info >= (3, 10),
                                reason="checks Python < 3.10 behaviour; scripts/test-runtime-pythons runs it on 3.8")


def _edgevision(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from edgevision.toolkit.entry import main; main(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_toolkit_command_is_one_line_error() -> None:
    out = _edgevision("build", "recipe.yaml")
    assert out.returncode == 2, out.stderr
    err = out.stderr.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("error: edgevision.toolkit.build needs Python >= 3.10")


def test_toolkit_import_is_one_line_import_error() -> None:
    from edgevision.runtime.errors import UserError

    with pytest.raises(ImportError, match=r"needs Python >= 3\.10") as err:
        import edgevision.toolkit.build  # noqa: F401
    assert isinstance(err.value, UserError)


def test_runtime_commands_and_engine_planning_import() -> None:
    out = _edgevision("--help")
    assert out.returncode == 0, out.stderr
    for name in ("run", "bench", "doctor", "devices", "engine"):
        assert f"  {name}" in out.stdout
    import edgevision.toolkit.devices as devices

    assert "jetson-agx-orin-64gb" in [p.name for p in devices.list_profiles()]
    doctor = _edgevision("doctor", "--json")
    assert doctor.returncode == 0, doctor.stderr
    assert '"python"' in doctor.stdout
