"""Importing the runtime must not pull in torch (nor, for the package itself, onnxruntime or cv2)."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
import edgevision.runtime
heavy = [m for m in ("torch", "onnxruntime", "cv2") if m in sys.modules]
assert not heavy, f"import edgevision.runtime pulled in {heavy}"
import edgevision.runtime.backends, edgevision.runtime.postprocess, edgevision.runtime.preprocess
import edgevision.runtime.backends.onnxruntime
assert "torch" not in sys.modules, "the runtime imported torch"
assert "onnxruntime" not in sys.modules, "backends import onnxruntime only when a model is opened"
"""


def test_runtime_does_not_import_torch() -> None:
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
