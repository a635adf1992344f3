"""``Frame``: one captured image travelling through the pipeline.

Every frame carries its stream id and capture timestamp from the moment it is read, so that batching several
cameras into one inference call, tracking, and end-to-end latency (capture -> result) need no side channel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Frame"]


@dataclass
class Frame:
    """A BGR uint8 ``[H, W, 3]`` image with where and when it was captured.

    ``timestamp`` is ``time.monotonic()`` right after the frame was read (comparable across threads, not a
    wall-clock time). ``index`` counts frames delivered by the source (0, 1, 2, ...; it keeps counting across
    reconnects and loops). ``source`` names the stream (its URI unless named); ``name`` is the image's file
    name for frames from an image folder or glob (empty otherwise). Consumers must not modify ``image`` in
    place: sinks share it.
    """

    image: np.ndarray
    index: int
    timestamp: float
    stream_id: int = 0
    source: str = ""
    name: str = ""

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
