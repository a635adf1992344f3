"""Latency measurement shared by `edgevision bench` (runtime only) and the toolkit's bench stage.

Several candidates are timed side by side in one run, interleaved round-robin, so that noise from a shared
machine hits them alike and their ratio stays meaningful. Reported: median / p90 / p99 / mean in ms.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    median: float
    p90: float
    p99: float
    mean: float
    iters: int

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}


def summarize(samples_ms: list[float]) -> LatencyStats:
    a = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return LatencyStats(float(p50), float(p90), float(p99), float(a.mean()), int(a.size))


def measure(fns: dict[str, Callable[[], object]], warmup: int = 10, iters: int = 50) -> dict[str, LatencyStats]:
    """Time each callable ``iters`` times after ``warmup`` calls, interleaving candidates each round
    (:func:`interleaved_samples`); median / p90 / p99 / mean per candidate."""
    return {name: summarize(s) for name, s in interleaved_samples(fns, warmup, iters).items()}


def interleaved_samples(fns: dict[str, Callable[[], object]], warmup: int = 10,
                        iters: int = 50) -> dict[str, list[float]]:
    """Per candidate, ``iters`` call times in ms; round ``r`` calls every candidate once, so the ``r``-th
    samples of all candidates were taken moments apart (paired).

    The order rotates every round, so no candidate always runs right after the same other one (a thread pool
    still spinning from the previous call slows whoever comes next on a small machine)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    items = list(fns.items())
    for r in range(iters):
        k = r % len(items)
        for name, fn in items[k:] + items[:k]:
            t0 = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - t0) * 1000.0)
    return samples
