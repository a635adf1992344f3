"""One inference call for a batch of frames from several streams, within what the model's batch axis allows.

A model exported with a dynamic batch (``--dynamic-batch``; a TensorRT engine with an optimisation profile)
takes the whole batch in one call, up to the profile's maximum. A model with a fixed batch ``B`` takes chunks
of ``B`` (the last one padded with zeros, its extra outputs discarded); a batch-1 model therefore runs one
call per frame, which ``BatchLimit`` says once in the log. A single frame on a backend that preprocesses on
the device (TensorRT's CUDA letterbox) goes through ``infer_image`` as before; batches are letterboxed on the
CPU and stacked, because the device kernel prepares one frame per call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Callable, List, Tuple

import numpy as np

from ..frames import Frame
from ..predictor import Predictor, Raw
from ..preprocess import Letterbox, letterbox, stack
from ..results import Detections

__all__ = ["BatchLimit", "Chunk", "infer_frames", "postprocess_chunks", "preprocess_frames"]

log = logging.getLogger("edgevision.streams")

Chunk = Tuple[Raw, List[Letterbox]]  # one inference call's raw output and the letterboxes of its real frames
Timer = Callable[[str, float], None]  # metrics.add(stage, seconds); typing's: a runtime alias on Python 3.8


class BatchLimit:
    """How many frames one call of ``pred`` takes: ``fixed`` (a model with a fixed batch) or ``limit``
    (the most a dynamic batch takes: a TensorRT profile's maximum; None = any)."""

    def __init__(self, pred: Predictor, *, streams: int = 1, once: threading.Lock | None = None) -> None:
        specs = [s for s in pred.backend.inputs if s.name == pred.input.name] or pred.backend.inputs[:1]
        first = specs[0].shape[0] if specs and specs[0].shape else 1
        self.fixed: int | None = first if isinstance(first, int) and first > 0 else None
        self.limit: int | None = self.fixed if self.fixed is not None else _profile_max(pred.backend)
        # said when the model opens, not when a batch first outgrows it: under load every batch may hold one
        # frame for a while, and the user should learn it at start-up; replicas share one model and ``once``
        # (a lock taken and never released: an atomic test-and-set), so it is said once in all
        if self.limit is not None and self.limit < streams and (once or threading.Lock()).acquire(blocking=False):
            how = "one call per frame" if self.limit == 1 else f"calls of {self.limit}"
            log.warning("the model takes batches of %s; %d streams run as %s (export with --dynamic-batch to "
                        "infer them in one call)", self.limit, streams, how)

    def chunks(self, n: int) -> list[tuple[int, int]]:
        """``[start, stop)`` ranges covering ``n`` frames, one per inference call."""
        step = self.limit or n
        return [(i, min(i + step, n)) for i in range(0, n, max(1, step))]


def _profile_max(backend: Any) -> int | None:
    """The batch maximum of a TensorRT engine's optimisation profile (None elsewhere)."""
    plan = getattr(backend, "plan", None)
    for spec in getattr(plan, "inputs", None) or []:
        profile = getattr(spec, "profile", None)
        if profile:
            return int(profile[2][0])
    return None


def preprocess_frames(pred: Predictor, frames: Sequence[Frame], timer: Timer) -> tuple[np.ndarray,
                                                                                       list[Letterbox]]:
    """Letterbox each frame on the CPU and normalise them together: ``[N, 3, H, W]`` and the letterboxes.
    ``preprocess.stack`` converts the batch in one call (no per-frame tensors to concatenate); ``timer`` gets
    each frame's share of the time, so the ``preprocess`` stage stays per frame."""
    t0 = time.perf_counter()
    if len(frames) == 1:
        tensor, lb = pred.preprocess(frames[0].image)
        timer("preprocess", time.perf_counter() - t0)
        return tensor, [lb]
    spec = pred.input
    boxed = [letterbox(f.image, (spec.height, spec.width), spec.pad_value) for f in frames]
    tensor = stack([img for img, _ in boxed], spec)
    share = (time.perf_counter() - t0) / len(frames)
    for _ in frames:
        timer("preprocess", share)
    return tensor, [lb for _, lb in boxed]


def _take(raw: Raw, n: int) -> Raw:
    return {k: v[:n] for k, v in raw.items()} if isinstance(raw, dict) else raw[:n]


def infer_frames(pred: Predictor, limit: BatchLimit, frames: Sequence[Frame], timer: Timer,
                 prepared: tuple[np.ndarray, list[Letterbox]] | None = None) -> list[Chunk]:
    """Run ``frames`` (``prepared``: their ``preprocess_frames`` output, else preprocessed here) in as few
    calls as the model allows; ``timer`` gets the preprocess and infer times."""
    if prepared is None and pred.device_preprocess and (len(frames) == 1 or limit.limit == 1):
        out: list[Chunk] = []
        for frame in frames:
            t0 = time.perf_counter()
            raw, lb = pred.infer_image(frame.image)
            timer("infer", time.perf_counter() - t0)
            out.append((raw, [lb]))
        return out
    tensor, lbs = prepared if prepared is not None else preprocess_frames(pred, frames, timer)
    chunks: list[Chunk] = []
    for start, stop in limit.chunks(len(lbs)):
        part = tensor[start:stop]  # a view: no copy
        pad = (limit.fixed or 0) - len(part)
        if pad > 0:
            part = np.concatenate([part, np.zeros((pad, *part.shape[1:]), part.dtype)])
        t0 = time.perf_counter()
        raw = pred.infer(part)
        timer("infer", time.perf_counter() - t0)
        chunks.append((_take(raw, stop - start) if pad > 0 else raw, lbs[start:stop]))
    return chunks


def postprocess_chunks(pred: Predictor, chunks: Sequence[Chunk]) -> list[Detections]:
    """Detections for every frame of the batch, in order."""
    dets: list[Detections] = []
    for raw, lbs in chunks:
        dets.extend(pred.postprocess(raw, lbs))
    return dets
