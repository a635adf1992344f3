"""Backends behind one interface; ``open_backend`` picks one by name or by the model file's suffix.

For a bundle, ``choice.choose_backend`` decides first which file runs (its ONNX or the TensorRT plan that
matches this machine) and opens it through ``open_backend``.

Each backend module imports its heavy dependency (onnxruntime, tensorrt + pycuda) only when opened, so
importing this package is free.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, UserError
from .base import Backend, TensorSpec

__all__ = ["ENGINE_SUFFIXES", "KINDS", "Backend", "TensorSpec", "open_backend", "resolve_kind"]

KINDS = ("auto", "onnxruntime", "tensorrt")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def _open_tensorrt(model_path: Path, **opts: Any) -> Backend:
    # Hook for the TensorRT backend (a later issue adds backends/tensorrt.py with a ``TrtBackend``).
    try:
        module = importlib.import_module(f"{__name__}.tensorrt")
    except ModuleNotFoundError as exc:
        if exc.name not in (f"{__name__}.tensorrt", "tensorrt", "pycuda"):
            raise
        raise MissingDependencyError("tensorrt", "tensorrt") from exc
    backend: Backend = module.TrtBackend(model_path, **opts)
    return backend


def resolve_kind(model_path: str | Path, kind: str = "auto") -> str:
    """The backend ``open_backend`` would use: ``kind`` itself, or for "auto" the one the suffix implies."""
    if kind not in KINDS:
        raise UserError(f"unknown backend {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "auto":
        return "tensorrt" if Path(model_path).suffix.lower() in ENGINE_SUFFIXES else "onnxruntime"
    return kind


def open_backend(model_path: str | Path, kind: str = "auto", **opts: Any) -> Backend:
    """Open ``model_path`` with ``kind`` ("onnxruntime", "tensorrt", or "auto": by suffix —
    .engine/.plan/.trt -> TensorRT, anything else -> ONNX Runtime). ``opts`` go to the backend."""
    path = Path(model_path)
    kind = resolve_kind(path, kind)
    if kind == "tensorrt":
        return _open_tensorrt(path, **opts)
    from .onnxruntime import OrtBackend

    return OrtBackend(path, **opts)
