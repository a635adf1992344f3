"""Annotation drawing: boxes, class labels with scores, and pose skeletons on a BGR image.

Hand-written (a few OpenCV primitives) rather than taken from an annotation library, because the
runtime must stay within numpy + OpenCV on a Jetson, and because the video, display and live-viewer sinks
all need the same picture. Colours come from a fixed palette indexed by class id, so a class keeps its
colour across frames, files and runs. Line widths and font size scale with the image so a 4K frame stays
readable and a 320x240 one is not buried under labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .lazy import cv2 as _cv2
from .results import Detections

__all__ = ["PALETTE", "color_for", "draw_detections"]

# Ultralytics-like palette, BGR.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
    (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0),
    (147, 69, 52), (255, 115, 100), (236, 24, 0), (255, 56, 132), (133, 0, 82), (255, 56, 203),
    (200, 149, 255), (199, 55, 255),
)
_KPT_COLOR = (0, 255, 255)
_LIMB_COLOR = (255, 128, 0)


def color_for(class_id: int) -> tuple[int, int, int]:
    """The BGR colour of a class id (stable across frames and runs)."""
    return PALETTE[int(class_id) % len(PALETTE)]


def _label(class_id: int, score: float, class_names: Sequence[str] | None, track_id: int | None = None) -> str:
    known = class_names is not None and 0 <= class_id < len(class_names)
    name = class_names[class_id] if known and class_names is not None else str(class_id)
    return f"{name} {score:.2f}" if track_id is None else f"#{track_id} {name} {score:.2f}"


def draw_detections(
    image: np.ndarray,
    detections: Detections,
    class_names: Sequence[str] | None = None,
    skeleton: Sequence[tuple[int, int]] | None = None,
    *,
    copy: bool = True,
    kpt_threshold: float = 0.5,
    labels: bool = True,
) -> np.ndarray:
    """Draw ``detections`` (in ``image`` pixels) on a BGR uint8 image and return it.

    ``copy=False`` draws in place (the caller owns the buffer). A tracked detection's label starts with its track
    id (``#12 circle 0.91``). Keypoints are drawn when
    ``detections.keypoints`` is set: a dot for each keypoint whose confidence is at least ``kpt_threshold``
    and, for each ``(a, b)`` pair of ``skeleton`` (0-based keypoint indices), a line when both ends are.
    """
    cv2 = _cv2()
    out = image.copy() if copy else image
    h, w = out.shape[:2]
    thick = max(1, round((h + w) / 640))
    font_scale = max(0.4, (h + w) / 2400)
    font = cv2.FONT_HERSHEY_SIMPLEX
    boxes = np.round(detections.xyxy).astype(np.int32)
    for i in range(len(detections)):
        cid = int(detections.class_ids[i])
        color = color_for(cid)
        x1, y1, x2, y2 = (int(v) for v in boxes[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick, cv2.LINE_AA)
        if not labels:
            continue
        tid = None if detections.track_ids is None else int(detections.track_ids[i])
        text = _label(cid, float(detections.scores[i]), class_names, tid)
        (tw, th), base = cv2.getTextSize(text, font, font_scale, max(1, thick // 2))
        top = y1 - th - base - 2 if y1 - th - base - 2 >= 0 else y1  # inside the box at the top edge
        cv2.rectangle(out, (x1, top), (x1 + tw + 2, top + th + base + 2), color, -1)
        cv2.putText(out, text, (x1 + 1, top + th + 1), font, font_scale, (255, 255, 255),
                    max(1, thick // 2), cv2.LINE_AA)
    if detections.keypoints is not None and len(detections):
        _draw_keypoints(cv2, out, detections.keypoints, skeleton or (), kpt_threshold, thick)
    return out


def _draw_keypoints(cv2: Any, out: np.ndarray, kpts: np.ndarray, skeleton: Sequence[tuple[int, int]],
                    threshold: float, thick: int) -> None:
    k = kpts.shape[1]
    pts = np.round(kpts[..., :2]).astype(np.int32)
    visible = kpts[..., 2] >= threshold
    radius = max(2, thick + 1)
    for n in range(kpts.shape[0]):
        for a, b in skeleton:
            if 0 <= a < k and 0 <= b < k and visible[n, a] and visible[n, b]:
                cv2.line(out, tuple(int(v) for v in pts[n, a]), tuple(int(v) for v in pts[n, b]),
                         _LIMB_COLOR, thick, cv2.LINE_AA)
        for j in np.flatnonzero(visible[n]):
            cv2.circle(out, tuple(int(v) for v in pts[n, j]), radius, _KPT_COLOR, -1, cv2.LINE_AA)
