"""``model: {onnx: file}``: an Ultralytics-exported ONNX (made here by Ultralytics' own exporter from a
YOLOv8n yaml with random weights) through INT8 quantize + FP16 + evaluate, and the ONNX source's bad inputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from cli_helpers import run_main

from edgevision.runtime.backends.onnxruntime import OrtBackend
from edgevision.runtime.bundle import load_bundle
from edgevision.runtime.fsutil import sha256_file
from edgevision.toolkit.build import build
from edgevision.toolkit.compress.qdq_check import require_tensorrt_qdq

RECIPE = """\
name: fromonnx
model: {{onnx: {onnx}}}
dataset: {{kind: synthetic, seed: 3, num_train: 24, num_val: 8, image_size: 64, max_objects: 3}}
bench: {{warmup: 1, iters: 3, threads: 2}}
"""


@pytest.fixture(scope="module")
def ultralytics_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """YOLOv8n for the synthetic set's 6 classes, exported by Ultralytics at 64 px (offline, no simplifier)."""
    os.environ["YOLO_OFFLINE"] = "1"
    pytest.importorskip("ultralytics", reason="the Ultralytics extra is not installed")
    import yaml
    from ultralytics import YOLO
    from ultralytics.nn.tasks import yaml_model_load

    root = tmp_path_factory.mktemp("ultra")
    cfg = yaml_model_load("yolov8n.yaml")
    cfg.update(nc=6, scale="n")
    cfg.pop("yaml_file", None)
    path = root / "yolov8n-shapes.yaml"  # the file name carries the scale Ultralytics reads
    path.write_text(yaml.safe_dump(cfg))
    torch.manual_seed(0)
    here = Path.cwd()
    os.chdir(root)  # the exporter writes beside the model's "file", the yaml's name in the working directory
    try:
        out = YOLO(str(path)).export(format="onnx", imgsz=64, simplify=False, opset=17)
    finally:
        os.chdir(here)
    return root / Path(out).name


@pytest.fixture(scope="module")
def built(ultralytics_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("onnxbuild")
    recipe = root / "r.yaml"
    recipe.write_text(RECIPE.format(onnx=ultralytics_onnx)
                      + "compress:\n  - quantize: {method: minmax, calib_images: 8, fp16: true}\n")
    out = root / "out"
    return out, build(recipe, out, log=lambda m: None).manifest


def test_ultralytics_onnx_is_quantized_and_evaluated(ultralytics_onnx: Path, built: tuple[Path, dict]) -> None:
    out, manifest = built
    assert manifest["recipe"]["input_size"] == 64  # taken from the file's metadata (imgsz), not the default
    variants = manifest["variants"]
    assert list(variants) == ["fp32", "int8", "fp16"]
    # the FP32 variant is the user's file itself, unchanged
    assert sha256_file(out / "fp32" / "model.onnx") == sha256_file(ultralytics_onnx)
    assert variants["fp32"]["params"] == pytest.approx(3.0e6, rel=0.05)  # YOLOv8n with 6 classes
    for name, v in variants.items():
        side = load_bundle(out / name).sidecar
        assert side.precision == v["precision"] and side.output.num_classes == 6
        assert 0.0 <= v["metrics"]["map50_95"] <= 1.0
        assert "torch-cpu" not in v["latency_ms"] and "onnxruntime-cpu" in v["latency_ms"]
        assert "torch-cpu skipped" in v["notes"][0]
    assert require_tensorrt_qdq(out / "int8" / "model.onnx").ok
    # the decode tail stays float: the six head output convs, found from the graph, and no Q/DQ in the DFL
    float_layers = variants["int8"]["compress"]["float_layers"]
    assert sorted(float_layers) == sorted(f"/model.22/cv{b}.{i}/cv{b}.{i}.2/Conv" for b in (2, 3) for i in range(3))
    int8 = onnx.load(str(out / "int8" / "model.onnx"))
    producer = {o: n for n in int8.graph.node for o in n.output}
    dfl = [n for n in int8.graph.node if n.op_type == "Conv" and "dfl" in n.name]
    assert dfl and all(producer[n.input[0]].op_type == "Softmax" for n in dfl)


def test_int8_boxes_follow_the_fp32_model(built: tuple[Path, dict]) -> None:
    """Decoded boxes of the INT8 model stay close to the FP32 model's (the float decode tail at work)."""
    out, _ = built
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    with OrtBackend(out / "fp32" / "model.onnx") as a, OrtBackend(out / "int8" / "model.onnx") as b:
        ref, got = a.infer({"images": x})["output0"], b.infer({"images": x})["output0"]
    assert ref.shape == got.shape == (1, 10, 84)
    assert float(np.median(np.abs(ref[0, :4] - got[0, :4]))) < 2.0  # pixels, at 64 px input


def _two_output_onnx(path: Path) -> Path:
    class TwoHeads(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x.mean((2, 3)), x.amax((2, 3))

    torch.onnx.export(TwoHeads(), (torch.zeros(1, 3, 64, 64),), str(path), dynamo=False, opset_version=17,
                      input_names=["images"], output_names=["a", "b"])
    return path


@pytest.mark.parametrize(("tail", "expected"), [
    ("compress:\n  - prune: {ratio: 0.3}\n", "compress[0].prune: needs a torch model, but model.onnx is an ONNX file"),
    ("compress:\n  - distill: {epochs: 1}\n", "compress[0].distill: needs a torch model"),
    ("compress:\n  - quantize: {qat: {epochs: 1}}\n", "compress[0].quantize.qat: needs a torch model"),
    ("input_size: 128\n", "input_size: 128, but"),
])
def test_torch_steps_on_an_onnx_model_are_refused_before_any_stage(
        ultralytics_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], tail: str, expected: str) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(onnx=ultralytics_onnx) + tail)
    code, _, err = run_main(["build", str(recipe), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_onnx_files_that_fit_no_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "r.yaml"
    bad = _two_output_onnx(tmp_path / "two.onnx")
    recipe.write_text(RECIPE.format(onnx=bad))
    code, _, err = run_main(["build", str(recipe), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and f"model.onnx: {bad}: outputs a [1, 3], b [1, 3] fit no layout" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    recipe.write_text(RECIPE.format(onnx=junk))
    code, _, err = run_main(["build", str(recipe), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and f"{junk}: not a valid ONNX model" in err and len(err.strip().splitlines()) == 1, err
