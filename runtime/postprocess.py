"""Raw model outputs -> ``Detections`` (boxes in *model-input* pixels; unmap with ``Letterbox``).

Two output layouts (see DESIGN.md, "Output layouts the runtime decodes"):

``yolo``  ``[B, 4 + C + 3K, N]``: Ultralytics v8/11 head. Rows 0..3 are cx, cy, w, h in input pixels,
          the next C rows per-class scores (already sigmoid), then K keypoints as interleaved rows
          x0, y0, v0, x1, y1, v1, ... (K = 0 for plain detection). Decoded by ``decode_yolo``.
``nms``   the graph already ran NMS and pads to M detections per image, in the TensorRT EfficientNMS
          convention: ``num_dets [B, 1]`` (int), ``boxes [B, M, 4]`` xyxy, ``scores [B, M]``,
          ``classes [B, M]`` (int), optionally ``keypoints [B, M, K, 3]``; only the first ``num_dets[b]``
          rows of image b are valid. Decoded by ``decode_nms``. Exporters that use ONNX
          NonMaxSuppression gather its ``selected_indices`` into these padded tensors inside the graph.

Only the thresholding and the top-k bookkeeping are hand-written (vectorised numpy); the NMS itself is
OpenCV's ``cv2.dnn.NMSBoxesBatched`` (C++), because a Python NMS loop is the classic edge-CPU bottleneck
and OpenCV is already a runtime dependency.
"""

from __future__ import annotations

import numpy as np

from .errors import UserError
from .lazy import cv2 as _cv2
from .results import Detections

__all__ = ["NMS_OUTPUT_NAMES", "decode_nms", "decode_yolo"]

#: Output tensor names of the ``nms`` layout, in ``decode_nms`` argument order.
NMS_OUTPUT_NAMES = ("num_dets", "boxes", "scores", "classes")

#: At most this many candidates (highest scores) enter NMS per image, as Ultralytics' ``max_nms``.
MAX_NMS_CANDIDATES = 30000


def _nms(xyxy: np.ndarray, scores: np.ndarray, cls: np.ndarray, iou: float, top_k: int,
         agnostic: bool) -> np.ndarray:
    """Indices kept by NMS, best score first (ties broken as OpenCV does)."""
    cv2 = _cv2()
    xywh = xyxy.copy()
    xywh[:, 2:] -= xyxy[:, :2]  # OpenCV wants x, y, w, h
    if agnostic:
        keep = cv2.dnn.NMSBoxes(xywh, scores, 0.0, float(iou), 1.0, int(top_k))
    else:
        keep = cv2.dnn.NMSBoxesBatched(xywh, scores, cls.astype(np.int32), 0.0, float(iou), 1.0, int(top_k))
    return np.asarray(keep, dtype=np.int64).reshape(-1)


def _candidates(cls_scores: np.ndarray, conf: float, multi_label: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(anchor index, class, score) of the NMS candidates: each anchor's best class above ``conf``, or with
    ``multi_label`` every (anchor, class) pair above it (Ultralytics' validation; one box may then carry
    several labels); the ``MAX_NMS_CANDIDATES`` best at most."""
    nc = cls_scores.shape[0]
    if multi_label and nc > 1:
        cls, cand = np.nonzero(cls_scores > conf)
        scores = cls_scores[cls, cand]
    else:
        best = cls_scores.max(axis=0) if nc > 1 else cls_scores[0]
        cand = np.flatnonzero(best > conf)
        scores = best[cand]
        cls = cls_scores[:, cand].argmax(axis=0) if nc > 1 else np.zeros(cand.size, np.int64)
    if cand.size > MAX_NMS_CANDIDATES:
        top = np.argsort(-scores, kind="stable")[:MAX_NMS_CANDIDATES]
        cand, cls, scores = cand[top], cls[top], scores[top]
    return cand, cls.astype(np.int64), scores.astype(np.float32)


def _decode_one(pred: np.ndarray, nc: int, nk: int, conf: float, iou: float, max_det: int,
                agnostic: bool, multi_label: bool = False) -> Detections:
    cand, cls, scores = _candidates(pred[4 : 4 + nc], conf, multi_label)  # class scores [C, N]
    if cand.size == 0 or max_det <= 0:
        return Detections.empty(nk)
    cx, cy, w, h = pred[:4, cand].astype(np.float32)
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    # top_k 0: OpenCV applies top_k to the candidates *before* suppression, which would return fewer than
    # max_det boxes whenever some of the best max_det overlap; cut to max_det after NMS instead
    keep = _nms(xyxy, scores, cls, iou, 0, agnostic)
    keep = keep[np.argsort(-scores[keep], kind="stable")][:max_det]
    kpts = None
    if nk:
        kpts = pred[4 + nc : 4 + nc + 3 * nk][:, cand[keep]].T.reshape(-1, nk, 3)
    return Detections(xyxy[keep], scores[keep], cls[keep].astype(np.int64), kpts)


def decode_yolo(
    out: np.ndarray,
    num_classes: int,
    num_keypoints: int = 0,
    conf: float = 0.25,
    iou: float = 0.45,
    max_det: int = 300,
    class_agnostic: bool = False,
    multi_label: bool = False,
) -> list[Detections]:
    """Decode a ``yolo`` head ``[B, 4 + C + 3K, N]`` (``[4 + C + 3K, N]`` is taken as B = 1).

    Per image: keep anchors whose best class score is ``> conf`` (one label per box; ``multi_label``
    keeps every class scoring ``> conf``, as Ultralytics' validation does), run class-aware NMS (suppress
    when IoU ``> iou``; ``class_agnostic`` ignores classes), then keep the ``max_det`` highest scores.
    Boxes are xyxy in model-input pixels; keypoints, when K > 0, are ``[n, K, 3]`` (x, y, confidence as
    the model emits it). Returns one ``Detections`` per image.
    """
    arr = np.asarray(out)
    if arr.ndim == 2:
        arr = arr[None]
    want = 4 + num_classes + 3 * num_keypoints
    if arr.ndim != 3 or arr.shape[1] != want or num_classes < 1:
        raise UserError(
            f"yolo output: expected shape [B, {want}, N] (4 box + {num_classes} classes + 3x"
            f"{num_keypoints} keypoints), got {list(arr.shape)}; check the bundle's num_classes, "
            "keypoints and output layout (an [B, N, D] head must be transposed at export)"
        )
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    return [_decode_one(p, num_classes, num_keypoints, conf, iou, max_det, class_agnostic, multi_label) for p in arr]


def decode_nms(
    num_dets: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    keypoints: np.ndarray | None = None,
    conf: float | None = None,
    max_det: int | None = None,
) -> list[Detections]:
    """Decode a graph that already ran NMS (the ``nms`` layout, EfficientNMS convention; see above).

    ``num_dets`` may be ``[B, 1]`` or ``[B]``. Rows past ``num_dets[b]`` are padding and ignored.
    Optionally drops scores ``<= conf`` and keeps the ``max_det`` first rows (the graph sorts by score).
    """
    n = np.asarray(num_dets).reshape(-1).astype(np.int64)
    b = np.asarray(boxes, dtype=np.float32)
    s = np.asarray(scores, dtype=np.float32)
    c = np.asarray(classes)
    batch = n.shape[0]
    ok = b.ndim == 3 and b.shape[0] == batch and b.shape[2] == 4 and s.shape == b.shape[:2] \
        and c.shape == b.shape[:2]
    k = None if keypoints is None else np.asarray(keypoints, dtype=np.float32)
    if k is not None and not (k.ndim == 4 and k.shape[:2] == b.shape[:2] and k.shape[3] == 3):
        ok = False
    if not ok:
        shapes = [list(np.shape(a)) for a in (num_dets, boxes, scores, classes, keypoints) if a is not None]
        raise UserError(
            "nms output: expected num_dets [B,1], boxes [B,M,4], scores [B,M], classes [B,M]"
            f" (keypoints [B,M,K,3]), got {shapes}"
        )
    results = []
    for i in range(batch):
        m = int(np.clip(n[i], 0, b.shape[1]))
        sel = np.arange(m) if conf is None else np.flatnonzero(s[i, :m] > conf)
        if max_det is not None:
            sel = sel[:max_det]
        kp = None if k is None else k[i, sel]
        results.append(Detections(b[i, sel], s[i, sel], c[i, sel].astype(np.int64), kp))
    return results
