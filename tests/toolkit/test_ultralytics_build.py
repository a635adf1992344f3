"""`edgevision build` on an Ultralytics checkpoint: prune -> INT8 + FP16, and the FP32 bundle carries
Ultralytics' ONNX metadata (random weights: the test checks the chain and the artifacts, not accuracy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("ultralytics", reason="Ultralytics is not installed (pip install 'edgevision[ultralytics]')")

from ultralytics_helpers import save_ul_checkpoint, ul_model

from edgevision.toolkit.build import build
from edgevision.toolkit.data.synthetic import generate_detection_dataset

RECIPE = """
name: ul-chain
model: {ultralytics: best.pt}
input_size: 96
dataset: {kind: synthetic, seed: 1, num_train: 32, num_val: 8, image_size: 96, max_objects: 3}
bench: {warmup: 1, iters: 2, backends: [onnxruntime-cpu]}
compress:
  - prune: {ratio: 0.3, round_to: 8}
  - quantize: {method: minmax, calib_images: 4, fp16: true}
"""


@pytest.mark.slow
def test_an_ultralytics_checkpoint_goes_through_prune_int8_fp16_and_export(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    probe = generate_detection_dataset(tmp_path / "probe", num_train=1, num_val=1, image_size=64, seed=0,
                                       max_objects=1)
    names = [c["name"] for c in json.loads(probe.train_json.read_text())["categories"]]
    save_ul_checkpoint(ul_model("yolov8n.yaml", nc=len(names)), tmp_path / "best.pt", names, imgsz=96)
    (tmp_path / "r.yaml").write_text(RECIPE)
    v = build(tmp_path / "r.yaml", tmp_path / "out", log=lambda m: None).manifest["variants"]
    assert {k: r["precision"] for k, r in v.items()} == {"fp32": "fp32", "pruned": "fp32", "int8": "int8",
                                                         "fp16": "fp16"}
    assert v["fp32"]["macs"] / v["pruned"]["macs"] > 1.5
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "out" / "fp32" / "model.onnx")).metadata_props}
    assert meta["task"] == "detect" and meta["imgsz"] == "[96, 96]" and "'circle'" in meta["names"]
