"""`edgevision bench MODEL [--source FILE]`: model latency and stream efficiency, runtime only.

Without a source: batch-1 latency of the model on random input (median / p90 / p99).

With a source (a video file or folder): in one process, on the same loaded sessions, alternately
(``rounds`` times, so noise from a shared machine hits all alike)

- full-pipeline throughput: the lossless ``Pipeline`` over the source (decode -> preprocess -> infer ->
  postprocess -> typed results), steady state from the first result to the last;
- backend-only throughput: ``infer`` back to back on frames of that source, preprocessed up front, both
  with the pipeline's inference replicas and with one session using every core; the better is
  ``backend_fps``;

and reports the medians and ``efficiency = pipeline_fps / backend_fps``: how much of the engine's speed
survives the decoding and pre/post-processing that compete with it for the same cores. Also
``efficiency_single_session``: the pipeline against one session looping on every core (the plain
"backend-only" loop a user would write); on a CPU where two replicas beat that loop, it is the looser ratio.

With a live source (camera, stream, paced ``synthetic://``): ``bench_live`` runs the newest-frame pipeline for
``seconds`` and reports capture -> result latency (p50 / p99, and the median of each tenth of the run, to show
whether it grows) against the run's inference time: the overload check of a deployment whose source is
faster than its model.

Measured on the 2-core development VM (``edgevision bench B --source clip.mp4 --json``, 640x480 mp4v, the
built-in edgedet-n): one ONNX Runtime session on both cores loses every millisecond another stage takes
from it (its threads meet at each operator), so the pipeline reached 0.94 (640 px) and 0.81 (256 px) of
backend speed; two single-thread replicas run 2-15% faster as a backend and let decode fit in between
(see ``pipeline.py``).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .backends import open_backend
from .benchmark import measure, summarize
from .bundle import Bundle
from .errors import UserError
from .model_plan import load_model, plan_inference
from .pipeline import Pipeline
from .predictor import Predictor
from .sources import open_source

__all__ = ["bench_bundle", "bench_live", "bench_stream"]


def _threads(threads: int) -> int:
    return threads or (os.cpu_count() or 1)


def bench_bundle(path: str | Path | Bundle, *, warmup: int = 10, iters: int = 100, threads: int = 0,
                 backend: str = "auto") -> dict[str, Any]:
    """Batch-1 latency of the model (bundle or bare ONNX) on random input; returns a JSON-ready dict."""
    bundle = load_model(path)
    spec = bundle.sidecar.input
    n = _threads(threads)
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


def _backend_fps(preds: list[Predictor], tensors: list[np.ndarray], n: int) -> tuple[float, list[float]]:
    """Frames per second of ``n`` back-to-back infers spread over the replicas (one thread each)."""
    samples: list[float] = []
    per = max(1, n // len(preds))

    def work(k: int) -> None:
        for i in range(per):
            t0 = time.perf_counter()
            preds[k].infer(tensors[(i * len(preds) + k) % len(tensors)])
            samples.append((time.perf_counter() - t0) * 1000.0)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(preds))]
    t_start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return per * len(preds) / (time.perf_counter() - t_start), samples


def bench_live(path: str | Path | Bundle, source: str, *, seconds: float = 30.0, threads: int = 0,
               backend: str = "auto", fresh_frames: bool = True) -> dict[str, Any]:
    """Newest-frame pipeline on a live ``source`` for ``seconds``: latency vs inference (module docstring)."""
    bundle = load_model(path)
    pipe = Pipeline(bundle, open_source(source), drop_policy="newest", threads=threads, backend=backend,
                    fresh_frames=fresh_frames, status=False)
    timer = threading.Timer(seconds, pipe.stop)
    rows: list[tuple[float, float]] = []
    t0 = time.monotonic()
    timer.start()
    try:
        for det in pipe:
            rows.append((det.meta["t_result"] - t0, det.meta["latency_ms"]))
    finally:
        timer.cancel()
    if not rows:
        raise UserError(f"{source}: no results in {seconds:g} s (is the source delivering frames?)")
    snap = pipe.metrics.snapshot()
    t = np.array([r[0] for r in rows])
    lat = np.array([r[1] for r in rows])
    tenth = np.minimum((t / max(seconds, float(t.max())) * 10).astype(int), 9)  # which tenth of the run
    windows = [round(float(np.median(lat[tenth == k])), 3) for k in range(10) if (tenth == k).any()]
    infer = float(snap["stages"]["infer"]["p50"])
    p50 = float(np.median(lat))
    return {
        "bundle": str(bundle.root), "backend": snap.get("backend"), "source": source, "seconds": seconds,
        "fresh_frames": fresh_frames, "results": len(rows), "dropped": snap["dropped"],
        "results_fps": round(len(rows) / seconds, 2), "infer_ms_p50": round(infer, 3),
        "latency_ms": {"p50": round(p50, 3), "p99": round(float(np.percentile(lat, 99)), 3)},
        "latency_vs_infer": round(p50 / infer, 4) if infer > 0 else None,
        "latency_ms_p50_windows": windows, "stages": snap["stages"],
    }


def bench_stream(path: str | Path | Bundle, source: str, *, frames: int | None = None, rounds: int = 3,
                 warmup: int = 5, threads: int = 0, backend: str = "auto", replicas: int | None = None,
                 queue_size: int = 4) -> dict[str, Any]:
    """Backend-only vs full-pipeline throughput on ``source`` (see the module docstring).

    The pipeline runs as ``edgevision run`` would on a file (``plan_inference``: possibly two replicas).
    ``backend_fps`` is the best of that same replica set and of one session using every core, each fed
    back to back, so ``efficiency`` never flatters the pipeline with a weak baseline.
    """
    bundle = load_model(path)
    n_threads = _threads(threads)
    k, opts = plan_inference(bundle.model_path, backend, throughput=True, threads=n_threads, replicas=replicas)
    preds = [Predictor(bundle, open_backend(bundle.model_path, kind=backend, **opts)) for _ in range(k)]
    single = preds if k == 1 else [Predictor(bundle, open_backend(bundle.model_path, kind=backend,
                                                                  **plan_inference(bundle.model_path, backend,
                                                                                   throughput=False,
                                                                                   threads=n_threads,
                                                                                   replicas=1)[1]))]
    try:
        with open_source(source) as src:
            if src.is_live:
                raise UserError(f"{source}: bench --source needs a file or folder (a live source has no fixed "
                                "frame count to compare)")
            images = [f.image for _, f in zip(range(8), src, strict=False)]
        if not images:
            raise UserError(f"{source}: no frames")
        tensors = [preds[0].preprocess(img)[0] for img in images]
        for p in {id(p): p for p in preds + single}.values():
            for i in range(warmup):
                p.infer(tensors[i % len(tensors)])
        runs: dict[str, list[float]] = {"pipeline": [], "replicas": [], "single": []}
        lat: list[float] = []
        snap: dict[str, Any] = {}
        for _ in range(max(1, rounds)):
            snap = Pipeline(preds, open_source(source), drop_policy="lossless", max_frames=frames,
                            queue_size=queue_size).run()
            if snap["frames"] < 2:
                raise UserError(f"{source}: need at least 2 frames to time the pipeline, got {snap['frames']}")
            runs["pipeline"].append(snap["fps_avg"])
            fps, samples = _backend_fps(preds, tensors, snap["frames"])
            runs["replicas"].append(fps)
            lat.extend(samples)
            if single is not preds:
                runs["single"].append(_backend_fps(single, tensors, snap["frames"])[0])
    finally:
        for p in {id(p): p for p in preds + single}.values():
            p.close()
    med = {key: statistics.median(v) for key, v in runs.items() if v}
    backend_fps = max(med["replicas"], med.get("single", 0.0))
    spec = bundle.sidecar.input
    return {
        "bundle": str(bundle.root), "backend": preds[0].backend.name, "threads": n_threads, "replicas": k,
        "intra_op_threads": opts.get("intra_op_threads"), "input_shape": [1, 3, spec.height, spec.width],
        "source": source, "frames": snap["frames"], "rounds": len(runs["pipeline"]),
        "backend_fps": round(backend_fps, 2), "pipeline_fps": round(med["pipeline"], 2),
        "efficiency": round(med["pipeline"] / backend_fps, 4),
        "efficiency_single_session": round(med["pipeline"] / med.get("single", med["replicas"]), 4),
        "backend_fps_replicas": round(med["replicas"], 2),
        "backend_fps_single_session": round(med.get("single", med["replicas"]), 2),
        "runs_fps": {key: [round(x, 2) for x in v] for key, v in runs.items() if v},
        "backend_latency_ms": summarize(lat).to_dict(),
        "stages": snap["stages"], "latency_ms": snap["latency_ms"],
    }
