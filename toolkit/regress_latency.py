"""Noise-aware latency comparison for `edgevision regress`: two models timed interleaved in one run, decided
on a block-bootstrap confidence interval of their paired latency ratio.

Absolute milliseconds on a shared machine move 20-30 % between runs (the same FP32 model read 68 and 85 ms
here), so a gate on absolute times either cries wolf or misses real regressions. Timing candidate and
baseline alternately in the same process makes noise hit both alike; each round times both once, in
alternating order (ABBA...), so a round is a *pair* of samples taken moments apart.

The method, and the measurements behind each choice (quickstart detector, 256 px, this 2-core machine with a
background training and other builds on it, so 8-17x slower than when quiet; 100-round chunks of one long
interleaved run, spread of the estimate across chunks):

- **one intra-op thread by default** (``threads=1``). With two threads on two busy cores, every parallel
  operator waits for whichever pool thread the scheduler parked, so the time measures the machine rather
  than the model: the same-model ratio spread 0.028 (sd) at 2 threads vs 0.018 at 1, and a slower model's
  ratio read 1.28-1.36 at 2 threads vs 1.36-1.40 at 1. A single-thread time is the model's work; ``--threads
  0`` times with every core when the machine is quiet.
- **the paired ratio**: the median over rounds of candidate/baseline time within the round, whose two
  samples were taken moments apart, so a stall that hits both cancels. For a model that is uniformly
  slower it equals the ratio of medians; its 95 % interval was half as wide (+-0.02-0.03 vs +-0.04-0.06 at
  100-200 rounds, same data, one thread), which is what lets a 15 % slowdown clear a 1.10 allowance.
- **block bootstrap.** Consecutive rounds share the machine's state (a build starting, a training epoch),
  so rounds are not independent; the interval resamples whole blocks of ``block`` consecutive rounds (10),
  which keeps that dependence, instead of single rounds, whose interval is too narrow under drift.
- **sequential, bounded by time.** After ``min_rounds`` the interval is recomputed every ``check_every``
  rounds (or every quarter of the rounds so far, when that is more); timing stops as soon as the 99 %
  interval lies wholly above or below the allowed ratio (a clear answer needs no more samples: the same
  model stops after ``min_rounds``), else at ``max_rounds`` or after ``seconds``. The final verdict uses the
  95 % interval. Deciding early on the wider 99 % interval keeps the repeated looks from adding false
  verdicts.
- **fail only when the whole interval lies above the allowed ratio** (default 1.10): a tie never fails; a
  15 % slowdown fails once the interval is narrower than +-5 %.

Spot check on the quickstart detector, the machine saturated (one-thread inference 86-88 ms instead of ~20;
six runs each, not under the heavy-work lock): a candidate with a dead-weight branch (``scripts/regress-power``,
width 4; 1.14-1.18x by these runs' own measure) failed 6/6, the model against itself passed 6/6, 26-39 s per
`regress` run. ``scripts/regress-power BUILD`` measures 20 + 20 runs.

Hand-written because the bootstrap here is a dozen lines of numpy over paired blocks; scipy's
``scipy.stats.bootstrap`` has no block resampling and would add a dependency to the toolkit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgevision.runtime.backends import open_backend
from edgevision.runtime.benchmark import interleaved_samples
from edgevision.runtime.bundle import Bundle

EARLY_CONFIDENCE = 0.99  # the interval that may stop timing early (see the module docstring)


@dataclass(frozen=True)
class LatencyComparison:
    candidate_ms: float  # median
    baseline_ms: float  # median
    ratio: float  # paired: median over rounds of candidate / baseline
    ci_low: float
    ci_high: float
    rounds: int
    threads: int
    confidence: float
    seconds: float = 0.0  # timing wall time
    stopped: str = "rounds"  # decided (early) | rounds | seconds
    candidate_p99_ms: float = 0.0
    baseline_p99_ms: float = 0.0

    def to_dict(self) -> dict[str, float | int | str]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def ratio_interval(cand: np.ndarray, base: np.ndarray, *, confidence: float = 0.95, resamples: int = 2000,
                   block: int = 10, seed: int = 0) -> tuple[float, float, float]:
    """The paired ratio (median over rounds of ``cand[i] / base[i]``) and its percentile interval from a
    bootstrap over blocks of ``block`` consecutive rounds; a trailing partial block is left out of the
    resampling."""
    if cand.shape != base.shape or cand.ndim != 1 or cand.size < 2:
        raise ValueError("need two equal-length 1-D sample arrays of at least 2 rounds")
    logs = np.log(cand / base)
    block = max(1, min(block, logs.size // 2))
    nb = logs.size // block
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, nb, size=(resamples, nb)) * block
    per = max(1, 2_000_000 // (nb * block))  # resamples per batch: index arrays of at most ~16 MB
    meds = np.empty(resamples)
    for i in range(0, resamples, per):
        idx = (starts[i:i + per, :, None] + np.arange(block)).reshape(-1, nb * block)
        meds[i:i + per] = np.median(logs[idx], axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.exp(np.quantile(meds, [alpha, 1.0 - alpha]))
    return float(np.exp(np.median(logs))), float(lo), float(hi)


def _feed(bundle: Bundle) -> dict[str, np.ndarray]:
    spec = bundle.sidecar.input
    x = np.random.default_rng(0).random((1, 3, spec.height, spec.width), dtype=np.float32)
    return {spec.name: x.astype(spec.dtype)}


def compare_latency(candidate: Bundle, baseline: Bundle, *, allowed: float | None = None, max_rounds: int = 2000,
                    min_rounds: int = 100, seconds: float = 20.0, check_every: int = 50, warmup: int = 10,
                    threads: int = 1, confidence: float = 0.95, block: int = 10) -> LatencyComparison:
    """Time both bundles' models (batch 1, random input, ONNX Runtime CPU, ``threads`` intra-op threads; 0 =
    every core) in interleaved rounds until the answer against ``allowed`` is clear, ``max_rounds`` or
    ``seconds`` (see the module docstring). Without ``allowed`` it times ``max_rounds`` (or ``seconds``)."""
    n = threads or (os.cpu_count() or 1)
    min_rounds = min(min_rounds, max_rounds)
    cand_be = open_backend(candidate.model_path, kind="onnxruntime", intra_op_threads=n)
    base_be = open_backend(baseline.model_path, kind="onnxruntime", intra_op_threads=n)
    cs: list[float] = []
    bs: list[float] = []
    stopped = "rounds"
    t0 = time.perf_counter()
    try:
        cf, bf = _feed(candidate), _feed(baseline)
        fns: dict[str, Callable[[], object]] = {"candidate": lambda: cand_be.infer(cf),
                                                "baseline": lambda: base_be.infer(bf)}
        interleaved_samples(fns, warmup=warmup, iters=0)
        t0 = time.perf_counter()
        next_check = min_rounds
        while len(cs) < max_rounds:
            # 10-round chunks (even: each model goes first in half the rounds) keep the time bound tight
            s = interleaved_samples(fns, warmup=0, iters=min(10, max_rounds - len(cs)))
            cs += s["candidate"]
            bs += s["baseline"]
            if time.perf_counter() - t0 >= seconds:
                stopped = "seconds"
                break
            if allowed is not None and len(cs) >= next_check:
                next_check = len(cs) + max(check_every, len(cs) // 4)  # fewer looks as they cost more
                _, lo, hi = ratio_interval(np.asarray(cs), np.asarray(bs), confidence=EARLY_CONFIDENCE, block=block,
                                           resamples=1000)
                if lo > allowed or hi < allowed:
                    stopped = "decided"
                    break
    finally:
        elapsed = time.perf_counter() - t0
        cand_be.close()
        base_be.close()
    c, b = np.asarray(cs), np.asarray(bs)
    ratio, lo, hi = ratio_interval(c, b, confidence=confidence, block=block)
    return LatencyComparison(float(np.median(c)), float(np.median(b)), ratio, lo, hi, int(c.size), n, confidence,
                             elapsed, stopped, float(np.percentile(c, 99)),
                             float(np.percentile(b, 99)))
