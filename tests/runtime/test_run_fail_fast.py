"""`run` and `bench` check the model the same way, before any output: one line, exit 2, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from stream_fixtures import make_bundle

pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

MAIN = "from edgevision.toolkit.cli import main; main()"


def test_bench_without_source_makes_the_checks_run_makes(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "tiny")
    side = json.loads((bundle / "edgevision.json").read_text())
    side["output"]["num_classes"], side["class_names"] = 5, list("abcde")  # the model emits 3 classes
    (bundle / "edgevision.json").write_text(json.dumps(side))
    out = tmp_path / "out"
    errors = []
    for args in (["run", str(bundle), "--source", "synthetic://?frames=3&width=64&height=48", "--no-status",
                  "--sink", f"jsonl:{out / 'r.jsonl'}"],
                 ["bench", str(bundle), "--iters", "2", "--warmup", "0"]):
        proc = subprocess.run([sys.executable, "-c", MAIN, *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        errors.append(proc.stderr)
    assert errors[0] == errors[1] and "num_classes" in errors[0]
    assert not out.exists()
