"""A bundle whose graph runs NMS (output layout ``nms``) through the predictor and the pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from stream_fixtures import make_bundle

from edgevision.runtime.bundle import load_bundle
from edgevision.runtime.errors import UserError
from edgevision.runtime.pipeline import Pipeline
from edgevision.runtime.predictor import Predictor

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("cv2")
pytestmark = pytest.mark.toolkit  # the NMS graph is the toolkit's (Python >= 3.10)
_nms = pytest.importorskip("edgevision.toolkit.nms_graph", reason="needs the toolkit (Python >= 3.10)",
                           exc_type=ImportError)
NmsSettings, append_nms, nms_output_names = _nms.NmsSettings, _nms.append_nms, _nms.nms_output_names

SOURCE = "synthetic://?width=64&height=48&frames=6&pool=2"


def nms_bundle(yolo: Path, root: Path) -> Path:
    """The same tiny model with NMS appended and the sidecar saying so."""
    shutil.copytree(yolo, root)
    model = append_nms(onnx.load(str(root / "model.onnx")), num_classes=3, num_keypoints=0,
                       settings=NmsSettings(conf=0.001, iou=0.45, max_det=100))
    onnx.save(model, str(root / "model.onnx"))
    side = json.loads((root / "edgevision.json").read_text())
    side["output"].update(layout="nms", names=nms_output_names(0))
    (root / "edgevision.json").write_text(json.dumps(side))
    return root


def detections(bundle: Path) -> list[tuple[list[float], float, int]]:
    out = []
    for det in Pipeline(bundle, SOURCE):
        assert len(det) == 1
        out.append((det.xyxy[0].round(3).tolist(), round(float(det.scores[0]), 5), int(det.class_ids[0])))
    return out


def test_nms_bundle_gives_the_yolo_bundles_detections(tmp_path: Path) -> None:
    yolo = make_bundle(tmp_path / "yolo")
    nms = nms_bundle(yolo, tmp_path / "nms")
    want = detections(yolo)
    assert len(want) == 6 and want[0][2] == 1  # the tiny head: one class-1 box per frame
    assert detections(nms) == want
    pred = Predictor(load_bundle(nms))
    raw = pred.infer(np.zeros((1, 3, 32, 32), np.float32))
    assert isinstance(raw, dict) and int(raw["num_dets"][0, 0]) == 1
    assert len(Predictor(load_bundle(nms), conf=0.95).predict(np.zeros((48, 64, 3), np.uint8))) == 0  # 0.9 < 0.95


def test_nms_sidecar_without_its_outputs_is_a_user_error(tmp_path: Path) -> None:
    bad = nms_bundle(make_bundle(tmp_path / "yolo"), tmp_path / "nms")
    side = json.loads((bad / "edgevision.json").read_text())
    side["output"]["names"] = ["output0"]
    (bad / "edgevision.json").write_text(json.dumps(side))
    with pytest.raises(UserError, match="layout 'nms' needs the outputs"):
        Predictor(load_bundle(bad))
