"""`edgevision eval` on a bare .onnx (sidecar from metadata, COCO keypoints for a 17-keypoint pose model) and
the `ultralytics` protocol (multi-label NMS, OKS scaled by 0.53 x box area) against hand-computed AP."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from cli_helpers import run_main
from onnx import TensorProto, helper, numpy_helper
from test_evaluate import gt_file as box_gt_file
from test_evaluate import oracle_bundle
from test_evaluate_pose import AREA, BOX, THRESHOLDS, gt_file, oracle_raw, person_keypoints, pose_oracle_bundle

from edgevision.runtime.bundle import load_bundle
from edgevision.toolkit.data.coco import COCO_SIGMAS, load_coco
from edgevision.toolkit.stages.evaluate import evaluate_bundle


def oks(dx: float, sigmas: np.ndarray, area: float) -> float:
    """pycocotools' OKS for a uniform x shift: mean of exp(-d^2 / (2 area (2 sigma)^2))."""
    return float(np.mean(np.exp(-dx * dx / (2 * area * (2 * sigmas) ** 2))))


def ap(oks_value: float) -> float:
    """One person, one prediction: AP at threshold t is 1 when OKS >= t."""
    assert np.abs(oks_value - THRESHOLDS).min() > 1e-3, "the shift lands on a threshold; pick another"
    return float(np.mean(oks_value >= THRESHOLDS))


def test_multi_label_scores_the_second_class(tmp_path: Path) -> None:
    """The model scores the one ground-truth box (class b) 0.9 as a and 0.6 as b. One label per box
    predicts only 'a': class b's AP is 0. Ultralytics' multi-label NMS also predicts 'b': AP 1."""
    gt = box_gt_file(tmp_path, [(1, [16.0, 20.0, 40.0, 24.0], 2)])  # 128x96 -> 64x64: scale 0.5, pad_y 8
    raw = np.zeros((1, 6, 4), np.float32)
    raw[0, :, 0] = [18.0, 24.0, 20.0, 12.0, 0.9, 0.6]
    bundle = load_bundle(oracle_bundle(tmp_path, 64, raw, 2))
    ds = load_coco(gt, tmp_path / "img")
    assert evaluate_bundle(bundle, ds)["map50_95"] == 0.0
    m = evaluate_bundle(bundle, ds, protocol="ultralytics")
    assert m["map50_95"] == pytest.approx(1.0) and m["detections"] == 2


def test_ultralytics_oks_uses_053_box_area(tmp_path: Path) -> None:
    kp, dx = person_keypoints(), 3.0
    sigmas = np.asarray(COCO_SIGMAS)
    bundle = load_bundle(pose_oracle_bundle(tmp_path, 64, oracle_raw(kp, dx), list(COCO_SIGMAS)))
    ds = load_coco(gt_file(tmp_path, kp), tmp_path / "img")
    coco, ultra = ap(oks(dx, sigmas, AREA)), ap(oks(dx, sigmas, 0.53 * BOX[2] * BOX[3]))
    assert coco != ultra, "pick a shift where the two object scales disagree"
    assert evaluate_bundle(bundle, ds)["kp_map50_95"] == pytest.approx(coco, abs=1e-6)
    m = evaluate_bundle(bundle, ds, protocol="ultralytics")
    assert m["kp_map50_95"] == pytest.approx(ultra, abs=1e-6)
    assert m["map50_95"] == pytest.approx(1.0)  # the box score does not depend on the OKS scale


def bare_pose_onnx(path: Path, raw: np.ndarray, size: int = 64) -> Path:
    """An Ultralytics-like pose export: fixed output, metadata task/names/imgsz/kpt_shape, no kpt_names."""
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(raw.shape))
    const = helper.make_node("Constant", [], ["output0"], value=numpy_helper.from_array(raw.astype(np.float32)))
    model = helper.make_model(helper.make_graph([const], "pose", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    for k, v in {"task": "pose", "names": "{0: 'person'}", "imgsz": f"[{size}, {size}]", "kpt_shape": "[17, 3]",
                 "stride": "32"}.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


def test_eval_cli_takes_a_bare_pose_onnx_and_scores_with_coco_sigmas(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    kp, dx = person_keypoints(), 2.5
    model = bare_pose_onnx(tmp_path / "yolo-pose.onnx", oracle_raw(kp, dx))
    gt = gt_file(tmp_path, kp)
    want = ap(oks(dx, np.asarray(COCO_SIGMAS), AREA))
    uniform = ap(oks(dx, np.full(17, 1 / 17), AREA))
    assert want != uniform, "pick a shift where COCO's and uniform sigmas disagree"
    code, out, err = run_main(["eval", str(model), "--data", str(gt), "--images", str(tmp_path / "img"), "--json"],
                              capsys)
    assert code == 0, err
    m = json.loads(out)
    assert m["map50_95"] == pytest.approx(1.0) and m["kp_map50_95"] == pytest.approx(want, abs=1e-6)
    code, out, err = run_main(["eval", str(model), "--data", str(gt), "--protocol", "ultralytics", "--images",
                              str(tmp_path / "img"), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["kp_map50_95"] == pytest.approx(ap(oks(dx, np.asarray(COCO_SIGMAS), 0.53 * BOX[2] * BOX[3])))


def test_eval_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kp = person_keypoints()
    model = bare_pose_onnx(tmp_path / "m.onnx", oracle_raw(kp, 0))
    gt = gt_file(tmp_path, kp)
    code, _, err = run_main(["eval", str(model), "--data", str(gt)], capsys)
    assert code == 2 and err.strip().endswith("set --images to the image folder") and "Traceback" not in err
    code, _, err = run_main(["eval", str(tmp_path / "nope.onnx"), "--data", str(gt)], capsys)
    assert code == 2 and "nope.onnx" in err


def test_ap_readout_equals_cocoeval_summarize(tmp_path: Path) -> None:
    """coco_map reads AP from COCOeval's precision array (so the per-image cap can change); with the
    default cap it must give exactly what COCOeval.summarize prints, on a messy random case."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from edgevision.toolkit.stages.evaluate import coco_map

    rng = np.random.default_rng(3)
    boxes = [(int(i), [float(v) for v in rng.uniform(0, 60, 2)] + [float(v) for v in rng.uniform(4, 60, 2)],
              int(rng.integers(1, 3))) for i in rng.integers(1, 6, 40)]
    gt = box_gt_file(tmp_path, boxes)
    res = []
    for i, (x, y, w, h), c in boxes:
        for _ in range(3):
            j = rng.normal(0, 4, 4)
            res.append({"image_id": i, "category_id": int(rng.integers(1, 3)) if rng.random() < 0.2 else c,
                        "bbox": [x + j[0], y + j[1], max(1.0, w + j[2]), max(1.0, h + j[3])],
                        "score": float(rng.random())})
    ours = coco_map(gt, res)
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(COCO(str(gt)), COCO(str(gt)).loadRes(res), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    keys = ["map50_95", "map50", "map75", "map_small", "map_medium", "map_large"]
    assert [ours[k] for k in keys] == pytest.approx([max(float(s), 0.0) for s in ev.stats[:6]], abs=1e-12)
    assert 0.1 < ours["map50_95"] < 0.9


def test_pycocotools_and_ultralytics_ap_code_agree_on_the_same_predictions(tmp_path: Path) -> None:
    """What the `ultralytics` protocol leaves to pycocotools: the AP arithmetic. On the same predictions
    (jittered true boxes, second labels on some, false positives) Ultralytics' own matcher + ap_per_class
    and pycocotools agree within 1 pt mAP50-95 (the issue's parity target); measured at 200 images: 0.4658
    vs 0.4669."""
    pytest.importorskip("ultralytics", reason="ultralytics not installed (pip install 'edgevision[ultralytics]')")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import torch
    from ultralytics.engine.validator import BaseValidator
    from ultralytics.utils.metrics import ap_per_class, box_iou

    from edgevision.toolkit.data.synthetic import generate_detection_dataset
    from edgevision.toolkit.stages.evaluate import coco_map

    class Matcher(BaseValidator):
        def __init__(self) -> None:  # only match_predictions is used: it needs the IoU thresholds
            self.iouv = torch.linspace(0.5, 0.95, 10)

    ds = load_coco(generate_detection_dataset(tmp_path, num_train=1, num_val=60, image_size=128, seed=1).val_json)
    rng = np.random.default_rng(0)
    results, tps, confs, pcls, tcls = [], [], [], [], []
    for rec in ds.records:
        preds, scores, cls = [], [], []
        for b, c in zip(rec.boxes.astype(np.float64), rec.labels.tolist(), strict=True):
            if rng.random() < 0.9:
                wh = b[2:] - b[:2]
                preds.append(b + rng.normal(0, 0.08, 4) * np.r_[wh, wh])
                scores.append(rng.uniform(0.3, 1))
                cls.append(c)
                if rng.random() < 0.3:
                    preds.append(preds[-1].copy())
                    scores.append(rng.uniform(0.05, 0.5))
                    cls.append(int(rng.integers(0, 6)))
        for _ in range(int(rng.integers(0, 4))):
            x, y = rng.uniform(0, rec.width - 20, 2)
            w, h = rng.uniform(8, 60, 2)
            preds.append(np.array([x, y, x + w, y + h]))
            scores.append(rng.uniform(0, 0.6))
            cls.append(int(rng.integers(0, 6)))
        order = np.argsort(-np.asarray(scores))
        p = np.asarray(preds).reshape(-1, 4)[order]
        s, c = np.asarray(scores)[order], np.asarray(cls, np.int64)[order]
        results += [{"image_id": rec.image_id, "category_id": ds.cat_ids[k], "bbox": [x1, y1, x2 - x1, y2 - y1],
                     "score": sc} for (x1, y1, x2, y2), sc, k in zip(p.tolist(), s.tolist(), c.tolist(), strict=True)]
        iou = box_iou(torch.tensor(rec.boxes, dtype=torch.float64), torch.tensor(p))
        tps.append(Matcher().match_predictions(torch.tensor(c), torch.tensor(rec.labels), iou).numpy())
        confs.append(s)
        pcls.append(c)
        tcls.append(rec.labels)
    ap = ap_per_class(np.concatenate(tps), np.concatenate(confs), np.concatenate(pcls), np.concatenate(tcls))[5]
    ours = coco_map(ds.ann_file, results, max_dets=300)
    assert 0.2 < ours["map50_95"] < 0.8
    assert ours["map50_95"] == pytest.approx(float(ap.mean()), abs=0.01)
    assert ours["map50"] == pytest.approx(float(ap[:, 0].mean()), abs=0.01)
