"""Latency measurement: the one timing method of `edgevision bench` and the build's bench stage.

:class:`TimingSettings` is the whole method (threads, warm-up and timed calls per model, the interleaved
rotating order, the ONNX Runtime session options, the input); :func:`time_backends` is the one loop that
applies it, and every caller opens its sessions with :meth:`TimingSettings.backend_options`. Both commands
print :meth:`TimingSettings.describe` and the manifest records :meth:`TimingSettings.to_dict`.

Several candidates are timed side by side in one run, interleaved round-robin, so that noise from a shared
machine hits them alike and their ratio stays meaningful. Reported: median / p90 / p99 / mean in ms.

Why ONNX Runtime's intra-op threads do not spin-wait (``spin: False``): before, the build timed without
spinning and `edgevision bench` with ORT's default spinning, so the same model read 9.4 vs 7.5 ms (issue 16).
Spinning wins on an idle machine but loses badly on a busy one, and it taxes whichever candidate runs next.
Measured on the 2-core dev VM while a training ran beside it (quickstart detector, 2 threads, medians of 100
calls, 3 repeats): no spinning 18.0-19.2 ms alone and 17.8-22.6 ms interleaved with a twin session;
spinning 33-83 ms alone, 52-110 ms interleaved; spinning only during a run (``session.force_spinning_stop``)
33-39 ms alone. `edgevision run` on a CPU uses one intra-op thread per replica, where spinning plays no part.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_WARMUP = 10
DEFAULT_ITERS = 100
INPUT_SEED = 0


@dataclass(frozen=True)
class TimingSettings:
    """How a latency is measured (module docstring); build with :meth:`make` so ``threads`` is resolved."""

    threads: int  # intra-op threads per session (0 resolved to the machine's cores)
    warmup: int = DEFAULT_WARMUP  # untimed calls per model before timing
    iters: int = DEFAULT_ITERS  # timed calls per model
    order: str = "rotating"  # every round calls each model once, the first model rotating round by round
    spin: bool = False  # ONNX Runtime intra-op threads busy-wait for work (module docstring: they do not)
    input: str = f"uniform [0, 1) float32, batch 1, seed {INPUT_SEED}"

    @classmethod
    def make(cls, threads: int = 0, warmup: int = DEFAULT_WARMUP, iters: int = DEFAULT_ITERS) -> TimingSettings:
        return cls(threads=threads or (os.cpu_count() or 1), warmup=warmup, iters=iters)

    def backend_options(self) -> dict[str, Any]:
        """Options for ``BackendChoice.open`` / ``OrtBackend``: the session every timed model runs in."""
        return {"intra_op_threads": self.threads, "spin": self.spin}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for people: what `bench` and the build print before their numbers."""
        return (f"timing: {self.threads} intra-op thread(s), {self.warmup} warm-up + {self.iters} timed calls per "
                f"model, {self.order} order, ORT spin-wait {'on' if self.spin else 'off'}, input {self.input}")


def random_input(shape: tuple[int, ...] | list[int], dtype: Any = np.float32) -> np.ndarray:
    """The timing input: uniform [0, 1) at ``shape``, the same array for every caller."""
    return np.random.default_rng(INPUT_SEED).random(tuple(shape), dtype=np.float32).astype(dtype)


def time_calls(fns: Mapping[str, Callable[[], object]], settings: TimingSettings) -> dict[str, LatencyStats]:
    """Time callables with ``settings`` (warm-up, iterations, rotating order); see :func:`interleaved_samples`."""
    return measure(dict(fns), warmup=settings.warmup, iters=settings.iters)


def time_backends(backends: Mapping[str, Any], feeds: Mapping[str, dict[str, np.ndarray]],
                  settings: TimingSettings) -> dict[str, LatencyStats]:
    """The one timing loop of `bench` and the bench stage: ``backends[name].infer(feeds[name])``,
    interleaved; each backend was opened with ``settings.backend_options()``."""
    return time_calls({name: _infer_call(b, feeds[name]) for name, b in backends.items()}, settings)


def _infer_call(backend: Any, feed: dict[str, np.ndarray]) -> Callable[[], object]:
    return lambda: backend.infer(feed)


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
