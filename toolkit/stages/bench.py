"""Bench stage: batch-1 latency of the same model on torch eager and on ONNX Runtime, side by side.

Everything runs in one process on the same input with the same thread count. The ONNX Runtime candidates
(the variant and, for compressed variants, the original FP32 model) are interleaved round-robin
(``runtime.benchmark.time_backends``) in a run of their own, so their ratio is meaningful on a shared, noisy
machine. Torch runs apart: its OpenMP pool keeps spinning after each call and slowed whichever ONNX
Runtime session came next (measured, 3 repeats: a pruned model read 0.59-0.61x of the original when
interleaved with torch, 0.57x without), which skewed the ratio the compression targets are judged on.

The method (threads, warm-up, iterations, order, session options, input) is `edgevision bench`'s:
``runtime.benchmark.TimingSettings`` opened and timed by ``runtime.benchmark.time_backends``; every entry
records it under ``timing`` (issue 16: the two used to differ and read 9.4 vs 7.5 ms on one model).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgevision.runtime.backends.onnxruntime import OrtBackend
from edgevision.runtime.benchmark import (
    DEFAULT_ITERS,
    DEFAULT_WARMUP,
    LatencyStats,
    TimingSettings,
    random_input,
    time_backends,
    time_calls,
)

from .export import INPUT_NAME


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def bench_latency(
    model: nn.Module | None,
    onnx_path: Path,
    input_size: int,
    *,
    backends: list[str],
    warmup: int = DEFAULT_WARMUP,
    iters: int = DEFAULT_ITERS,
    threads: int = 0,
    reference_onnx: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Median / p90 / p99 (ms) per backend name (``torch-cpu``, ``onnxruntime-cpu``) and the ``timing``
    settings of each; ``torch-cpu`` needs ``model`` (an ONNX-only model has none).

    With ``reference_onnx`` (the uncompressed FP32 model) it is timed in the same interleaved run as
    ``onnxruntime-cpu-original`` and ``onnxruntime-cpu`` gains ``vs_original`` (this / original medians).
    """
    settings = TimingSettings.make(threads, warmup, iters)
    (log or _stderr)(f"[bench] {settings.describe()}")  # the build logs to stderr too
    x = random_input((1, 3, input_size, input_size))
    sessions: dict[str, OrtBackend] = {}
    stats: dict[str, LatencyStats] = {}
    prev_threads = torch.get_num_threads()
    try:
        if "onnxruntime-cpu" in backends:
            opts = settings.backend_options()
            sessions["onnxruntime-cpu"] = OrtBackend(onnx_path, providers=["CPUExecutionProvider"], **opts)
            if reference_onnx is not None:
                sessions["onnxruntime-cpu-original"] = OrtBackend(reference_onnx, providers=["CPUExecutionProvider"],
                                                                  **opts)
            stats = time_backends(sessions, {name: {INPUT_NAME: x} for name in sessions}, settings)
        if "torch-cpu" in backends and model is not None:
            torch.set_num_threads(settings.threads)
            xt = torch.from_numpy(x)
            net = model.eval()

            def run_torch() -> object:
                with torch.inference_mode():
                    return net(xt)

            stats.update(time_calls({"torch-cpu": run_torch}, settings))
    finally:
        torch.set_num_threads(prev_threads)
        for b in sessions.values():
            b.close()
    timing = settings.to_dict()
    out: dict[str, dict[str, Any]] = {name: {**s.to_dict(), "timing": timing} for name, s in stats.items()}
    if "torch-cpu" in out and "onnxruntime-cpu" in out:
        out["onnxruntime-cpu"]["vs_torch"] = round(out["onnxruntime-cpu"]["median"] / out["torch-cpu"]["median"], 4)
    if "onnxruntime-cpu-original" in out:
        out["onnxruntime-cpu"]["vs_original"] = round(
            out["onnxruntime-cpu"]["median"] / out["onnxruntime-cpu-original"]["median"], 4)
    return out
