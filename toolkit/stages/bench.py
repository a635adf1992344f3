"""Bench stage: batch-1 latency of the same model on torch eager and on ONNX Runtime, side by side.

Everything runs in one process on the same input with the same thread count. The ONNX Runtime candidates
(the variant and, for compressed variants, the original FP32 model) are interleaved round-robin
(``runtime.benchmark.measure``) in a run of their own, so their ratio is meaningful on a shared, noisy
machine. Torch runs apart: its OpenMP pool keeps spinning after each call and slowed whichever ONNX
Runtime session came next (measured, 3 repeats: a pruned model read 0.59-0.61x of the original when
interleaved with torch, 0.57x without), which skewed the ratio the compression targets are judged on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgevision.runtime.backends.onnxruntime import OrtBackend
from edgevision.runtime.benchmark import measure

from .export import INPUT_NAME


def bench_latency(
    model: nn.Module | None,
    onnx_path: Path,
    input_size: int,
    *,
    backends: list[str],
    warmup: int = 10,
    iters: int = 50,
    threads: int = 0,
    reference_onnx: Path | None = None,
) -> dict[str, dict[str, float]]:
    """Median / p90 / p99 (ms) per backend name (``torch-cpu``, ``onnxruntime-cpu``); ``torch-cpu`` needs
    ``model`` (an ONNX-only model has none).

    With ``reference_onnx`` (the uncompressed FP32 model) it is timed in the same interleaved run as
    ``onnxruntime-cpu-original`` and ``onnxruntime-cpu`` gains ``vs_original`` (this / original medians).
    """
    n = threads or (os.cpu_count() or 1)
    x = np.random.default_rng(0).random((1, 3, input_size, input_size), dtype=np.float32)
    fns: dict[str, Callable[[], object]] = {}
    torch_fns: dict[str, Callable[[], object]] = {}
    prev_threads = torch.get_num_threads()
    ort = ref = None
    try:
        if "torch-cpu" in backends and model is not None:
            torch.set_num_threads(n)
            xt = torch.from_numpy(x)
            net = model.eval()

            def run_torch() -> object:
                with torch.inference_mode():
                    return net(xt)

            torch_fns["torch-cpu"] = run_torch
        if "onnxruntime-cpu" in backends:
            ort = OrtBackend(onnx_path, providers=["CPUExecutionProvider"], intra_op_threads=n, spin=False)
            feed = {INPUT_NAME: x}
            fns["onnxruntime-cpu"] = lambda: ort.infer(feed)
            if reference_onnx is not None:
                ref = OrtBackend(reference_onnx, providers=["CPUExecutionProvider"], intra_op_threads=n, spin=False)
                fns["onnxruntime-cpu-original"] = lambda: ref.infer(feed)
        stats = measure(fns, warmup=warmup, iters=iters) if fns else {}
        if torch_fns:
            stats.update(measure(torch_fns, warmup=warmup, iters=iters))
    finally:
        torch.set_num_threads(prev_threads)
        for b in (ort, ref):
            if b is not None:
                b.close()
    out: dict[str, dict[str, float]] = {name: s.to_dict() for name, s in stats.items()}
    if "torch-cpu" in out and "onnxruntime-cpu" in out:
        out["onnxruntime-cpu"]["vs_torch"] = round(out["onnxruntime-cpu"]["median"] / out["torch-cpu"]["median"], 4)
    if "onnxruntime-cpu-original" in out:
        out["onnxruntime-cpu"]["vs_original"] = round(
            out["onnxruntime-cpu"]["median"] / out["onnxruntime-cpu-original"]["median"], 4)
    return out
