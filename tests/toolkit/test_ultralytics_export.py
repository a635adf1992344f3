"""Export of Ultralytics models: edgevision's FP32 ONNX matches Ultralytics' own ONNX export of the same
weights, and carries Ultralytics' metadata so the same file runs in edgevision's runtime and in
``YOLO("model.onnx")`` with the same detections."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from edgevision.toolkit.models.ultralytics.load import net_from_checkpoint, read_checkpoint
from edgevision.toolkit.models.ultralytics.onnx_meta import ultralytics_metadata, write_metadata
from edgevision.toolkit.stages.export import export_onnx
from tests.toolkit.ultralytics_helpers import IMGSZ, save_ul_checkpoint, ul_model


def _with_confident_anchors(model: torch.nn.Module) -> torch.nn.Module:
    """Random weights score every anchor ~0 (Ultralytics' prior bias) and make every box image-sized; zero the
    class bias so scores spread around 0.5 and shrink the boxes, so the decode/NMS comparison has distinct
    detections to compare."""
    head = model.model[-1]
    for seq in head.cv3:
        seq[-1].bias.data.zero_()
    for seq in head.cv2:  # DFL bins decaying with distance: boxes a few strides wide, not all image-sized
        seq[-1].weight.data.mul_(0.1)
        seq[-1].bias.data.copy_((-0.8 * torch.arange(head.reg_max, dtype=torch.float32)).repeat(4))
    return model


def _export_both(tmp_path: Path, cfg: str, nc: int, kpt: tuple[int, int] | None) -> tuple[Path, Path, Path]:
    from ultralytics import YOLO

    ul = _with_confident_anchors(ul_model(cfg, nc=nc, kpt=kpt, seed=1))
    names = [f"c{i}" for i in range(nc)]
    pt = save_ul_checkpoint(ul, tmp_path / "best.pt", names)
    theirs = Path(YOLO(str(pt)).export(format="onnx", imgsz=IMGSZ, simplify=False, opset=17, verbose=False))
    ck = read_checkpoint(pt)
    ours = tmp_path / "model.onnx"
    export_onnx(net_from_checkpoint(ck), IMGSZ, ours)
    write_metadata(ours, ultralytics_metadata(task=ck.task, class_names=names, imgsz=IMGSZ, strides=ck.strides,
                                              kpt_shape=ck.kpt_shape))
    return pt, theirs, ours


@pytest.mark.parametrize(("cfg", "nc", "kpt"), [("yolov8n.yaml", 3, None), ("yolo11n-pose.yaml", 1, (5, 3))])
def test_fp32_export_matches_ultralytics_export(tmp_path: Path, cfg: str, nc: int, kpt: tuple[int, int] | None
                                                ) -> None:
    _, theirs, ours = _export_both(tmp_path, cfg, nc, kpt)
    a = ort.InferenceSession(str(theirs), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(ours), providers=["CPUExecutionProvider"])
    assert [o.name for o in b.get_outputs()] == [o.name for o in a.get_outputs()] == ["output0"]
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
        ya, yb = a.run(None, {"images": x})[0], b.run(None, {"images": x})[0]
        assert ya.shape == yb.shape == (1, 4 + nc + 3 * (kpt[0] if kpt else 0), 336)
        err = np.abs(ya - yb)
        assert err[:, :4].max() < 1e-3  # box pixels (up to ~IMGSZ): float32 rounding of the same ops
        assert err[:, 4:].max() < 1e-3  # scores, keypoints
    meta = {p.key: p.value for p in __import__("onnx").load(str(ours)).metadata_props}
    want = {p.key for p in __import__("onnx").load(str(theirs)).metadata_props} - {"kpt_names"}
    assert want <= set(meta)  # every key Ultralytics writes
    assert meta["imgsz"] == f"[{IMGSZ}, {IMGSZ}]" and meta["stride"] == "32"


def test_same_onnx_runs_in_edgevision_and_ultralytics(tmp_path: Path) -> None:
    from ultralytics import YOLO

    from edgevision.runtime.onnx_meta import bundle_from_onnx
    from edgevision.runtime.predictor import Predictor

    _, _, ours = _export_both(tmp_path, "yolov8n.yaml", 3, None)
    img = np.random.default_rng(3).integers(0, 255, (IMGSZ, IMGSZ, 3), dtype=np.uint8)  # BGR, no letterbox pad
    x = np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
    best = np.sort(ort.InferenceSession(str(ours)).run(None, {"images": x})[0][0, 4:].max(0))[::-1]
    k = 10 + int(np.argmax(best[10:40] - best[11:41]))  # a threshold in the widest score gap after the 10th
    conf, iou = float(best[k] + best[k + 1]) / 2, 0.45
    pred = Predictor(bundle_from_onnx(ours), conf=conf, iou=iou, max_det=300)
    try:
        ev = pred.predict(img)
    finally:
        pred.close()
    res = YOLO(str(ours), task="detect").predict(img, imgsz=IMGSZ, conf=conf, iou=iou, max_det=300,
                                                 verbose=False)[0]
    assert res.names == {0: "c0", 1: "c1", 2: "c2"}  # read from our metadata
    ux = res.boxes.xyxy.cpu().numpy()
    us, uc = res.boxes.conf.cpu().numpy(), res.boxes.cls.cpu().numpy().astype(int)
    assert len(ev.xyxy) >= 3, "the comparison needs detections"
    order_e, order_u = np.argsort(-ev.scores, kind="stable"), np.argsort(-us, kind="stable")
    assert len(ev.xyxy) == len(ux)
    np.testing.assert_allclose(ev.xyxy[order_e], ux[order_u], atol=1e-2)
    np.testing.assert_allclose(ev.scores[order_e], us[order_u], atol=1e-4)
    np.testing.assert_array_equal(ev.class_ids[order_e], uc[order_u])
