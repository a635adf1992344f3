"""ONNX Runtime backend: CPU everywhere, CUDA where the onnxruntime-gpu wheel and a GPU are present.

A thin wrapper, not a re-implementation: it only pins the session options the benchmarks assume
(full graph optimisation, sequential execution, optional intra-op thread count), lets an INT8 Q/DQ model
use the CPU's fused int8 kernels (``ort_int8``: exact in-memory rewrites of the TensorRT-placed model),
turns onnxruntime's load errors into one-line ``UserError``s that name the file, and describes the I/O
as ``TensorSpec``s.
``onnxruntime`` is imported when a backend is opened, never at ``import edgevision.runtime``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InternalError, UserError, dependency_error
from .base import Backend, TensorSpec
from .ort_int8 import needs_u8_activations, ort_cpu_model

__all__ = ["OrtBackend", "default_providers"]

_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"

# onnxruntime type strings -> numpy dtype names ("tensor(float)" -> "float32")
_DTYPES = {"float": "float32", "double": "float64", "string": "object"}


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise dependency_error(exc, "onnxruntime", "runtime") from exc
    return onnxruntime


def default_providers() -> list[str]:
    """CUDA EP first when this onnxruntime build has it, then CPU."""
    available = _ort().get_available_providers()
    return [_CUDA, _CPU] if _CUDA in available else [_CPU]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from x failed:Protobuf parsing failed."
    return text.rsplit(" : ", 1)[-1].strip()


def _spec(arg: Any) -> TensorSpec:
    kind = str(arg.type)
    if kind.startswith("tensor(") and kind.endswith(")"):  # no str.removeprefix on Python 3.8
        kind = kind[len("tensor(") : -1]
    shape = tuple(d if isinstance(d, int) else (d or "?") for d in (arg.shape or ()))
    return TensorSpec(arg.name, shape, _DTYPES.get(kind, kind))


class OrtBackend(Backend):
    """An ``onnxruntime.InferenceSession`` behind the ``Backend`` interface.

    ``cpu_int8_rewrites`` False runs an INT8 Q/DQ model literally, as TensorRT's explicit quantization
    computes it (no CPU-only Q/DQ pairs, signed activations): slower on a CPU, but the accuracy a TensorRT
    engine of the same file gets, up to kernel rounding.
    """

    name = "onnxruntime"

    def __init__(
        self,
        model_path: str | Path,
        providers: list[str] | None = None,
        intra_op_threads: int | None = None,
        spin: bool = True,
        cpu_int8_rewrites: bool = True,
    ) -> None:
        ort = _ort()
        self.model_path = Path(model_path)
        if not self.model_path.exists():
            raise UserError(f"{self.model_path}: model file not found")
        if not self.model_path.is_file():
            raise UserError(f"{self.model_path}: is not a file (expected an .onnx model)")
        available = ort.get_available_providers()
        wanted = list(providers) if providers is not None else default_providers()
        unknown = [p for p in wanted if p not in available]
        if unknown or not wanted:
            raise UserError(
                f"{self.model_path}: execution provider(s) {unknown or wanted} not available in this "
                f"onnxruntime build; available: {available}"
            )
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3  # errors only: fused INT8 models log one warning per dropped initializer
        if intra_op_threads is not None:
            so.intra_op_num_threads = int(intra_op_threads)
        if not spin:  # side-by-side timing: idle threads must not busy-wait on the other candidate's cores
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        errors = ort.capi.onnxruntime_pybind11_state
        load_errors = tuple(
            getattr(errors, n)
            for n in ("InvalidProtobuf", "InvalidArgument", "InvalidGraph", "Fail", "NoSuchFile",
                      "NoModel", "NotImplemented", "EPFail", "RuntimeException")
            if hasattr(errors, n)
        )
        source: str | bytes = str(self.model_path)
        if wanted[:1] == [_CPU] and cpu_int8_rewrites:
            source = ort_cpu_model(self.model_path, u8=needs_u8_activations(wanted)) or source
        try:
            self._session: Any = ort.InferenceSession(source, so, providers=wanted)
        except load_errors as exc:
            raise UserError(
                f"{self.model_path}: not a valid ONNX model for onnxruntime {ort.__version__} "
                f"({_first_line(exc)})"
            ) from None
        self.inputs = [_spec(a) for a in self._session.get_inputs()]
        self.outputs = [_spec(a) for a in self._session.get_outputs()]
        self._out_names = [o.name for o in self.outputs]

    @property
    def providers(self) -> list[str]:
        """Execution providers the session actually uses (CUDA may have fallen back to CPU)."""
        return list(self._session.get_providers()) if self._session is not None else []

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once. Arrays are cast to each input's declared dtype (e.g. float32 -> float16)."""
        if self._session is None:
            raise InternalError(f"{self.model_path}: infer() called after close()")
        names = {i.name for i in self.inputs}
        if set(feed) != names:
            raise UserError(
                f"{self.model_path}: feed has inputs {sorted(feed)}, the model expects {sorted(names)}"
            )
        ready = {}
        for spec in self.inputs:
            arr = np.asarray(feed[spec.name])
            if spec.dtype != "object" and arr.dtype != np.dtype(spec.dtype):
                arr = arr.astype(spec.dtype)
            ready[spec.name] = np.ascontiguousarray(arr)
        try:
            outs = self._session.run(self._out_names, ready)
        except Exception as exc:  # onnxruntime raises bare pybind types (InvalidArgument, Fail, ...)
            shapes = {k: list(v.shape) for k, v in ready.items()}
            msg = f"{self.model_path}: inference failed for inputs {shapes}: {_first_line(exc)}"
            raise UserError(msg) from None
        return dict(zip(self._out_names, outs))

    def close(self) -> None:
        self._session = None

    def __repr__(self) -> str:
        return f"OrtBackend({str(self.model_path)!r}, providers={self.providers})"
