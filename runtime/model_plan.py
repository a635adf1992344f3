"""What a pipeline or benchmark runs: the model to load and how many inference replicas to open.

``load_model`` accepts a bundle directory, a bare ``.onnx`` file (its sidecar synthesised from the model's
own metadata) or a plain TensorRT plan with its bundle's sidecar beside it (that engine is then the one run).
``plan_inference`` splits the CPU budget between inference replicas: on a CPU-only ONNX Runtime with two or
more cores, throughput runs (files, folders, ``bench``) use two sessions with half the threads each, because
one session using every core stalls at each operator whenever decoding takes a core (the measurements are in
``pipeline.py`` and ``bench.py``); live sources use one session for the lowest latency. Several lossless
streams batched together keep the two sessions (each takes whole batches in turn): 4 synthetic 640x480 streams
through the quickstart detector at batch 4, 3 alternating runs, 127-132 results/s against 97-113 with one
session on both cores. Live streams keep one session: 4 cameras at 25 fps, capture -> result p50 50-60 ms
against 80 ms with one single-thread session (which also dropped 31% of the frames, against 4%).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .backends import ENGINE_SUFFIXES
from .bundle import Bundle
from .errors import UserError

__all__ = ["load_model", "plan_inference"]


def model_label(bundle: Bundle) -> str:
    """What a report calls the model: the file the user named (a bare ONNX, a plan), else the bundle folder."""
    if bundle.source_file is not None:
        return str(bundle.source_file)
    if bundle.engine_file is not None:
        return str(bundle.root / bundle.engine_file)
    return str(bundle.root)


def load_model(model: Bundle | str | Path) -> Bundle:
    """A bundle directory, a bare ``.onnx`` file (its sidecar synthesised from its metadata), or a plan file
    (``.engine``/``.plan``/``.trt``) whose bundle sidecar lies beside it."""
    if isinstance(model, Bundle):
        return model
    path = Path(model)
    if path.suffix.lower() == ".onnx" and path.is_file():
        from .onnx_meta import bundle_from_onnx

        return bundle_from_onnx(path)
    from .bundle import SIDECAR_NAME, load_bundle

    if path.suffix.lower() in ENGINE_SUFFIXES and path.is_file():
        if not (path.parent / SIDECAR_NAME).is_file():
            raise UserError(f"{path}: a TensorRT plan runs with its bundle's {SIDECAR_NAME} beside it (it says the "
                            f"input, classes and postprocessing); none in {path.parent}")
        bundle = load_bundle(path.parent)
        bundle.engine_file = path.name
        return bundle
    return load_bundle(path)


def plan_inference(model_path: str | Path, kind: str = "auto", *, throughput: bool, threads: int = 0,
                   replicas: int | None = None) -> tuple[int, dict[str, Any]]:
    """(number of inference replicas, backend options for each): see the module docstring.

    ``threads`` is the CPU budget for inference (0 = every core), split between the replicas; ``replicas``
    None picks 2 for ``throughput`` on a CPU-only ONNX Runtime with >= 2 cores, else 1.
    """
    from .backends import resolve_kind

    if resolve_kind(model_path, kind) != "onnxruntime":
        return replicas or 1, {}
    cores = threads or (os.cpu_count() or 1)
    if replicas is None:
        from .backends.onnxruntime import default_providers

        cpu_only = "CUDAExecutionProvider" not in default_providers()
        replicas = 2 if throughput and cpu_only and cores >= 2 else 1
    return replicas, {"intra_op_threads": max(1, cores // replicas)}
