"""Evaluate stage: COCO mAP of a bundle, measured through the runtime's own backend and postprocessing.

The metric comes from pycocotools' COCOeval (the reference implementation), fed with the detections the
runtime's ``Predictor`` returns in source-image pixels, so the report's number is the device's number.
Pose bundles are scored twice on the same predictions: the person boxes with ``iouType='bbox'``
(``map50_95``, ``map50``, ...) and the keypoints with ``iouType='keypoints'`` (OKS; ``kp_map50_95``,
``kp_map50``, ``kp_map75``, ...), with ``params.kpt_oks_sigmas`` set from the sidecar's sigmas so that a
non-COCO keypoint set is scored with its own sigmas.

Two protocols (:data:`PROTOCOLS`), both scored by pycocotools on the same model run through the runtime:

- ``coco`` (the default): pycocotools as is. One label per box (each anchor's best class), OKS scaled by the
  annotation's ``area`` (COCO's segmentation area; the synthetic pose set writes the silhouette area).
- ``ultralytics``: what ``yolo val`` does, so its numbers compare like with like. Multi-label NMS (every
  class above ``conf`` is a candidate: one box may score for several classes, which lifts recall on
  confusable classes), NMS IoU 0.7, 300 detections per image (pycocotools' per-image cap raised to match),
  and OKS scaled by 0.53 x the ground-truth box area (Ultralytics' ``kpt_iou`` with xtcocotools' factor)
  instead of the annotation's area. Issue 15 measured what the OKS scale alone does: on one keypoint set the
  same predictions scored 0.016 one way and 0.119 the other.
  The AP arithmetic stays pycocotools': Ultralytics' own (score-ordered matching, ``ap_per_class``'s
  recall grid, no crowd regions, a keypoint-less person counted as a miss where pycocotools ignores it)
  gives nearly the same numbers on the same predictions: 0.4669 vs 0.4658 mAP50-95 (0.8544 vs 0.8509
  mAP50) on 1263 predictions over 200 synthetic val images (jittered true boxes, second labels, false
  positives; ``test_evaluate_protocols.py`` checks it within 1 pt at 60 images).
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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
from .eval_curves import pr_curves, write_curves


@dataclass(frozen=True)
class EvalProtocol:
    """Prediction and scoring conventions of one evaluation protocol (see the module docstring)."""

    iou: float  # NMS IoU (default; callers may override)
    max_det: int  # detections per image (default; callers may override)
    multi_label: bool  # every class above conf is an NMS candidate
    oks_box_area: float | None  # OKS object scale = this x GT box area; None: the annotation's area


PROTOCOLS: dict[str, EvalProtocol] = {
    "coco": EvalProtocol(iou=0.6, max_det=100, multi_label=False, oks_box_area=None),
    "ultralytics": EvalProtocol(iou=0.7, max_det=300, multi_label=True, oks_box_area=0.53),
}


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
             iou_type: str = "bbox", kpt_sigmas: Sequence[float] | None = None,
             max_dets: int | None = None, curves: dict[str, Any] | None = None) -> dict[str, float]:
    """mAP50-95 / mAP50 with pycocotools for ``results`` against the ground truth in ``ann_file``.

    ``iou_type='keypoints'`` scores OKS (then ``kpt_sigmas`` replaces pycocotools' COCO sigmas; their
    count must match the keypoints) and returns the keys with a ``kp_`` prefix; it has no small-area
    range, so ``kp_map_small`` is absent. ``max_dets`` replaces pycocotools' per-image cap on scored
    detections (100 for boxes, 20 for keypoints; per class). With ``curves`` (a dict), per-class AP and PR
    curves are stored in it under ``iou_type`` (:func:`~.eval_curves.pr_curves`)."""
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
        if max_dets is not None:
            ev.params.maxDets = [*ev.params.maxDets[:-1], int(max_dets)]
        ev.evaluate()
        ev.accumulate()
    if curves is not None:
        curves[iou_type] = pr_curves(ev)
    # COCOeval.summarize's AP numbers, read at the last maxDets entry (summarize itself insists on 100 / 20)
    prec = ev.eval["precision"][..., -1]  # [IoU thresholds, recall points, classes, area ranges]
    thr = list(np.round(ev.params.iouThrs, 2))

    def ap(iou_thr: float | None = None, area: str = "all") -> float:
        p = prec[:, :, :, ev.params.areaRngLbl.index(area)]
        p = p if iou_thr is None else p[thr.index(iou_thr)]
        p = p[p > -1]
        return float(p.mean()) if p.size else 0.0

    areas = ("medium", "large") if kp else ("small", "medium", "large")
    out = {"map50_95": ap(), "map50": ap(0.5), "map75": ap(0.75), **{f"map_{a}": ap(area=a) for a in areas}}
    return {prefix + k: v for k, v in out.items()}


def box_area_gt(ann_file: Path, factor: float, out: Path) -> Path:
    """A copy of the COCO json ``ann_file`` at ``out`` whose annotations' ``area`` is ``factor`` x their box
    area: pycocotools' OKS then uses Ultralytics' object scale (``kpt_iou(area=0.53 * w * h)``)."""
    data = json.loads(Path(ann_file).read_text(encoding="utf-8"))
    for ann in data["annotations"]:
        ann["area"] = factor * float(ann["bbox"][2]) * float(ann["bbox"][3])
    out.write_text(json.dumps(data), encoding="utf-8")
    return out


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
    iou: float | None = None,
    max_det: int | None = None,
    limit: int | None = None,
    backend_kind: str = "onnxruntime",
    backend_options: dict[str, Any] | None = None,
    protocol: str = "coco",
    curves_dir: Path | None = None,
) -> dict[str, float]:
    """Run every val image through the bundle on the runtime and score it with COCOeval (box mAP, and
    keypoint OKS mAP as ``kp_*`` for a pose bundle). ``backend_options`` go to ``open_backend``;
    ``protocol`` picks the conventions (:data:`PROTOCOLS`); ``iou``/``max_det`` default to the protocol's.
    With ``curves_dir``, per-class AP and PR curves go to ``curves_dir/pr_curves.json`` (``eval_curves``)."""
    if protocol not in PROTOCOLS:
        raise UserError(f"eval protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    proto = PROTOCOLS[protocol]
    iou = proto.iou if iou is None else iou
    max_det = proto.max_det if max_det is None else max_det
    if proto.multi_label and bundle.sidecar.output.layout != "yolo":
        raise UserError(f"{bundle.root}: protocol {protocol!r} scores multi-label NMS, which needs the raw 'yolo' "
                        f"output; this model ran NMS in its graph (layout {bundle.sidecar.output.layout!r})")
    if len(bundle.sidecar.class_names) != len(dataset.class_names):
        raise UserError(
            f"{bundle.root}: model has {len(bundle.sidecar.class_names)} classes but {dataset.ann_file} has "
            f"{len(dataset.class_names)}"
        )
    pose = bundle.sidecar.task == "pose"
    sigmas = _pose_sigmas(bundle, dataset) if pose else None
    to_coco = poses_to_coco if pose else detections_to_coco
    backend = open_backend(bundle.model_path, kind=backend_kind, **(backend_options or {}))
    predictor = Predictor(bundle, backend, conf=conf, iou=iou, max_det=max_det, multi_label=proto.multi_label)
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
    cap = max_det if protocol != "coco" else None
    curves: dict[str, Any] = {}
    metrics = coco_map(dataset.ann_file, results, image_ids=ids, max_dets=cap, curves=curves)
    if pose:
        with tempfile.TemporaryDirectory(prefix="edgevision-oks-") as tmp:
            gt = dataset.ann_file if proto.oks_box_area is None else \
                box_area_gt(dataset.ann_file, proto.oks_box_area, Path(tmp) / "gt.json")
            metrics.update(coco_map(gt, results, image_ids=ids, iou_type="keypoints", kpt_sigmas=sigmas,
                                    max_dets=cap, curves=curves))
    if curves_dir is not None and curves:
        write_curves(curves_dir, curves)
    metrics["images"] = float(len(records))
    metrics["detections"] = float(len(results))
    return {k: float(np.round(v, 6)) for k, v in metrics.items()}
