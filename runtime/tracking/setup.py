"""How ``edgevision run --track`` (and ``scripts/bench-tracking``) set up tracking for a bundle.

The tracker needs detections a plain run would drop: ByteTrack's second stage matches low-score boxes (down to
``low_thresh``, 0.1) to the tracks it already follows. So with tracking on, the detector's score threshold is
lowered to ``low_thresh``, and the score that starts and confirms tracks is the tracker's ``high_thresh``:
ByteTrack's 0.5 by default, or ``--conf`` when given, with new tracks needing 0.1 more (ByteTrack's rule).

The bundle's own threshold (0.25 for the quickstart detector) is not used for ``high_thresh``: low-score duplicate
boxes beside real objects then take over tracks. Measured on the first 150 frames of ``scripts/bench-tracking``'s
10-object video (quickstart detector; high / new-track thresholds -> MOTA, IDF1, id switches): 0.25 / 0.25 -> 0.80,
0.78, 52; 0.4 / 0.5 -> 0.91, 0.92, 6; 0.5 / 0.6 -> 0.90, 0.87, 2.
"""

from __future__ import annotations

import functools
from typing import Callable

from .byte_tracker import ByteTracker, TrackerConfig

__all__ = ["tracker_setup"]


def tracker_setup(conf: float | None = None, track_buffer: int = 30) -> tuple[float, Callable[[], ByteTracker]]:
    """(the detector's score threshold, a factory of one stream's tracker): ``conf`` (None: ByteTrack's 0.5) is
    the tracker's high threshold."""
    default = TrackerConfig()
    high = default.high_thresh if conf is None else float(conf)
    config = TrackerConfig(high_thresh=high, low_thresh=min(default.low_thresh, high),
                           new_track_thresh=min(high + 0.1, 1.0), track_buffer=track_buffer)
    ByteTracker(config)  # fail now (e.g. scipy missing), before the pipeline opens the model
    return config.low_thresh, functools.partial(ByteTracker, config)
