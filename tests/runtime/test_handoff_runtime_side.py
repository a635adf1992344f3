"""export-triton / export-deepstream are runtime-side: they run where only the runtime is installed (a Jetson on
JetPack 5's Python 3.8; ``scripts/test-runtime-pythons`` runs this there) and never import torch.

The formats themselves are checked in tests/toolkit/test_handoff_{triton,deepstream}.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from stream_fixtures import make_bundle

pytest.importorskip("onnx")

CODE = ("import sys; from edgevision.toolkit.cli import main; main(sys.argv[1:]); "
        "sys.exit(3 if 'torch' in sys.modules else 0)")


def _edgevision(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CODE, *args], capture_output=True, text=True, timeout=120)


def test_handoff_commands_run_without_torch(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    out = _edgevision("export-triton", str(bundle), "--out", str(tmp_path / "repo"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "repo" / "tiny" / "config.pbtxt").is_file()
    assert (tmp_path / "repo" / "tiny" / "1" / "model.onnx").is_file()
    out = _edgevision("export-deepstream", str(bundle), "--out", str(tmp_path / "ds"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "ds" / "config_infer_primary.txt").is_file()
    (bundle / "model.onnx").unlink()
    out = _edgevision("export-deepstream", str(bundle), "--out", str(tmp_path / "ds2"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "model.onnx" in out.stderr
    assert not (tmp_path / "ds2").exists()
