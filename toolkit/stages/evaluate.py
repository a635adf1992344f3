"""Evaluate stage: COCO mAP of a bundle, measured through the runtime's own backend and postprocessing.

The metric comes from pycocotools' COCOeval (the reference implementation), fed with the detections the
runtime's ``Predictor`` returns in source-image pixels, so the report's number is the device's number.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgevision.runtime.bundle import Bundle
from edgevision.runtime.errors import UserError
from edgevision.runtime.predictor import Predictor
from edgevision.runtime.results import Detections

from ..data.coco import CocoDataset


def detections_to_coco(image_id: int, dets: Detections, cat_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Detections (xyxy, contiguous class ids) -> COCO result dicts (xywh, category ids)."""
    out = []
    for (x1, y1, x2, y2), s, c in zip(dets.xyxy.tolist(), dets.scores.tolist(), dets.class_ids.tolist(), strict=True):
        out.append({"image_id": int(image_id), "category_id": int(cat_ids[c]),
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(s)})
    return out


def coco_map(ann_file: Path, results: list[dict[str, Any]], image_ids: Iterable[int] | None = None,
             iou_type: str = "bbox") -> dict[str, float]:
    """mAP50-95 / mAP50 with pycocotools for ``results`` against the ground truth in ``ann_file``."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        if not results:
            return {"map50_95": 0.0, "map50": 0.0}
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iou_type)
        if image_ids is not None:
            ev.params.imgIds = sorted(set(image_ids))
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [max(float(s), 0.0) for s in ev.stats]
    return {"map50_95": stats[0], "map50": stats[1], "map75": stats[2],
            "map_small": stats[3], "map_medium": stats[4], "map_large": stats[5]}


def evaluate_bundle(
    bundle: Bundle,
    dataset: CocoDataset,
    *,
    conf: float = 0.001,
    iou: float = 0.6,
    max_det: int = 100,
    limit: int | None = None,
    backend_kind: str = "onnxruntime",
) -> dict[str, float]:
    """Run every val image through the bundle on the runtime and score it with COCOeval."""
    if len(bundle.sidecar.class_names) != len(dataset.class_names):
        raise UserError(
            f"{bundle.root}: model has {len(bundle.sidecar.class_names)} classes but {dataset.ann_file} has "
            f"{len(dataset.class_names)}"
        )
    predictor = Predictor(bundle, conf=conf, iou=iou, max_det=max_det, backend_kind=backend_kind)
    records = dataset.records[:limit] if limit else dataset.records
    results: list[dict[str, Any]] = []
    try:
        for rec in records:
            image = cv2.imread(str(rec.path), cv2.IMREAD_COLOR)
            if image is None:
                raise UserError(f"{rec.path}: cannot read image")
            dets = predictor.predict(image)
            results.extend(detections_to_coco(rec.image_id, dets, dataset.cat_ids))
    finally:
        predictor.close()
    metrics = coco_map(dataset.ann_file, results, image_ids=[r.image_id for r in records])
    metrics["images"] = float(len(records))
    metrics["detections"] = float(len(results))
    return {k: float(np.round(v, 6)) for k, v in metrics.items()}
