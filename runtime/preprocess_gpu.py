"""GPU preprocessing for the TensorRT path: letterbox + colour order + normalisation + HWC -> CHW in one
CUDA kernel (``preprocess_gpu.cu``), so a Jetson's CPU only decodes frames.

Hand-written because no pip-installable library does this fused step with pycuda on JetPack (NVIDIA's
DALI / VPI / CV-CUDA are separate SDKs with their own packaging, and OpenCV's CUDA modules are not in
the pip wheels). The kernel source lives in its own file so that tests can compile it with whatever
CUDA compiler is at hand (CuPy's NVRTC on a GPU workstation, pycuda on a Jetson) and compare it with
the CPU path (``preprocess.letterbox`` + ``preprocess.to_tensor``).

Everything except the launch is pure host code: ``plan_letterbox`` reuses
``preprocess.letterbox_geometry`` (so the mapping back to source pixels is the CPU one) and computes the
resize tables in OpenCV's own arithmetic (``resize_tables``), which makes the GPU output match
``cv2.resize(INTER_LINEAR)`` exactly. ``GpuLetterbox`` compiles (pycuda ``SourceModule``, imported only
when used) and launches it on a stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError, dependency_error
from .preprocess import Letterbox, letterbox_geometry

__all__ = [
    "KERNELS",
    "GpuLetterbox",
    "LetterboxLaunch",
    "compile_module",
    "kernel_source",
    "plan_letterbox",
    "resize_tables",
]

KERNEL_FILE = "preprocess_gpu.cu"
KERNELS = {"float32": "letterbox_f32", "float16": "letterbox_f16", "uint8": "letterbox_u8"}
BLOCK = (32, 8, 1)
# every kernel takes (src, dst, xtab, ytab, *SCALAR_NAMES) in this order (see preprocess_gpu.cu)
SCALAR_NAMES = (
    "src_pitch", "out_h", "out_w", "top", "left", "new_h", "new_w", "pad", "swap_rb",
    "k0", "k1", "k2", "b0", "b1", "b2",
)  # fmt: skip
ARG_FORMAT = "PPPP" + "i" * 9 + "f" * 6  # pycuda prepared-call types of the same
_COEF_SCALE = 2048  # OpenCV INTER_RESIZE_COEF_SCALE (11-bit weights)


def kernel_source() -> str:
    """The CUDA source of the preprocessing kernels (packaged next to this module)."""
    return Path(__file__).with_name(KERNEL_FILE).read_text()  # (importlib.resources.files: Python 3.9+)


def resize_tables(src: int, dst: int, *, clamp_weights: bool) -> np.ndarray:
    """``[dst, 4]`` int32 rows ``(i0, i1, w0, w1)``: source indices and 11-bit weights for each output
    index, computed as OpenCV's ``resize`` (INTER_LINEAR, 8-bit) does: ``f = (float)((d + 0.5) * scale
    - 0.5)`` with ``scale = 1 / (dst / src)`` in double, ``s = floor(f)``, weights ``round((1 - f) * 2048)``
    and ``round(f * 2048)``. Columns (``clamp_weights=True``) snap to the edge pixel outside the image;
    rows keep their weights and only clamp the indices, as OpenCV does.
    """
    inv_scale = dst / src
    scale = 1.0 / inv_scale
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = (f - s.astype(np.float32)).astype(np.float32)
    if clamp_weights:
        low, high = s < 0, s >= src - 1
        f[low], s[low] = 0, 0
        f[high], s[high] = 0, src - 1
    one = np.float32(_COEF_SCALE)
    w0 = np.rint((np.float32(1) - f) * one)
    w1 = np.rint(f * one)
    i0, i1 = np.clip(s, 0, src - 1), np.clip(s + 1, 0, src - 1)
    return np.ascontiguousarray(np.stack([i0, i1, w0, w1], axis=1).astype(np.int32))


@dataclass(frozen=True)
class LetterboxLaunch:
    """Everything one kernel launch needs, computed on the host.

    Launch ``kernel`` with ``grid``/``block`` and arguments ``(src, dst, xtab, ytab, *scalars)``: ``src``
    the HxWx3 uint8 BGR frame (rows ``src_w * 3`` bytes apart), ``dst`` a ``[3, out_h, out_w]`` buffer of
    ``dtype``, ``xtab``/``ytab`` device copies of the tables here.
    """

    letterbox: Letterbox
    out_h: int
    out_w: int
    dtype: str
    kernel: str
    xtab: np.ndarray
    ytab: np.ndarray
    scalars: tuple[np.generic, ...]
    grid: tuple[int, int, int]
    block: tuple[int, int, int]

    @property
    def src_nbytes(self) -> int:
        return self.letterbox.src_h * self.letterbox.src_w * 3

    @property
    def dst_nbytes(self) -> int:
        return 3 * self.out_h * self.out_w * np.dtype(self.dtype).itemsize


def _triple(values: Sequence[float] | np.ndarray, what: str) -> tuple[float, float, float]:
    v = [float(x) for x in np.asarray(values, dtype=np.float64).ravel()]
    if len(v) != 3:
        raise UserError(f"GPU letterbox: {what} needs 3 values, got {values!r}")
    return v[0], v[1], v[2]


def plan_letterbox(
    in_h: int,
    in_w: int,
    out_h: int,
    out_w: int,
    pad: int = 114,
    mean: Sequence[float] | np.ndarray = (0.0, 0.0, 0.0),
    std: Sequence[float] | np.ndarray = (1.0, 1.0, 1.0),
    rgb: bool = True,
    *,
    scale: float = 1 / 255,
    dtype: str = "float32",
) -> LetterboxLaunch:
    """Kernel arguments for an ``in_h`` x ``in_w`` BGR frame -> ``[3, out_h, out_w]`` model input.

    Same conventions as ``preprocess.to_tensor``: ``(x * scale - mean) / std`` with mean/std in the
    model's channel order; ``rgb`` swaps B and R; ``dtype`` "uint8" only reorders.
    """
    if dtype not in KERNELS:
        raise UserError(f"GPU letterbox: dtype must be one of {sorted(KERNELS)}, got {dtype!r}")
    if not 0 <= int(pad) <= 255:
        raise UserError(f"GPU letterbox: pad value must be 0..255, got {pad}")
    m, s = _triple(mean, "mean"), _triple(std, "std")
    if any(v == 0 for v in s) or scale == 0:
        raise UserError(f"GPU letterbox: std and scale must be non-zero, got std {s}, scale {scale}")
    lb = letterbox_geometry(in_h, in_w, out_h, out_w)
    new_h, new_w = lb.resized_shape
    k = [np.float32(scale / sd) for sd in s]
    b = [np.float32(-mu / sd) for mu, sd in zip(m, s)]
    ints = (in_w * 3, out_h, out_w, int(lb.pad_y), int(lb.pad_x), new_h, new_w, int(pad), int(bool(rgb)))
    scalars = (*(np.int32(v) for v in ints), *k, *b)
    grid = (-(-out_w // BLOCK[0]), -(-out_h // BLOCK[1]), 1)
    return LetterboxLaunch(
        letterbox=lb,
        out_h=out_h,
        out_w=out_w,
        dtype=dtype,
        kernel=KERNELS[dtype],
        xtab=resize_tables(in_w, new_w, clamp_weights=True),
        ytab=resize_tables(in_h, new_h, clamp_weights=False),
        scalars=scalars,
        grid=grid,
        block=BLOCK,
    )


def _pycuda() -> tuple[Any, Any]:
    try:
        import pycuda.driver as cuda
        from pycuda.compiler import SourceModule
    except ImportError as exc:
        raise dependency_error(exc, "pycuda", "tensorrt", "needed for GPU preprocessing") from exc
    return cuda, SourceModule


def compile_module() -> Any:
    """Compile the kernels with pycuda for the current CUDA context's GPU (pycuda caches the binary)."""
    _, source_module = _pycuda()
    return source_module(kernel_source(), no_extern_c=True)


class GpuLetterbox:
    """One frame size -> one model input size, on the GPU. Needs a current pycuda context.

    ``run(src_ptr, dst_ptr, stream)`` reads the BGR frame at device address ``src_ptr`` and writes the
    ``[3, out_h, out_w]`` tensor at ``dst_ptr`` (e.g. the TensorRT input buffer). ``letterbox`` maps
    results back to source pixels exactly like the CPU path. Pass ``module`` to share one compiled module.
    """

    def __init__(
        self,
        in_h: int,
        in_w: int,
        out_h: int,
        out_w: int,
        pad: int = 114,
        mean: Sequence[float] | np.ndarray = (0.0, 0.0, 0.0),
        std: Sequence[float] | np.ndarray = (1.0, 1.0, 1.0),
        rgb: bool = True,
        *,
        scale: float = 1 / 255,
        dtype: str = "float32",
        module: Any | None = None,
    ) -> None:
        self.launch = plan_letterbox(in_h, in_w, out_h, out_w, pad, mean, std, rgb, scale=scale, dtype=dtype)
        cuda, _ = _pycuda()
        self._module = module if module is not None else compile_module()
        self._fn = self._module.get_function(self.launch.kernel)
        self._fn.prepare(ARG_FORMAT)
        self._xtab = cuda.to_device(self.launch.xtab)
        self._ytab = cuda.to_device(self.launch.ytab)

    @property
    def letterbox(self) -> Letterbox:
        return self.launch.letterbox

    @property
    def module(self) -> Any:
        return self._module

    def run(self, src_ptr: int, dst_ptr: int, stream: Any | None = None) -> None:
        """Enqueue the kernel on ``stream`` (a ``pycuda.driver.Stream``; None = default stream)."""
        lc = self.launch
        self._fn.prepared_async_call(
            lc.grid[:2],
            lc.block,
            stream,
            int(src_ptr),
            int(dst_ptr),
            int(self._xtab),
            int(self._ytab),
            *lc.scalars,
        )

    def close(self) -> None:
        """Free the device tables; idempotent."""
        for buf in (self._xtab, self._ytab):
            if buf is not None:
                buf.free()
        self._xtab = self._ytab = None
