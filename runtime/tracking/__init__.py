"""Multi-object tracking over a stream's detections (``edgevision run --track``).

``ByteTracker`` (``byte_tracker``) follows objects by their Kalman-predicted boxes, one tracker per stream; the
pipeline calls ``tracker.update(detections, frame)`` once per frame and passes on what it returns: the detections
on a confirmed track, with ``Detections.track_ids`` set. scipy (the assignment solver) is imported only when a
tracker is created. ``scoring`` rates a tracker against ground truth with motmetrics (MOTA, IDF1).
"""

from __future__ import annotations

from .byte_tracker import ByteTracker, TrackerConfig

__all__ = ["ByteTracker", "TrackerConfig"]
