"""Noise-aware latency comparison for `edgevision regress`: two models timed interleaved in one run, decided
on a bootstrap confidence interval of the ratio of their medians.

Absolute milliseconds on a shared machine move 20-30 % between runs (the same FP32 model read 68 and 85 ms
here), so a gate on absolute times either cries wolf or misses real regressions. Timing candidate and
baseline alternately in the same process makes noise hit both alike; each round times both once, in
alternating order, so a round is a *pair* of samples taken moments apart. The percentile bootstrap resamples
whole rounds (keeping each pair together, which preserves the shared noise) and the gate fails only when
the whole interval lies above the allowed ratio: a tie never fails, a real slowdown larger than the
allowance fails once enough rounds pin the ratio down.

Hand-written because the bootstrap here is a dozen lines of numpy over paired samples; scipy's
``scipy.stats.bootstrap`` would add a dependency to the toolkit for the same percentile interval.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from edgevision.runtime.backends import open_backend
from edgevision.runtime.benchmark import interleaved_samples
from edgevision.runtime.bundle import Bundle


@dataclass(frozen=True)
class LatencyComparison:
    candidate_ms: float  # median
    baseline_ms: float  # median
    ratio: float  # candidate / baseline medians
    ci_low: float
    ci_high: float
    rounds: int
    threads: int
    confidence: float

    def to_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def ratio_interval(cand: np.ndarray, base: np.ndarray, *, confidence: float = 0.95, resamples: int = 2000,
                   seed: int = 0) -> tuple[float, float, float]:
    """Ratio of medians and its percentile-bootstrap interval over paired rounds (``cand[i]``, ``base[i]``)."""
    if cand.shape != base.shape or cand.ndim != 1 or cand.size < 2:
        raise ValueError("need two equal-length 1-D sample arrays of at least 2 rounds")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, cand.size, size=(resamples, cand.size))
    ratios = np.median(cand[idx], axis=1) / np.median(base[idx], axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(ratios, [alpha, 1.0 - alpha])
    return float(np.median(cand) / np.median(base)), float(lo), float(hi)


def _feed(bundle: Bundle) -> dict[str, np.ndarray]:
    spec = bundle.sidecar.input
    x = np.random.default_rng(0).random((1, 3, spec.height, spec.width), dtype=np.float32)
    return {spec.name: x.astype(spec.dtype)}


def compare_latency(candidate: Bundle, baseline: Bundle, *, rounds: int = 200, warmup: int = 10, threads: int = 0,
                    confidence: float = 0.95) -> LatencyComparison:
    """Time both bundles' models (batch 1, random input, ONNX Runtime CPU) in ``rounds`` interleaved rounds."""
    n = threads or (os.cpu_count() or 1)
    cand_be = open_backend(candidate.model_path, kind="onnxruntime", intra_op_threads=n)
    base_be = open_backend(baseline.model_path, kind="onnxruntime", intra_op_threads=n)
    try:
        cf, bf = _feed(candidate), _feed(baseline)
        samples = interleaved_samples({"candidate": lambda: cand_be.infer(cf), "baseline": lambda: base_be.infer(bf)},
                                      warmup=warmup, iters=rounds)
    finally:
        cand_be.close()
        base_be.close()
    c, b = np.asarray(samples["candidate"]), np.asarray(samples["baseline"])
    ratio, lo, hi = ratio_interval(c, b, confidence=confidence)
    return LatencyComparison(float(np.median(c)), float(np.median(b)), ratio, lo, hi, rounds, n, confidence)

