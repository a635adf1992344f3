"""ByteTrack-style multi-object tracking: Kalman-predicted boxes matched to detections by IoU in two stages.

The algorithm is ByteTrack's (Zhang et al., ECCV 2022), without appearance features:

1. Every track's box is predicted one frame ahead (``kalman.predict``, batched over tracks).
2. High-score detections (``score >= high_thresh``) are matched to the confirmed and the lost tracks, cost
   ``1 - IoU``, pairs under ``match_iou`` refused.
3. Low-score detections (``low_thresh <= score < high_thresh``: an occluded or blurred object the detector is
   unsure of) are matched to the confirmed tracks still unmatched (IoU >= ``low_match_iou``); this second stage
   is what keeps an id through a partial occlusion. Low-score detections never start a track.
4. Tentative tracks (born last frame) take the high-score detections left (IoU >= ``unconfirmed_match_iou``);
   a tentative track unmatched is dropped, one matched twice is confirmed and only then gets its id, so ids
   count confirmed objects (1, 2, 3, ... per tracker) and a one-frame false positive never shows one.
5. Confirmed tracks left unmatched become lost; a lost track is kept, still predicted, for ``track_buffer``
   frames, and is found again by stage 2's matching with the same id.
6. High-score detections left (score >= ``new_track_thresh``) start tentative tracks (confirmed at once on the
   tracker's first frame, as ByteTrack does).

The output is the input ``Detections`` narrowed to the detections matched to a confirmed track this frame (in
their original order), with ``track_ids`` set; the boxes are the detector's, not the filter's. Unmatched
low-score detections, and the first detection of a new object, are left out, as in ByteTrack.

Class-agnostic by default: the detector's class of an object may flicker between frames (the quickstart detector
confuses star and cross at small sizes), and a per-class tracker would end the track and start a new id on every
flicker. Each output row keeps the class the detector gave it this frame. ``per_class=True`` refuses matches
across classes instead (for classes that really overlap in space, e.g. a person on a bicycle).

The assignment is solved by ``scipy.optimize.linear_sum_assignment`` (imported when a tracker is first created,
so ``import edgevision.runtime`` stays lean): refused pairs get a cost of 1e5, so the solver finds the largest
number of allowed pairs, then the lowest total cost among them.

Why hand-written (about 150 lines) rather than a package: the registry's ByteTrack packages do not fit a
torch-free runtime on a Jetson. ``bytetracker`` (0.3.2, 2023, a packaged copy of the research code) imports torch
and lap, and has had no release since; ``supervision`` (0.31) has a maintained ``ByteTrack`` but requires
matplotlib, pillow, scipy, opencv-python (a wheel that would shadow JetPack's GStreamer build of OpenCV; see
pyproject) and more, for one class; ``trackers`` and ``boxmot`` depend on torch. What ByteTrack needs
from a library (the assignment) comes from scipy; the rest is bookkeeping over numpy arrays, kept as one batched
array per field (no per-track objects): with 20 objects (21 detections per frame) an update takes 0.36 ms
(median; ``scripts/bench-tracking`` on the shared 2-core development VM).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import UserError
from ..results import Detections
from . import kalman

__all__ = ["ByteTracker", "TrackerConfig", "box_iou", "linear_assignment"]

TENTATIVE, TRACKED, LOST = 0, 1, 2
_REFUSED = 1e5


@dataclass(frozen=True)
class TrackerConfig:
    """ByteTrack's thresholds (its defaults, with ``track_buffer`` in frames rather than scaled by the fps)."""

    high_thresh: float = 0.5
    low_thresh: float = 0.1
    new_track_thresh: float = 0.6
    match_iou: float = 0.2
    low_match_iou: float = 0.5
    unconfirmed_match_iou: float = 0.3
    track_buffer: int = 30
    per_class: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.low_thresh <= self.high_thresh <= 1:
            raise UserError(f"tracker: need 0 <= low_thresh <= high_thresh <= 1, got {self.low_thresh:g} and "
                            f"{self.high_thresh:g}")
        for name in ("new_track_thresh", "match_iou", "low_match_iou", "unconfirmed_match_iou"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise UserError(f"tracker: {name} must be in [0, 1], got {v:g}")
        if self.track_buffer < 0:
            raise UserError(f"tracker: track_buffer must be >= 0 frames, got {self.track_buffer}")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` ``[N, 4]`` with every box in ``b`` ``[M, 4]`` (xyxy) -> ``[N, M]``."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.maximum(rb - lt, 0.0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _solver() -> Callable[..., Any]:
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        raise UserError("tracking needs scipy: pip install 'edgevision[runtime]' (or pip install scipy)") from None
    return linear_sum_assignment


def linear_assignment(cost: np.ndarray, max_cost: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the optimal one-to-one matching, pairs costing more than ``max_cost`` refused."""
    if cost.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    gated = np.where(cost > max_cost, _REFUSED, cost)
    rows, cols = _solver()(gated)
    ok = gated[rows, cols] <= max_cost
    return rows[ok].astype(np.int64), cols[ok].astype(np.int64)


class ByteTracker:
    """One stream's tracker: ``update(detections)`` once per frame, in frame order."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        _solver()  # fail now, with the install line, rather than on the first frame
        self.frame_count = 0
        self._next_id = 1
        self._last_index: int | None = None
        self._first_frame = True
        self.mean = np.zeros((0, 8))
        self.cov = np.zeros((0, 3, 4))  # kalman: per-coordinate 2x2 blocks
        self.state = np.zeros(0, np.int8)
        self.ids = np.zeros(0, np.int64)  # 0 until confirmed
        self.cls = np.zeros(0, np.int64)
        self.last_frame = np.zeros(0, np.int64)

    def __len__(self) -> int:
        """Tracks alive (tentative, confirmed and lost)."""
        return int(self.state.size)

    def _match(self, tracks: np.ndarray, dets: np.ndarray, iou: np.ndarray, det_cls: np.ndarray, min_iou: float
               ) -> tuple[np.ndarray, np.ndarray]:
        if tracks.size == 0 or dets.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        cost = 1.0 - iou[np.ix_(tracks, dets)]
        if self.config.per_class:
            cost[self.cls[tracks][:, None] != det_cls[dets][None, :]] = _REFUSED
        r, c = linear_assignment(cost, 1.0 - min_iou)
        return tracks[r], dets[c]

    def update(self, det: Detections, frame: Any = None) -> Detections:
        """Track one frame's detections; returns those on a confirmed track, with ``track_ids`` (``frame``:
        the image, unused by this motion-only tracker; accepted so appearance trackers share the call).

        Time runs by ``det.frame_index``: when frames were skipped (a live source's newest-frame policy drops
        them under load), the tracks are predicted over the gap (at most ``track_buffer + 1`` steps) and the gap
        counts towards ``track_buffer``; indices that do not increase count as one frame."""
        cfg = self.config
        self._first_frame = self._last_index is None
        gap = 1 if self._last_index is None else det.frame_index - self._last_index
        steps = min(max(gap, 1), cfg.track_buffer + 1)
        self._last_index = det.frame_index
        self.frame_count += steps
        if self.state.size:
            self.mean[self.state != TRACKED, 7] = 0.0  # ByteTrack: a lost track's height stops changing
            for _ in range(steps):
                self.mean, self.cov = kalman.predict(self.mean, self.cov)
        xyxy, scores, cls = det.xyxy, det.scores, det.class_ids
        # every predicted track box against every detection, once; each stage matches a block of it
        iou = box_iou(kalman.xyah_to_xyxy(self.mean), xyxy) if self.state.size and len(det) else np.zeros(
            (self.state.size, len(det)))
        high = np.flatnonzero(scores >= cfg.high_thresh)
        low = np.flatnonzero((scores >= cfg.low_thresh) & (scores < cfg.high_thresh))
        # stage 1: high-score detections vs confirmed + lost tracks
        state = self.state
        t1, d1 = self._match(np.flatnonzero(state != TENTATIVE), high, iou, cls, cfg.match_iou)
        # stage 2: low-score detections vs the confirmed (not lost) tracks left
        free_t = state == TRACKED
        free_t[t1] = False
        t2, d2 = self._match(np.flatnonzero(free_t), low, iou, cls, cfg.low_match_iou)
        # stage 3: tentative tracks vs the high-score detections left
        free_d = np.zeros(len(det), bool)
        free_d[high] = True
        free_d[d1] = False
        tentative = state == TENTATIVE
        t3, d3 = self._match(np.flatnonzero(tentative), np.flatnonzero(free_d), iou, cls,
                             cfg.unconfirmed_match_iou)
        free_d[d3] = False
        tm, dm = np.concatenate([t1, t2, t3]), np.concatenate([d1, d2, d3])
        if tm.size:
            self.mean[tm], self.cov[tm] = kalman.update(self.mean[tm], self.cov[tm], kalman.xyxy_to_xyah(xyxy[dm]))
            self.cls[tm] = cls[dm]
            self.last_frame[tm] = self.frame_count
            new_ids = tm[self.ids[tm] == 0]
            self.ids[new_ids] = np.arange(self._next_id, self._next_id + new_ids.size)
            self._next_id += int(new_ids.size)
        matched_ids = self.ids[tm]  # before _select re-indexes the arrays
        was_tracked = state == TRACKED
        state[was_tracked] = LOST  # confirmed tracks unmatched this frame are lost ...
        state[tm] = TRACKED  # ... the matched ones (and the tentative ones matched) are confirmed
        keep = (state == TRACKED) | ((state == LOST) & (self.frame_count - self.last_frame <= cfg.track_buffer))
        keep &= ~tentative | (state == TRACKED)  # an unmatched tentative track is dropped
        if not keep.all():
            self._select(keep)
        out_rows, out_ids = self._births(np.flatnonzero(free_d), xyxy, scores, cls)
        rows = np.concatenate([dm, out_rows])
        ids = np.concatenate([matched_ids, out_ids])
        order = np.argsort(rows, kind="stable")
        return _narrow(det, rows[order], ids[order])

    def _select(self, keep: np.ndarray) -> None:
        self.mean, self.cov, self.state = self.mean[keep], self.cov[keep], self.state[keep]
        self.ids, self.cls, self.last_frame = self.ids[keep], self.cls[keep], self.last_frame[keep]

    def _births(self, dets: np.ndarray, xyxy: np.ndarray, scores: np.ndarray, cls: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """Start tracks on ``dets`` (high-score, unmatched); returns the rows and ids shown this frame."""
        dets = dets[scores[dets] >= self.config.new_track_thresh]
        if dets.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        mean, cov = kalman.initiate(kalman.xyxy_to_xyah(xyxy[dets]))
        first = self._first_frame
        ids = np.arange(self._next_id, self._next_id + dets.size) if first else np.zeros(dets.size, np.int64)
        if first:
            self._next_id += int(dets.size)
        self.mean = np.concatenate([self.mean, mean])
        self.cov = np.concatenate([self.cov, cov])
        self.state = np.concatenate([self.state, np.full(dets.size, TRACKED if first else TENTATIVE, np.int8)])
        self.ids = np.concatenate([self.ids, ids])
        self.cls = np.concatenate([self.cls, cls[dets]])
        self.last_frame = np.concatenate([self.last_frame, np.full(dets.size, self.frame_count, np.int64)])
        return (dets, ids) if first else (np.zeros(0, np.int64), np.zeros(0, np.int64))


def _narrow(det: Detections, rows: np.ndarray, ids: np.ndarray) -> Detections:
    kpts = None if det.keypoints is None else det.keypoints[rows]
    return Detections(det.xyxy[rows], det.scores[rows], det.class_ids[rows], kpts, stream_id=det.stream_id,
                      frame_index=det.frame_index, meta=det.meta, track_ids=ids)
