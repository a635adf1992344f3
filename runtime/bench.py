"""`edgevision bench BUNDLE`: model latency on this machine with only the runtime installed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .backends import open_backend
from .benchmark import measure
from .bundle import load_bundle


def bench_bundle(path: str | Path, *, warmup: int = 10, iters: int = 100, threads: int = 0,
                 backend: str = "auto") -> dict[str, Any]:
    """Batch-1 latency of the bundle's model on random input; returns a JSON-ready dict."""
    bundle = load_bundle(path)
    spec = bundle.sidecar.input
    n = threads or (os.cpu_count() or 1)
    be = open_backend(bundle.model_path, kind=backend, intra_op_threads=n)
    try:
        x = np.random.default_rng(0).random((1, 3, spec.height, spec.width), dtype=np.float32)
        feed = {spec.name: x.astype(spec.dtype)}
        stats = measure({be.name: lambda: be.infer(feed)}, warmup=warmup, iters=iters)[be.name]
    finally:
        be.close()
    return {"bundle": str(bundle.root), "backend": be.name, "threads": n,
            "input_shape": [1, 3, spec.height, spec.width], "latency_ms": stats.to_dict(),
            "fps": round(1000.0 / stats.median, 2)}
