"""Keypoint evaluation: pycocotools OKS AP against hand-computed OKS, and the whole runtime path (sidecar
keypoints + sigmas, yolo pose decode, letterbox unmap) with an oracle pose model."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevision.runtime.bundle import SIDECAR_NAME, InputSpec, KeypointSpec, OutputSpec, Sidecar, load_bundle
from edgevision.runtime.errors import UserError
from edgevision.runtime.results import Detections
from edgevision.toolkit.data.coco import COCO_KEYPOINT_NAMES, COCO_SIGMAS, COCO_SKELETON, load_coco
from edgevision.toolkit.stages.evaluate import coco_map, evaluate_bundle, poses_to_coco

AREA = 900.0
BOX = [10.0, 6.0, 40.0, 50.0]  # x, y, w, h
THRESHOLDS = np.linspace(0.5, 0.95, 10)


def person_keypoints() -> np.ndarray:
    """17 labelled keypoints inside BOX (two hidden: v = 1, still scored by OKS)."""
    rng = np.random.default_rng(0)
    kp = np.zeros((17, 3), np.float32)
    kp[:, 0] = rng.uniform(BOX[0] + 2, BOX[0] + BOX[2] - 2, 17)
    kp[:, 1] = rng.uniform(BOX[1] + 2, BOX[1] + BOX[3] - 2, 17)
    kp[:, 2] = 2
    kp[[3, 4], 2] = 1
    return kp


def gt_file(tmp_path: Path, kp: np.ndarray, size: int = 64) -> Path:
    (tmp_path / "img").mkdir(exist_ok=True)
    cv2.imwrite(str(tmp_path / "img" / "1.png"), np.full((size, size, 3), 90, np.uint8))
    data = {
        "images": [{"id": 1, "file_name": "1.png", "width": size, "height": size}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": BOX, "area": AREA, "iscrowd": 0,
                         "keypoints": kp.reshape(-1).tolist(), "num_keypoints": 17}],
        "categories": [{"id": 1, "name": "person", "keypoints": COCO_KEYPOINT_NAMES,
                        "skeleton": [[a + 1, b + 1] for a, b in COCO_SKELETON]}],
    }
    p = tmp_path / "gt.json"
    p.write_text(json.dumps(data))
    return p


def hand_oks(dx: float, dy: float, sigmas: np.ndarray) -> float:
    """OKS = mean over labelled keypoints of exp(-d^2 / (2 s^2 k^2)), s^2 = area, k = 2 sigma (COCO)."""
    return float(np.mean(np.exp(-(dx * dx + dy * dy) / (2 * AREA * (2 * sigmas) ** 2))))


def pose_dets(kp: np.ndarray, dx: float = 0.0, dy: float = 0.0) -> Detections:
    moved = kp.copy()
    moved[:, 0] += dx
    moved[:, 1] += dy
    moved[:, 2] = 0.9
    x, y, w, h = BOX
    return Detections(np.array([[x, y, x + w, y + h]], np.float32), np.array([0.8], np.float32),
                      np.zeros(1, np.int64), moved[None])


def test_perfect_prediction_scores_one(tmp_path: Path) -> None:
    kp = person_keypoints()
    m = coco_map(gt_file(tmp_path, kp), poses_to_coco(1, pose_dets(kp), [1]), iou_type="keypoints",
                 kpt_sigmas=COCO_SIGMAS)
    assert m["kp_map50_95"] == pytest.approx(1.0) and m["kp_map50"] == pytest.approx(1.0)


@pytest.mark.parametrize("dx, dy", [(1.5, 0.0), (2.0, 1.0), (3.0, -2.0), (6.0, 0.0)])
def test_shifted_prediction_gives_hand_computed_oks(tmp_path: Path, dx: float, dy: float) -> None:
    kp = person_keypoints()
    oks = hand_oks(dx, dy, np.array(COCO_SIGMAS))
    assert np.abs(oks - THRESHOLDS).min() > 1e-3, "test shift lands on a threshold; pick another"
    m = coco_map(gt_file(tmp_path, kp), poses_to_coco(1, pose_dets(kp, dx, dy), [1]), iou_type="keypoints",
                 kpt_sigmas=COCO_SIGMAS)
    # one person, one prediction: AP at threshold t is 1 when OKS >= t, else 0
    assert m["kp_map50_95"] == pytest.approx(float(np.mean(oks >= THRESHOLDS)))
    assert m["kp_map50"] == pytest.approx(1.0 if oks >= 0.5 else 0.0)


def test_sigmas_come_from_the_caller(tmp_path: Path) -> None:
    kp = person_keypoints()
    wide = np.full(17, 0.2)
    dx = 8.0
    gt = gt_file(tmp_path, kp)
    res = poses_to_coco(1, pose_dets(kp, dx), [1])
    coco = coco_map(gt, res, iou_type="keypoints", kpt_sigmas=COCO_SIGMAS)["kp_map50_95"]
    loose = coco_map(gt, res, iou_type="keypoints", kpt_sigmas=wide.tolist())["kp_map50_95"]
    assert coco == pytest.approx(float(np.mean(hand_oks(dx, 0, np.array(COCO_SIGMAS)) >= THRESHOLDS)))
    assert loose == pytest.approx(float(np.mean(hand_oks(dx, 0, wide) >= THRESHOLDS))) and loose > coco


def pose_oracle_bundle(tmp_path: Path, size: int, raw: np.ndarray, sigmas: list[float]) -> Path:
    """A pose bundle whose ONNX model ignores its input and returns a fixed [1, 4 + 1 + 51, N] tensor."""
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(raw.shape))
    const = helper.make_node("Constant", [], ["output0"], value=numpy_helper.from_array(raw.astype(np.float32)))
    model = helper.make_model(helper.make_graph([const], "oracle", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    d = tmp_path / "bundle"
    d.mkdir()
    onnx.save(model, str(d / "model.onnx"))
    side = Sidecar(name="oracle", task="pose", class_names=["person"],
                   keypoints=KeypointSpec(names=COCO_KEYPOINT_NAMES, skeleton=COCO_SKELETON, sigmas=sigmas),
                   input=InputSpec(shape=[1, 3, size, size]), output=OutputSpec(num_classes=1, num_keypoints=17))
    (d / SIDECAR_NAME).write_text(side.model_dump_json())
    return d


def oracle_raw(kp: np.ndarray, dx: float) -> np.ndarray:
    """yolo pose layout for one anchor: cx, cy, w, h, score, then x, y, conf per keypoint."""
    x, y, w, h = BOX
    moved = kp.copy()
    moved[:, 0] += dx
    moved[:, 2] = 0.95
    col = np.concatenate([[x + w / 2, y + h / 2, w, h, 0.9], moved.reshape(-1)])
    return col.reshape(1, -1, 1)


@pytest.mark.parametrize("dx", [0.0, 2.5])
def test_oracle_pose_model_through_the_runtime(tmp_path: Path, dx: float) -> None:
    kp = person_keypoints()
    sigmas = np.full(17, 0.05)  # the sidecar's sigmas, not COCO's, must be the ones used
    bundle = load_bundle(pose_oracle_bundle(tmp_path, 64, oracle_raw(kp, dx), sigmas.tolist()))
    ds = load_coco(gt_file(tmp_path, kp), tmp_path / "img")
    m = evaluate_bundle(bundle, ds, conf=0.001)
    assert m["map50_95"] == pytest.approx(1.0)  # person box
    assert m["kp_map50_95"] == pytest.approx(float(np.mean(hand_oks(dx, 0, sigmas) >= THRESHOLDS)), abs=1e-6)


def test_keypoint_count_mismatch_is_a_user_error(tmp_path: Path) -> None:
    kp = person_keypoints()
    bundle = load_bundle(pose_oracle_bundle(tmp_path, 64, oracle_raw(kp, 0), list(COCO_SIGMAS)))
    raw = json.loads(gt_file(tmp_path, kp).read_text())
    raw["categories"][0]["keypoints"] = COCO_KEYPOINT_NAMES[:5]
    raw["categories"][0]["skeleton"] = []
    raw["annotations"][0]["keypoints"] = kp[:5].reshape(-1).tolist()
    (tmp_path / "five.json").write_text(json.dumps(raw))
    with pytest.raises(UserError, match=r"predicts 17 keypoints but .*five\.json has 5"):
        evaluate_bundle(bundle, load_coco(tmp_path / "five.json", tmp_path / "img"))
