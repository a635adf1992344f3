"""Golden tensors and `edgevision run --check`: an intact bundle passes, one changed weight or one changed stored
value fails (exit 1) naming the output, a bundle without golden/ is one line and exit 2."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the test model is written with onnx.helper")
pytest.importorskip("onnxruntime", reason="golden tensors run on ONNX Runtime here")

from edgevision.runtime.bundle import load_bundle  # noqa: E402
from edgevision.runtime.golden import (  # noqa: E402
    GOLDEN_DIR,
    TOLERANCES,
    check_lines,
    load_golden,
    make_golden,
    write_golden,
)

SIZE, NC, N = 32, 3, 16
MAIN = "import sys; from edgevision.toolkit.cli import main; main(sys.argv[1:])"


def _conv_onnx(path: Path, seed: int = 0) -> Path:
    """``images [1,3,32,32] -> Conv 8x8/8 (4 + NC channels) -> [1, 4 + NC, 16]``: every output depends on the
    pixels and on the weights, unlike the streaming tests' constant head."""
    h = onnx.helper
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.05, (4 + NC, 3, 8, 8)).astype(np.float32)
    b = rng.normal(0, 0.1, 4 + NC).astype(np.float32)
    inits = [onnx.numpy_helper.from_array(w, "w"), onnx.numpy_helper.from_array(b, "b"),
             onnx.numpy_helper.from_array(np.array([1, 4 + NC, N], np.int64), "shape")]
    nodes = [h.make_node("Conv", ["images", "w", "b"], ["c"], kernel_shape=[8, 8], strides=[8, 8]),
             h.make_node("Reshape", ["c", "shape"], ["output0"])]
    images = h.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1, 3, SIZE, SIZE])
    output = h.make_tensor_value_info("output0", onnx.TensorProto.FLOAT, [1, 4 + NC, N])
    graph = h.make_graph(nodes, "conv", [images], [output], inits)
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def _feeds(n: int = 2) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [{"images": rng.random((1, 3, SIZE, SIZE), dtype=np.float32)} for _ in range(n)]


def make_golden_bundle(root: Path, *, golden: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    _conv_onnx(root / "model.onnx")
    side = {"name": "conv", "task": "detect", "class_names": ["a", "b", "c"],
            "input": {"name": "images", "shape": [1, 3, SIZE, SIZE]},
            "output": {"layout": "yolo", "names": ["output0"], "num_classes": NC}}
    (root / "edgevision.json").write_text(json.dumps(side))
    if golden:
        write_golden(root, make_golden(root / "model.onnx", "fp32", _feeds(), source="test feeds"))
    return root


def _check(bundle: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", MAIN, "run", str(bundle), "--check", *extra],
                          capture_output=True, text=True, timeout=120)


def test_golden_round_trip_and_an_intact_bundle_passes(tmp_path: Path) -> None:
    b = make_golden_bundle(tmp_path / "b")
    g = load_golden(b)
    assert g is not None and g.index.samples == 2 and g.index.inputs == ["images"]
    assert g.outputs["output0"].shape == (2, 1, 4 + NC, N)
    assert [(o.atol, o.rtol) for o in g.index.outputs] == [(TOLERANCES["fp32"].atol, TOLERANCES["fp32"].rtol)]
    status, lines = check_lines(load_bundle(b), "onnxruntime")
    assert status == 0 and lines[0].startswith("PASS output0: max abs err 0,")
    r = _check(b)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("PASS output0")
    assert "golden check passed" in r.stdout


def test_one_perturbed_weight_fails_with_exit_1(tmp_path: Path) -> None:
    b = make_golden_bundle(tmp_path / "b")
    model = onnx.load(str(b / "model.onnx"))
    w = next(t for t in model.graph.initializer if t.name == "w")
    arr = onnx.numpy_helper.to_array(w).copy()
    arr[2, 1, 3, 3] += 0.5  # one weight of one output channel: moves that channel by up to 0.5 * pixel
    w.CopyFrom(onnx.numpy_helper.from_array(arr, "w"))
    onnx.save(model, str(b / "model.onnx"))
    r = _check(b)
    assert r.returncode == 1, r.stdout + r.stderr
    first = r.stdout.splitlines()[0]
    assert first.startswith("FAIL output0:") and "mismatch" in first
    # the worst element lies in the perturbed channel (index [sample, batch, channel, anchor])
    assert "worst at [" in first and first.split("worst at [")[1].split(",")[2].strip() == "2"
    assert "golden check FAILED" in r.stdout


def test_one_perturbed_stored_output_fails_and_is_the_worst_index(tmp_path: Path) -> None:
    b = make_golden_bundle(tmp_path / "b")
    path = b / GOLDEN_DIR / "outputs.npz"
    with np.load(path) as data:
        out = {k: data[k].copy() for k in data.files}
    out["output0"][1, 0, 5, 7] += 0.05  # beyond fp32's atol 1e-2 + rtol * |value|
    buf = io.BytesIO()
    np.savez_compressed(buf, **out)
    path.write_bytes(buf.getvalue())
    status, lines = check_lines(load_bundle(b), "onnxruntime")
    assert status == 1
    assert "mismatch 1/" in lines[0] and "worst at [1, 0, 5, 7]" in lines[0]
    assert _check(b).returncode == 1


def test_a_bundle_without_golden_is_one_line_and_exit_2(tmp_path: Path) -> None:
    b = make_golden_bundle(tmp_path / "old", golden=False)
    r = _check(b)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no golden tensors" in lines[0] and str(b) in lines[0]
    assert load_bundle(b).sidecar.name == "conv"  # the old bundle still loads


def test_a_damaged_golden_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    b = make_golden_bundle(tmp_path / "b")
    (b / GOLDEN_DIR / "outputs.npz").write_bytes(b"not a zip")
    r = _check(b)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "outputs.npz" in r.stderr
    (b / GOLDEN_DIR / "index.json").write_text('{"schema_version": 1, "samples": 0}')
    r = _check(b)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "index.json" in r.stderr


def test_run_needs_a_source_or_check(tmp_path: Path) -> None:
    b = make_golden_bundle(tmp_path / "b")
    r = subprocess.run([sys.executable, "-c", MAIN, "run", str(b)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--source" in r.stderr
    r = _check(b, "--source", "synthetic://")
    assert r.returncode == 2 and "takes no --source" in r.stderr
