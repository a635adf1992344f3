"""Typed result containers: dataclasses of numpy arrays, validated on construction.

Shapes follow supervision's habit: ``xyxy`` is ``[N, 4]`` float32 in source-image pixels, ``scores``
``[N]`` float32, ``class_ids`` ``[N]`` int64, optional ``keypoints`` ``[N, K, 3]`` float32 (x, y,
confidence), optional ``track_ids`` ``[N]`` int64 (set by a tracker, ``edgevision.runtime.tracking``). A wrong
shape raises ``InternalError`` naming the expected and actual shape: these are built by edgevision's own
postprocessing, so a mismatch is a bug, not user input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InternalError


def _check(name: str, arr: np.ndarray, shape: tuple[int | None, ...]) -> None:
    ok = arr.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, arr.shape))
    if not ok:
        want = "[" + ", ".join("N" if s is None else str(s) for s in shape) + "]"
        raise InternalError(f"Detections.{name}: expected shape {want}, got {list(arr.shape)}")


@dataclass
class Detections:
    """Detections (and optionally keypoints) for one frame."""

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    keypoints: np.ndarray | None = None
    stream_id: int = 0
    frame_index: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    track_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4) if np.size(self.xyxy) == 0 \
            else np.asarray(self.xyxy, dtype=np.float32)
        self.scores = np.asarray(self.scores, dtype=np.float32)
        self.class_ids = np.asarray(self.class_ids, dtype=np.int64)
        _check("xyxy", self.xyxy, (None, 4))
        n = self.xyxy.shape[0]
        _check("scores", self.scores, (n,))
        _check("class_ids", self.class_ids, (n,))
        if self.keypoints is not None:
            self.keypoints = np.asarray(self.keypoints, dtype=np.float32)
            _check("keypoints", self.keypoints, (n, None, 3))
        if self.track_ids is not None:
            self.track_ids = np.asarray(self.track_ids, dtype=np.int64)
            _check("track_ids", self.track_ids, (n,))

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    @classmethod
    def empty(cls, num_keypoints: int = 0) -> Detections:
        kpts = np.zeros((0, num_keypoints, 3), np.float32) if num_keypoints else None
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), kpts)

    def to_dict(self, class_names: list[str] | None = None) -> dict[str, Any]:
        """JSON-ready form (lists of floats), as the JSON-lines sink and the HTTP endpoint emit it; ``track_ids``
        only when a tracker set them."""
        out: dict[str, Any] = {
            "boxes": np.round(self.xyxy.astype(np.float64), 2).tolist(),
            "scores": np.round(self.scores.astype(np.float64), 4).tolist(),
            "class_ids": self.class_ids.tolist(),
        }
        if class_names is not None:
            out["classes"] = [class_names[i] for i in self.class_ids.tolist()]
        if self.keypoints is not None:
            out["keypoints"] = np.round(self.keypoints.astype(np.float64), 2).tolist()
        if self.track_ids is not None:
            out["track_ids"] = self.track_ids.tolist()
        return out
