"""Evaluation: our COCO plumbing against hand-computed mAP, and the whole runtime path with an oracle model."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevision.runtime.bundle import SIDECAR_NAME, InputSpec, OutputSpec, Sidecar, load_bundle
from edgevision.runtime.results import Detections
from edgevision.toolkit.data.coco import load_coco
from edgevision.toolkit.stages.evaluate import coco_map, detections_to_coco, evaluate_bundle


def gt_file(tmp_path: Path, boxes: list[tuple[int, list[float], int]], size: tuple[int, int] = (128, 96)) -> Path:
    """COCO json with one image per distinct image id; boxes are (image_id, xywh, category_id)."""
    w, h = size
    ids = sorted({b[0] for b in boxes})
    (tmp_path / "img").mkdir(exist_ok=True)
    for i in ids:
        cv2.imwrite(str(tmp_path / "img" / f"{i}.png"), np.full((h, w, 3), 40, np.uint8))
    data = {
        "images": [{"id": i, "file_name": f"{i}.png", "width": w, "height": h} for i in ids],
        "annotations": [{"id": k + 1, "image_id": i, "bbox": b, "category_id": c, "area": b[2] * b[3], "iscrowd": 0}
                        for k, (i, b, c) in enumerate(boxes)],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    p = tmp_path / "gt.json"
    p.write_text(json.dumps(data))
    return p


def dets(xyxy: list[list[float]], classes: list[int], scores: list[float] | None = None) -> Detections:
    return Detections(np.array(xyxy, np.float32), np.array(scores or [0.9] * len(xyxy), np.float32),
                      np.array(classes, np.int64))


def test_perfect_predictions_score_one(tmp_path: Path) -> None:
    ann = gt_file(tmp_path, [(1, [10, 10, 20, 30], 1), (1, [50, 40, 30, 30], 2)])
    res = detections_to_coco(1, dets([[10, 10, 30, 40], [50, 40, 80, 70]], [0, 1]), [1, 2])
    m = coco_map(ann, res)
    assert m["map50_95"] == pytest.approx(1.0) and m["map50"] == pytest.approx(1.0)


def test_partial_overlap_hand_computed(tmp_path: Path) -> None:
    # IoU 0.62 passes thresholds 0.50, 0.55, 0.60 of the ten -> AP50-95 = 3/10, AP50 = 1.
    ann = gt_file(tmp_path, [(1, [0, 0, 100, 100], 1)], size=(128, 128))
    m = coco_map(ann, detections_to_coco(1, dets([[0, 0, 100, 62]], [0]), [1, 2]))
    assert m["map50"] == pytest.approx(1.0)
    assert m["map50_95"] == pytest.approx(0.3)


def test_wrong_class_and_no_detections_score_zero(tmp_path: Path) -> None:
    ann = gt_file(tmp_path, [(1, [0, 0, 50, 50], 1)])
    assert coco_map(ann, detections_to_coco(1, dets([[0, 0, 50, 50]], [1]), [1, 2]))["map50"] == 0.0
    assert coco_map(ann, [])["map50_95"] == 0.0


def oracle_bundle(tmp_path: Path, input_size: int, outputs: np.ndarray, num_classes: int) -> Path:
    """A bundle whose ONNX model ignores its input and returns a fixed yolo-layout tensor."""
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, input_size, input_size])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(outputs.shape))
    const = helper.make_node("Constant", [], ["output0"], value=numpy_helper.from_array(outputs.astype(np.float32)))
    model = helper.make_model(helper.make_graph([const], "oracle", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    d = tmp_path / "bundle"
    d.mkdir()
    onnx.save(model, str(d / "model.onnx"))
    side = Sidecar(name="oracle", task="detect", class_names=["a", "b"][:num_classes],
                   input=InputSpec(shape=[1, 3, input_size, input_size]),
                   output=OutputSpec(num_classes=num_classes))
    (d / SIDECAR_NAME).write_text(side.model_dump_json())
    return d


def test_oracle_model_through_the_runtime_scores_one(tmp_path: Path) -> None:
    # 128x96 source letterboxed into 64x64: scale 0.5, pad_y 8. GT in source pixels (xywh):
    gt = [(1, [16.0, 20.0, 40.0, 24.0], 1), (1, [70.0, 50.0, 30.0, 30.0], 2)]
    ann = gt_file(tmp_path, gt)
    raw = np.zeros((1, 4 + 2, 10), np.float32)
    for j, (_, (x, y, w, h), c) in enumerate(gt):
        cx, cy = (x + w / 2) * 0.5, (y + h / 2) * 0.5 + 8  # to model-input pixels
        raw[0, :4, j] = [cx, cy, w * 0.5, h * 0.5]
        raw[0, 4 + c - 1, j] = 0.95
    bundle = load_bundle(oracle_bundle(tmp_path, 64, raw, 2))
    m = evaluate_bundle(bundle, load_coco(ann, tmp_path / "img"))
    assert m["map50_95"] == pytest.approx(1.0) and m["detections"] == 2
