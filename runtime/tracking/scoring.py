"""Tracking quality against ground truth, with motmetrics (the py-motmetrics package: MOTA, IDF1, id switches).

``MotScorer.add(gt_ids, gt_boxes, track_ids, boxes)`` once per frame, then ``scores()``. A track box matches a
ground-truth box when their IoU is at least ``min_iou`` (0.5, the MOTChallenge rule); motmetrics does the
CLEAR-MOT matching (keeping last frame's pairs where still valid, then the Hungarian method) and the IDF1
identity matching over the whole video.

motmetrics is imported when a scorer is made (it is a ``test``-extra dependency, not a runtime one: a deployed
tracker needs no scoring). Its own ``distances.iou_matrix`` calls ``np.asfarray``, which numpy 2 removed
(motmetrics 1.4.0, its latest release), so the IoU distances are computed here (``byte_tracker.box_iou``) and
handed to its accumulator, whose matching and metrics are unaffected.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UserError
from .byte_tracker import box_iou

__all__ = ["MotScorer"]

_METRICS = ["mota", "idf1", "num_switches", "num_false_positives", "num_misses", "num_objects",
            "mostly_tracked", "num_unique_objects"]


class MotScorer:
    """Accumulate per-frame ground truth and tracker output; ``scores()`` gives MOTA, IDF1 and the counts."""

    def __init__(self, min_iou: float = 0.5) -> None:
        try:
            import motmetrics
        except ImportError:
            raise UserError("tracking scores need motmetrics: pip install motmetrics "
                            "(or pip install 'edgevision[test]')") from None
        self._mm = motmetrics
        self._acc = motmetrics.MOTAccumulator(auto_id=True)
        self.min_iou = min_iou

    def add(self, gt_ids: Any, gt_boxes: Any, track_ids: Any, boxes: Any) -> None:
        """One frame: ground-truth ids ``[G]`` and xyxy boxes ``[G, 4]``, tracker ids ``[T]`` and boxes ``[T, 4]``."""
        iou = box_iou(np.asarray(gt_boxes).reshape(-1, 4), np.asarray(boxes).reshape(-1, 4))
        dist = np.where(iou >= self.min_iou, 1.0 - iou, np.nan)
        self._acc.update([int(i) for i in np.asarray(gt_ids).ravel()],
                         [int(i) for i in np.asarray(track_ids).ravel()], dist)

    def scores(self) -> dict[str, float]:
        """``mota``, ``idf1`` (fractions) and event counts over every frame added."""
        table = self._mm.metrics.create().compute(self._acc, metrics=_METRICS, name="all")
        return {k: float(table[k].iloc[0]) for k in _METRICS}
