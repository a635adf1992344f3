"""``synthetic://``: frames from the public scene renderer (``edgevision.runtime.synthetic``), paced or not.

Options (URI query): ``fps width height seed frames objects pool motion``; each bounded (a 100,000-px side would
allocate tens of GB per frame). ``motion=1``: one video of ``objects`` shapes moving over a fixed background, with
ground-truth track ids (``ground_truth(i)``; ``edgevision.runtime.synthetic_motion``) instead of ``pool`` still
scenes cycled; the still scenes are unchanged (bit for bit) without it.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import parse_qs

import numpy as np

from ..errors import UserError
from ..synthetic import render_scene
from ..synthetic_motion import MotionScene
from .base import Source

_OPTIONS = {"fps": None, "width": 640, "height": 480, "seed": 0, "frames": None, "objects": 8, "pool": 32,
            "motion": 0}
# Bounds of the URI's options: a 100,000-px side would allocate tens of GB per frame; the pool of cached
# scenes is bounded in bytes as well (the default pool is 28 MiB).
MAX_SIDE = 8192
MAX_FPS = 1000.0
MAX_POOL_BYTES = 2 * 2**30
_BOUNDS = {"width": (32, MAX_SIDE), "height": (32, MAX_SIDE), "objects": (1, 100), "pool": (1, 4096),
           "frames": (0, 10**12), "seed": (0, 2**32 - 1), "motion": (0, 1)}


class SyntheticSource(Source):
    """Frames from ``render_scene``: ``pool`` deterministic scenes cycled, ``frames`` in all, paced to ``fps``."""

    def __init__(self, uri: str, options: dict[str, float], stream_id: int = 0) -> None:
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise UserError(f"{uri}: unknown option(s) {', '.join(unknown)}; known: {', '.join(_OPTIONS)}")
        opts: dict[str, Any] = {**_OPTIONS, **options}
        for key, (low, high) in _BOUNDS.items():
            v = opts[key]
            if v is not None and not (math.isfinite(v) and v == int(v) and low <= v <= high):
                raise UserError(f"{uri}: {key} must be an integer in [{low}, {high}], got {v:g}")
        fps = opts["fps"]
        if fps is not None and not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
            raise UserError(f"{uri}: fps must be in (0, {MAX_FPS}], got {fps:g}")
        cached = (1 if opts["motion"] else int(opts["pool"])) * int(opts["width"]) * int(opts["height"]) * 3
        if cached > MAX_POOL_BYTES:
            raise UserError(f"{uri}: pool x width x height x 3 = {cached / 2**20:.0f} MiB of cached scenes, at most "
                            f"{MAX_POOL_BYTES // 2**20} MiB; lower pool or the frame size")
        super().__init__(uri, fps=fps, pace=fps is not None, stream_id=stream_id)
        self.is_live = fps is not None
        self.size = (int(opts["width"]), int(opts["height"]))
        self.seed, self.objects, self.pool = int(opts["seed"]), int(opts["objects"]), int(opts["pool"])
        self.frame_count = None if opts["frames"] is None else int(opts["frames"])
        self._scenes: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.motion = MotionScene(self.seed, self.size[0], self.size[1], self.objects) if opts["motion"] else None
        self._i = 0

    def scene(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image, boxes xyxy, labels) of frame ``index`` (the ground truth of what the stream shows)."""
        if self.motion is not None:
            return self.motion.frame(index)[:3]
        k = index % self.pool
        if k not in self._scenes:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, k]))
            self._scenes[k] = render_scene(rng, self.size[0], self.size[1], self.objects)
        return self._scenes[k]

    def ground_truth(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes xyxy float32 [N, 4], labels int64 [N], track ids int64 [N]) of frame ``index`` of a ``motion=1``
        stream; the same for every source with the same URI (deterministic from the seed)."""
        if self.motion is None:
            raise UserError(f"{self.uri}: ground-truth track ids need motion=1 (still scenes have no tracks)")
        return self.motion.frame(index)[1:]

    def _read(self) -> np.ndarray | None:
        if self.frame_count is not None and self._i >= self.frame_count:
            return None
        img = self.scene(self._i)[0].copy()  # frames are handed out; the cached scene stays pristine
        self._i += 1
        return img


def open_synthetic(uri: str, query: str, **kw: Any) -> Source:
    opts: dict[str, float] = {}
    for key, vals in parse_qs(query, keep_blank_values=True).items():
        try:
            opts[key] = float(vals[-1])
        except ValueError:
            raise UserError(f"{uri}: {key}={vals[-1]!r} is not a number") from None
    for key in ("width", "height", "fps"):
        if kw.get(key) is not None:
            opts[key] = float(kw[key])
    return SyntheticSource(uri, opts, stream_id=kw.get("stream_id", 0))
