"""`edgevision bench MODEL [--source FILE]`: model latency and stream efficiency, runtime only.

Without a source: batch-1 latency of the model on random input (median / p90 / p99).

With a source (a video file or folder): in one process, on the same loaded sessions, alternately
(``rounds`` times, so noise from a shared machine hits all alike)

- full-pipeline throughput: the lossless ``Pipeline`` over the source (decode -> preprocess -> infer ->
  postprocess -> typed results), steady state from the first result to the last;
- backend-only throughput (``backend_fps``): one session using every core running ``infer`` back to back
  on frames of that source, preprocessed up front: the model alone, as a user runs it;
- the plain loop a user would write (``loop_fps``: read a frame, predict, repeat, on that same session);
- the pipeline's own replica set fed back to back (``backend_fps_replicas``);

and reports the medians, ``efficiency = pipeline_fps / backend_fps`` (how much of the model's speed
survives decoding and pre/post-processing competing with it for the same cores), ``efficiency_loop`` (the
plain loop's ratio) and ``efficiency_vs_best_backend`` (against the better of the two backend loops: on a
CPU the replicas can beat one session, and decode CPU time then caps this ratio below 1).

Why ``backend_fps`` is the one-session loop: that is the baseline the runtime issue's numbers use. Its
reference point, "a common Python loop reaches 0.87-0.92 on the 640 case here", is what the plain loop
measures against one session (0.90-0.91 for the 640x640 pose model and for edgedet-n at 640), not against
the best backend (0.85 / 0.84); against the best backend even a perfect pipeline is capped below the
issue's targets by the CPU that decoding takes from inference (``bench-stream`` prints both).

With a live source (camera, stream, paced ``synthetic://``): ``bench_live`` runs the newest-frame pipeline for
``seconds`` and reports capture -> result latency (p50 / p99, and the median of each tenth of the run, to show
whether it grows) against the run's inference time: the overload check of a deployment whose source is
faster than its model.

Measured on the 2-core development VM (``bash scripts/bench-stream``: 9 alternating rounds on a 640x480 mp4v
clip, ONNX Runtime CPU): ``efficiency`` 0.908 for the quickstart detector (256 px), 1.045 for the quickstart
pose model, 1.027 for a 640x640 pose model and 1.041 for edgedet-n at 640; the plain loop 0.70 / 0.81 / 0.90 /
0.91; against the best backend 0.78 / 0.82 / 0.96 / 0.94. The pipeline beats one session because its two
single-thread replicas do not wait for each other inside every operator the way one session's two threads
do when decoding takes a core (see ``pipeline.py``).
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .backends.choice import choose_backend
from .benchmark import DEFAULT_ITERS, DEFAULT_WARMUP, TimingSettings, random_input, summarize, time_backends
from .bundle import Bundle
from .errors import UserError
from .model_plan import load_model, model_label, plan_inference
from .pipeline import Pipeline
from .predictor import Predictor
from .sources import open_source

__all__ = ["bench_bundle", "bench_live", "bench_stream"]


def _threads(threads: int) -> int:
    return TimingSettings.make(threads).threads


def bench_bundle(path: str | Path | Bundle, *, warmup: int = DEFAULT_WARMUP, iters: int = DEFAULT_ITERS,
                 threads: int = 0, backend: str = "auto") -> dict[str, Any]:
    """Batch-1 latency of the model (bundle or bare ONNX) on random input; returns a JSON-ready dict.

    Timed by :func:`~edgevision.runtime.benchmark.time_backends` with the build's bench-stage settings
    (:class:`~edgevision.runtime.benchmark.TimingSettings`), recorded under ``timing``."""
    bundle = load_model(path)
    spec = bundle.sidecar.input
    settings = TimingSettings.make(threads, warmup, iters)
    be = choose_backend(bundle, backend).open(**settings.backend_options())
    try:
        # the checks `run` makes before its first result: the predictor's bundle checks, and one image through
        # preprocess -> model -> postprocess (an output the sidecar misdescribes fails here, not after timing)
        pred = Predictor(bundle, be)
        image = np.random.default_rng(0).integers(0, 256, (spec.height, spec.width, 3), dtype=np.uint8)
        tensor, lb = pred.preprocess(image)
        pred.postprocess(pred.infer(tensor), [lb])
        feed = {spec.name: random_input((1, 3, spec.height, spec.width), spec.dtype)}
        stats = time_backends({be.name: be}, {be.name: feed}, settings)[be.name]
    finally:
        be.close()
    return {"bundle": model_label(bundle), "backend": be.name, "threads": settings.threads,
            "input_shape": [1, 3, spec.height, spec.width], "latency_ms": stats.to_dict(),
            "fps": round(1000.0 / stats.median, 2), "timing": settings.to_dict()}


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


def _loop_fps(pred: Predictor, source: str, n: int) -> float:
    """Frames per second of the plain loop over the first ``n`` frames of ``source``: read, predict, repeat."""
    with open_source(source) as src:
        t0 = time.perf_counter()
        count = 0
        for _, frame in zip(range(n), src):
            pred.predict(frame.image)
            count += 1
    return count / max(time.perf_counter() - t0, 1e-9)


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
        "bundle": model_label(bundle), "backend": snap.get("backend"), "source": source, "seconds": seconds,
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

    The pipeline runs as ``edgevision run`` would on a file (``plan_inference``: possibly two replicas);
    ``backend_fps`` is one session using every core fed back to back (see the module docstring).
    """
    bundle = load_model(path)
    n_threads = _threads(threads)
    choice = choose_backend(bundle, backend)
    k, opts = plan_inference(choice.path, choice.kind, throughput=True, threads=n_threads, replicas=replicas)
    preds = [Predictor(bundle, choice.open(**opts)) for _ in range(k)]
    one_opts = plan_inference(choice.path, choice.kind, throughput=False, threads=n_threads, replicas=1)[1]
    single = preds if k == 1 else [Predictor(bundle, choice.open(**one_opts))]
    try:
        with open_source(source) as src:
            if src.is_live:
                raise UserError(f"{source}: bench --source needs a file or folder (a live source has no fixed "
                                "frame count to compare)")
            images = [f.image for _, f in zip(range(8), src)]
        if not images:
            raise UserError(f"{source}: no frames")
        tensors = [preds[0].preprocess(img)[0] for img in images]
        for p in {id(p): p for p in preds + single}.values():
            for i in range(warmup):
                p.infer(tensors[i % len(tensors)])
        runs: dict[str, list[float]] = {"pipeline": [], "loop": [], "replicas": [], "single": []}
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
            runs["loop"].append(_loop_fps(single[0], source, snap["frames"]))
    finally:
        for p in {id(p): p for p in preds + single}.values():
            p.close()
    med = {key: statistics.median(v) for key, v in runs.items() if v}
    single_fps = med.get("single", med["replicas"])
    best_fps = max(med["replicas"], single_fps)
    spec = bundle.sidecar.input
    return {
        "bundle": model_label(bundle), "backend": preds[0].backend.name, "threads": n_threads, "replicas": k,
        "intra_op_threads": opts.get("intra_op_threads"), "input_shape": [1, 3, spec.height, spec.width],
        "source": source, "frames": snap["frames"], "rounds": len(runs["pipeline"]),
        "backend_fps": round(single_fps, 2), "pipeline_fps": round(med["pipeline"], 2),
        "efficiency": round(med["pipeline"] / single_fps, 4),
        "loop_fps": round(med["loop"], 2), "efficiency_loop": round(med["loop"] / single_fps, 4),
        "backend_fps_replicas": round(med["replicas"], 2), "backend_fps_best": round(best_fps, 2),
        "efficiency_vs_best_backend": round(med["pipeline"] / best_fps, 4),
        "runs_fps": {key: [round(x, 2) for x in v] for key, v in runs.items() if v},
        "backend_latency_ms": summarize(lat).to_dict(),
        "stages": snap["stages"], "latency_ms": snap["latency_ms"],
    }
