"""Evaluate stage: COCO mAP of a bundle, measured through the runtime's own backend and postprocessing.

The metric comes from pycocotools' COCOeval (the reference implementation), fed with the detections the
runtime's ``Predictor`` returns in source-image pixels, so the report's number is the device's number.
Pose bundles are scored twice on the same predictions: the person boxes with ``iouType='bbox'``
(``map50_95``, ``map50``, ...) and the keypoints with ``iouType='keypoints'`` (OKS; ``kp_map50_95``,
``kp_map50``, ``kp_map75``, ...), with ``params.kpt_oks_sigmas`` set from the sidecar's sigmas so that a
non-COCO keypoint set is scored with its own sigmas.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgevision.runtime.backends import open_backend
from edgevision.runtime.bundle import Bundle
from edgevision.runtime.errors import UserError
from edgevision.runtime.predictor import Predictor
from edgevision.runtime.results import Detections

from ..data.coco import CocoDataset, keypoint_sigmas


def detections_to_coco(image_id: int, dets: Detections, cat_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Detections (xyxy, contiguous class ids) -> COCO result dicts (xywh, category ids)."""
    out = []
    for (x1, y1, x2, y2), s, c in zip(dets.xyxy.tolist(), dets.scores.tolist(), dets.class_ids.tolist(), strict=True):
        out.append({"image_id": int(image_id), "category_id": int(cat_ids[c]),
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(s)})
    return out


def poses_to_coco(image_id: int, dets: Detections, cat_ids: Sequence[int]) -> list[dict[str, Any]]:
    """:func:`detections_to_coco` plus ``keypoints`` (flat x, y, confidence per keypoint)."""
    out = detections_to_coco(image_id, dets, cat_ids)
    if dets.keypoints is not None:
        for res, kp in zip(out, dets.keypoints.reshape(len(dets), -1 if len(dets) else 0).tolist(), strict=True):
            res["keypoints"] = [float(v) for v in kp]
    return out


def coco_map(ann_file: Path, results: list[dict[str, Any]], image_ids: Iterable[int] | None = None,
             iou_type: str = "bbox", kpt_sigmas: Sequence[float] | None = None) -> dict[str, float]:
    """mAP50-95 / mAP50 with pycocotools for ``results`` against the ground truth in ``ann_file``.

    ``iou_type='keypoints'`` scores OKS (then ``kpt_sigmas`` replaces pycocotools' COCO sigmas; their
    count must match the keypoints) and returns the keys with a ``kp_`` prefix; it has no small-area
    range, so ``kp_map_small`` is absent."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    kp = iou_type == "keypoints"
    prefix = "kp_" if kp else ""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        if not results:
            return {f"{prefix}map50_95": 0.0, f"{prefix}map50": 0.0}
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iou_type)
        if image_ids is not None:
            ev.params.imgIds = sorted(set(image_ids))
        if kp and kpt_sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(kpt_sigmas, dtype=np.float64)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [max(float(s), 0.0) for s in ev.stats]
    if kp:  # keypoint stats: AP, AP50, AP75, AP medium, AP large, AR ...
        return {"kp_map50_95": stats[0], "kp_map50": stats[1], "kp_map75": stats[2],
                "kp_map_medium": stats[3], "kp_map_large": stats[4]}
    return {"map50_95": stats[0], "map50": stats[1], "map75": stats[2],
            "map_small": stats[3], "map_medium": stats[4], "map_large": stats[5]}


def _pose_sigmas(bundle: Bundle, dataset: CocoDataset) -> list[float]:
    """The sidecar's OKS sigmas, after checking its keypoints against the dataset's."""
    side = bundle.sidecar
    k = side.output.num_keypoints
    if k != dataset.num_keypoints:
        raise UserError(f"{bundle.root}: model predicts {k} keypoints but {dataset.ann_file} has "
                        f"{dataset.num_keypoints}")
    sigmas = list(side.keypoints.sigmas) if side.keypoints is not None else []
    if not sigmas:
        sigmas = keypoint_sigmas(side.keypoints.names if side.keypoints else dataset.keypoint_names)
    if len(sigmas) != k:
        raise UserError(f"{bundle.root}: sidecar keypoints.sigmas has {len(sigmas)} values for {k} keypoints")
    return sigmas


def evaluate_bundle(
    bundle: Bundle,
    dataset: CocoDataset,
    *,
    conf: float = 0.001,
    iou: float = 0.6,
    max_det: int = 100,
    limit: int | None = None,
    backend_kind: str = "onnxruntime",
    backend_options: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Run every val image through the bundle on the runtime and score it with COCOeval (box mAP, and
    keypoint OKS mAP as ``kp_*`` for a pose bundle). ``backend_options`` go to ``open_backend``."""
    if len(bundle.sidecar.class_names) != len(dataset.class_names):
        raise UserError(
            f"{bundle.root}: model has {len(bundle.sidecar.class_names)} classes but {dataset.ann_file} has "
            f"{len(dataset.class_names)}"
        )
    pose = bundle.sidecar.task == "pose"
    sigmas = _pose_sigmas(bundle, dataset) if pose else None
    to_coco = poses_to_coco if pose else detections_to_coco
    backend = open_backend(bundle.model_path, kind=backend_kind, **(backend_options or {}))
    predictor = Predictor(bundle, backend, conf=conf, iou=iou, max_det=max_det)
    records = dataset.records[:limit] if limit else dataset.records
    results: list[dict[str, Any]] = []
    try:
        for rec in records:
            image = cv2.imread(str(rec.path), cv2.IMREAD_COLOR)
            if image is None:
                raise UserError(f"{rec.path}: cannot read image")
            dets = predictor.predict(image)
            results.extend(to_coco(rec.image_id, dets, dataset.cat_ids))
    finally:
        predictor.close()
    ids = [r.image_id for r in records]
    metrics = coco_map(dataset.ann_file, results, image_ids=ids)
    if pose:
        metrics.update(coco_map(dataset.ann_file, results, image_ids=ids, iou_type="keypoints", kpt_sigmas=sigmas))
    metrics["images"] = float(len(records))
    metrics["detections"] = float(len(results))
    return {k: float(np.round(v, 6)) for k, v in metrics.items()}
