"""How ``edgevision run --track`` (and ``scripts/bench-tracking``) set up tracking for a bundle.

The tracker needs the detections a plain run would drop: ByteTrack's second stage matches low-score boxes
(``low_thresh``, 0.1) to tracks it already follows. So with tracking on, the detector's threshold is lowered to
``low_thresh`` and the run's score threshold (``--conf``, else the bundle's) becomes the tracker's ``high_thresh``:
a box under it never starts a track or shows on its own, only continues one.
"""

from __future__ import annotations

import functools
from typing import Callable

from ..bundle import Bundle
from .byte_tracker import ByteTracker, TrackerConfig

__all__ = ["tracker_setup"]

LOW_THRESH = 0.1


def tracker_setup(bundle: Bundle, conf: float | None = None, track_buffer: int = 30
                  ) -> tuple[float, Callable[[], ByteTracker]]:
    """(the detector's score threshold, a factory of one stream's tracker) for ``bundle`` at score threshold
    ``conf`` (None: the bundle's)."""
    high = float(bundle.sidecar.postprocess.conf if conf is None else conf)
    low = min(LOW_THRESH, high)
    config = TrackerConfig(high_thresh=high, low_thresh=low, new_track_thresh=high, track_buffer=track_buffer)
    ByteTracker(config)  # fail now (e.g. scipy missing), before the pipeline opens the model
    return low, functools.partial(ByteTracker, config)
