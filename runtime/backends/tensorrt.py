"""TensorRT backend: a serialized plan run through pycuda, behind the ``Backend`` interface.

Hand-written because NVIDIA ships no pip library that wraps engine execution with pycuda (Polygraphy's
runners use cuda-python/torch, and its samples' ``common.py`` is not a package): this module is the
small, documented sequence from the TensorRT Python API (8.5 through 11.x, name-based I/O only):
``Runtime.deserialize_cuda_engine`` -> ``create_execution_context`` -> per I/O tensor ``get_tensor_name``
/ ``get_tensor_mode`` / ``get_tensor_shape`` / ``get_tensor_dtype`` (``trt.nptype``) -> pinned host
buffers (``pagelocked_empty``), device buffers (``mem_alloc``) bound once with ``set_tensor_address``
-> per call ``set_input_shape`` (dynamic shapes within optimization profile 0), ``memcpy_htod_async``,
``execute_async_v3(stream.handle)``, ``memcpy_dtoh_async``, one ``Stream.synchronize``.

All decisions (what to allocate, whether a feed's shapes fit, whether the engine matches this GPU and
TensorRT) live in ``trt_plan`` as pure, tested functions; version gates in ``trt_version``.

Dtypes are mapped by ``DataType`` member name, not ``trt.nptype``: TensorRT 8.5's ``nptype`` table names
``np.bool``, which numpy >= 1.24 removed, so the call raises AttributeError on JetPack 5 with a current numpy.

CUDA context (pycuda): each backend owns one context (``Device(n).make_context()``), made current only while
the backend works: every call pushes it and pops it again, so two backends created in one thread never run
under each other's context, and a call from any thread runs under the right one. A lock serialises calls
(one TensorRT execution context and one set of buffers cannot serve two threads at once). ``close`` pushes
the context before ``detach``: pycuda destroys a context that is current in the calling thread, but silently
leaks one that belongs to another thread and is not current (``context::detach`` in pycuda's cuda.hpp), which
is what ``close`` from another thread or ``__del__`` on the garbage collector's thread used to do.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InternalError, UserError, dependency_error
from ..preprocess import InputSpecLike, Letterbox
from .base import Backend
from .trt_plan import (
    FLAG_VERSION_COMPATIBLE,
    BufferSpec,
    EngineRecord,
    TensorInfo,
    check_engine_compat,
    plan_buffers,
    resolve_input_shapes,
)
from .trt_version import require_supported

__all__ = ["TrtBackend"]


# TensorRT's Python module is not a pip dependency (the registry's wheels do not build for Jetson): it comes
# with JetPack, in the system site-packages, which the venv must see.
TENSORRT_HINT = ("`sudo apt install python3-libnvinfer` on Jetson (JetPack's own; make the venv with "
                 "`python3 -m venv --system-site-packages`), `pip install tensorrt` for your CUDA elsewhere")


def _import() -> tuple[Any, Any]:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise dependency_error(exc, "tensorrt", "tensorrt", hint=TENSORRT_HINT) from exc
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise dependency_error(exc, "pycuda", "tensorrt") from exc
    return trt, cuda


# TensorRT DataType member -> numpy dtype name; the others (BF16, FP8, INT4, FP4) have no numpy type and keep
# TensorRT's name, which ``trt_plan`` refuses with a one-line error.
_NUMPY_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32", "INT64": "int64",
                 "BOOL": "bool", "UINT8": "uint8", "DOUBLE": "float64"}


def _dtype_name(dt: Any) -> str:
    name = str(getattr(dt, "name", "") or str(dt).rsplit(".", 1)[-1])
    return _NUMPY_DTYPES.get(name.upper(), name.lower())


def probe(device: int = 0) -> tuple[str, str]:
    """(TensorRT version, GPU SM as "8.7") of this machine, without creating a CUDA context."""
    trt, cuda = _import()
    dev = TrtBackend._device(cuda, device)
    return str(trt.__version__), "{}.{}".format(*dev.compute_capability())


class _EngineView:
    """``trt_plan.EngineView`` over a TensorRT engine + execution context."""

    def __init__(self, trt: Any, engine: Any, context: Any) -> None:
        self._trt, self._engine, self._context = trt, engine, context

    def tensors(self) -> list[TensorInfo]:
        trt, eng = self._trt, self._engine
        out = []
        for i in range(eng.num_io_tensors):
            name = eng.get_tensor_name(i)
            is_input = eng.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = tuple(int(d) for d in eng.get_tensor_shape(name))
            profile = None
            if is_input and any(d < 0 for d in shape):
                lo, opt, hi = eng.get_tensor_profile_shape(name, 0)
                profile = (tuple(lo), tuple(opt), tuple(hi))
            out.append(TensorInfo(name, is_input, shape, _dtype_name(eng.get_tensor_dtype(name)), profile))
        return out

    def output_shapes(self, input_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        infos = self.tensors()
        dynamic = {t.name for t in infos if t.is_input and any(d < 0 for d in t.shape)}
        for name, shape in input_shapes.items():
            if name in dynamic and not self._context.set_input_shape(name, shape):
                raise UserError(f"TensorRT refused shape {list(shape)} for input {name!r}")
        return {t.name: tuple(int(d) for d in self._context.get_tensor_shape(t.name)) for t in infos if not t.is_input}


class TrtBackend(Backend):
    """A TensorRT plan file on one GPU. ``sidecar_engine`` (the bundle's ``EngineSpec``) is checked
    against this machine's TensorRT and GPU SM before the plan is deserialized."""

    name = "tensorrt"
    device_preprocess = True

    def __init__(
        self,
        engine_path: str | Path,
        *,
        sidecar_engine: EngineRecord | None = None,
        device: int = 0,
        bundle_dir: str | Path | None = None,
        device_profile: str | None = None,
    ) -> None:
        self.engine_path = Path(engine_path)
        self._ctx: Any = None
        self._bufs: dict[str, tuple[BufferSpec, Any, Any]] = {}
        trt, cuda = _import()
        self._trt, self._cuda = trt, cuda
        if not self.engine_path.is_file():
            raise UserError(f"{self.engine_path}: TensorRT engine file not found")
        self.tensorrt_version = str(trt.__version__)
        require_supported(self.tensorrt_version)
        dev = self._device(cuda, device)
        self.gpu_sm = "{}.{}".format(*dev.compute_capability())
        if sidecar_engine is not None:
            check_engine_compat(
                sidecar_engine,
                self.tensorrt_version,
                self.gpu_sm,
                bundle=bundle_dir or self.engine_path.parent,
                this_profile=device_profile,
            )
        self._version_compatible = sidecar_engine is not None and FLAG_VERSION_COMPATIBLE in sidecar_engine.flags
        self._lock = threading.Lock()
        self._ctx = dev.make_context()  # pushed: current in this thread until the pop below
        try:
            try:
                self._load(trt, cuda)
            finally:
                cuda.Context.pop()  # from now on current only inside _current()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _device(cuda: Any, index: int) -> Any:
        try:
            cuda.init()
            count = cuda.Device.count()
        except cuda.Error as exc:
            raise UserError(f"no usable CUDA driver/GPU for TensorRT: {exc}") from exc
        if not 0 <= index < count:
            raise UserError(f"CUDA device {index} does not exist ({count} GPU(s) visible)")
        return cuda.Device(index)

    def _load(self, trt: Any, cuda: Any) -> None:
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if self._version_compatible:  # the plan embeds its own lean runtime, which TensorRT runs only if allowed
            self._runtime.engine_host_code_allowed = True
        self._engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self._engine is None:
            raise UserError(
                f"{self.engine_path}: TensorRT {self.tensorrt_version} could not deserialize this "
                "engine (built with another TensorRT version or GPU, or not a plan file)"
            )
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise InternalError(f"{self.engine_path}: could not create a TensorRT execution context")
        self.plan = plan_buffers(_EngineView(trt, self._engine, self._context))
        for spec in (*self.plan.inputs, *self.plan.outputs):
            host = cuda.pagelocked_empty(spec.size, np.dtype(spec.dtype))
            dev = cuda.mem_alloc(max(spec.nbytes, 1))
            self._bufs[spec.name] = (spec, host, dev)
            if not self._context.set_tensor_address(spec.name, int(dev)):
                raise InternalError(f"TensorRT refused the buffer address for tensor {spec.name!r}")
        self._shapes = {b.name: b.alloc_shape for b in self.plan.inputs}  # set by plan_buffers
        self._stream = cuda.Stream()
        self.inputs = [b.tensor_spec() for b in self.plan.inputs]
        self.outputs = [b.tensor_spec() for b in self.plan.outputs]
        self._gpu_pre: Any = None
        self._gpu_module: Any = None
        self._frame: tuple[Any, Any, int] | None = None  # pinned host, device, capacity (bytes)

    @contextlib.contextmanager
    def _current(self) -> Iterator[None]:
        """Hold the lock and make this backend's context current in the calling thread for the block."""
        with self._lock:
            if self._ctx is None:
                raise UserError(f"{self.engine_path}: TensorRT backend used after close()")
            self._ctx.push()
            try:
                yield
            finally:
                self._cuda.Context.pop()

    def _set_shapes(self, shapes: dict[str, tuple[int, ...]]) -> None:
        for name, shape in shapes.items():  # static inputs never differ from their one shape
            if self._shapes.get(name) != shape:
                if not self._context.set_input_shape(name, shape):
                    raise UserError(f"TensorRT refused shape {list(shape)} for input {name!r}")
                self._shapes[name] = shape

    def _execute_and_fetch(self) -> dict[str, np.ndarray]:
        cuda, stream = self._cuda, self._stream
        if not self._context.execute_async_v3(stream_handle=stream.handle):
            raise InternalError(f"{self.engine_path}: TensorRT execution failed (see the TensorRT log)")
        views = {}
        for spec in self.plan.outputs:
            _, host, dev = self._bufs[spec.name]
            shape = tuple(int(d) for d in self._context.get_tensor_shape(spec.name))
            n = int(np.prod(shape))
            if n > spec.size:
                raise InternalError(f"output {spec.name!r} shape {list(shape)} exceeds its buffer {spec.size}")
            cuda.memcpy_dtoh_async(host[:n], dev, stream)
            views[spec.name] = (host[:n], shape)
        stream.synchronize()
        return {name: h.reshape(shape).copy() for name, (h, shape) in views.items()}

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = {k: np.asarray(v) for k, v in feed.items()}
        shapes = resolve_input_shapes(self.plan, {k: a.shape for k, a in arrays.items()})
        with self._current():
            self._set_shapes(shapes)
            for name, arr in arrays.items():
                _, host, dev = self._bufs[name]
                staged = host[: arr.size].reshape(arr.shape)
                np.copyto(staged, arr, casting="unsafe")  # cast to the engine's dtype, like OrtBackend
                self._cuda.memcpy_htod_async(dev, host[: arr.size], self._stream)
            return self._execute_and_fetch()

    def infer_image(
        self,
        image: np.ndarray,
        spec: InputSpecLike | None = None,
        *,
        pad_value: int = 114,
        size: tuple[int, int] | None = None,
    ) -> tuple[dict[str, np.ndarray], Letterbox]:
        """One HxWx3 uint8 BGR frame -> outputs, with letterbox/normalisation/HWC->CHW on the GPU.

        ``spec`` (a bundle ``InputSpec``) gives mean/std/colour/scale; the engine's single input
        ``[N, 3, H, W]`` gives the size (or ``size`` when H/W are dynamic). Returns the outputs and the
        ``Letterbox`` that maps them back to source pixels.
        """
        img = np.ascontiguousarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise UserError(f"infer_image: expected an HxWx3 uint8 BGR frame, got {img.dtype} {list(img.shape)}")
        if len(self.plan.inputs) != 1 or len(self.plan.inputs[0].shape) != 4:
            raise UserError("infer_image needs an engine with one [N, 3, H, W] input; use infer() instead")
        inp = self.plan.inputs[0]
        out_h, out_w = size or (inp.shape[2], inp.shape[3])
        if out_h < 0 or out_w < 0:
            raise UserError(f"engine input {inp.name!r} has dynamic height/width; pass size=(h, w)")
        shape = resolve_input_shapes(self.plan, {inp.name: (1, 3, out_h, out_w)})
        with self._current():
            pre = self._preprocessor(img.shape[0], img.shape[1], int(out_h), int(out_w), spec, pad_value, inp.dtype)
            host, dev = self._stage_frame(img)
            self._cuda.memcpy_htod_async(dev, host, self._stream)
            pre.run(int(dev), int(self._bufs[inp.name][2]), self._stream)
            self._set_shapes(shape)
            return self._execute_and_fetch(), pre.letterbox

    def _stage_frame(self, img: np.ndarray) -> tuple[Any, Any]:
        if self._frame is None or self._frame[2] < img.nbytes:
            if self._frame is not None:
                self._frame[1].free()
            host = self._cuda.pagelocked_empty(img.nbytes, np.uint8)
            self._frame = (host, self._cuda.mem_alloc(img.nbytes), img.nbytes)
        host = self._frame[0][: img.nbytes]
        np.copyto(host, img.reshape(-1))
        return host, self._frame[1]

    def _preprocessor(
        self, h: int, w: int, out_h: int, out_w: int, spec: InputSpecLike | None, pad: int, dtype: str
    ) -> Any:
        from ..preprocess_gpu import GpuLetterbox

        mean: Sequence[float] = spec.mean if spec is not None else (0.0, 0.0, 0.0)
        std: Sequence[float] = spec.std if spec is not None else (1.0, 1.0, 1.0)
        rgb = spec.color == "rgb" if spec is not None else True
        scale = spec.scale if spec is not None else 1 / 255
        key = (h, w, out_h, out_w, pad, tuple(mean), tuple(std), rgb, scale, dtype)
        if self._gpu_pre is None or self._gpu_pre[0] != key:
            if self._gpu_pre is not None:
                self._gpu_pre[1].close()
            pre = GpuLetterbox(
                h, w, out_h, out_w, pad, mean, std, rgb, scale=scale, dtype=dtype, module=self._gpu_module
            )
            self._gpu_module = pre.module
            self._gpu_pre = (key, pre)
        return self._gpu_pre[1]

    def close(self) -> None:
        """Free the buffers and destroy the context; safe from any thread, idempotent."""
        lock = getattr(self, "_lock", None)
        if lock is None:  # __init__ failed before the context existed
            return
        with lock:
            ctx = self._ctx
            if ctx is None:
                return
            self._ctx = None
            ctx.push()  # current here, whichever thread this is: detach then destroys it (and pops it)
            try:
                pre, frame = getattr(self, "_gpu_pre", None), getattr(self, "_frame", None)
                if pre is not None:
                    pre[1].close()
                if frame is not None:
                    frame[1].free()
                for _, _, dev in self._bufs.values():
                    dev.free()
            finally:
                # TensorRT objects go before their context
                self._bufs, self._gpu_pre, self._frame, self._gpu_module = {}, None, None, None
                self._context = self._engine = self._runtime = self._stream = None
                ctx.detach()

    def __del__(self) -> None:  # best effort; prefer close() / the context manager
        with contextlib.suppress(Exception):
            self.close()
