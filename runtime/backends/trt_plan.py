"""The decisions behind the TensorRT backend, as pure functions over plain data (no TensorRT needed).

``backends/tensorrt.py`` is a thin layer that reads an engine's I/O metadata, asks this module what to
allocate and whether the engine may run here, and then calls TensorRT and pycuda. Keeping the decisions
here means they are unit-tested on any machine (``tests/runtime/test_trt_plan.py`` feeds fake metadata
through the ``EngineView`` seam), while the TensorRT-calling part stays small enough to read against
NVIDIA's documented API.

- ``plan_buffers``: I/O tensor metadata -> one ``BufferSpec`` per tensor: dtype, the shape to allocate
  for (the optimization profile's maximum for dynamic inputs, and the output shapes TensorRT infers
  for those maxima), bytes, which axes are dynamic.
- ``resolve_input_shapes``: a feed's shapes checked against names, ranks, fixed dims and profile bounds.
- ``check_engine_compat``: a plan only runs on the GPU architecture (SM) and TensorRT version it was
  built with; a mismatch is a ``UserError`` naming what was found and expected and the exact command
  that rebuilds the engine on this device.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Tuple

import numpy as np

from ..errors import UserError
from .base import TensorSpec
from .trt_version import parse_trt_version, plan_runs_on, supports_hardware_compatible_on

__all__ = [
    "FLAG_HARDWARE_COMPATIBLE",
    "FLAG_VERSION_COMPATIBLE",
    "BufferPlan",
    "BufferSpec",
    "EngineRecord",
    "EngineView",
    "TensorInfo",
    "check_engine_compat",
    "normalize_sm",
    "plan_buffers",
    "rebuild_command",
    "resolve_input_shapes",
]

# Build flags (EngineSpec.flags) that relax the compatibility check, as TensorRT documents them:
# version-compatible plans (8.6+) run on the same or a newer TensorRT; hardware-compatible plans
# (HardwareCompatibilityLevel.AMPERE_PLUS, 8.6+) run on any SM >= 8.0.
FLAG_VERSION_COMPATIBLE = "version_compatible"
FLAG_HARDWARE_COMPATIBLE = "hardware_compatible"

Shape = Tuple[int, ...]  # typing.Tuple: a runtime alias on Python 3.8


@dataclass(frozen=True)
class TensorInfo:
    """What an engine says about one I/O tensor; ``-1`` in ``shape`` marks a dynamic dimension.

    ``dtype`` is a numpy dtype name ("float32"), or TensorRT's name for a type numpy cannot hold
    ("bfloat16", "fp8", "int4"). ``profile`` holds (min, opt, max) of optimization profile 0 for an
    input with dynamic dimensions, else None.
    """

    name: str
    is_input: bool
    shape: Shape
    dtype: str
    profile: tuple[Shape, Shape, Shape] | None = None


class EngineView(Protocol):
    """The seam between planning and TensorRT: the backend adapts an engine + context to this."""

    def tensors(self) -> Sequence[TensorInfo]:
        """Every I/O tensor, in the engine's order."""
        ...

    def output_shapes(self, input_shapes: Mapping[str, Shape]) -> Mapping[str, Shape]:
        """Set these input shapes and return the output shapes TensorRT infers from them."""
        ...


@dataclass(frozen=True)
class BufferSpec:
    """One I/O tensor's buffers: allocate ``nbytes`` on the host (pinned) and on the device."""

    name: str
    is_input: bool
    dtype: str
    shape: Shape  # as the engine declares it (-1 = dynamic)
    alloc_shape: Shape  # the largest shape the buffers must hold
    min_shape: Shape  # inputs: smallest allowed shape (= alloc_shape when static)

    @property
    def dynamic_axes(self) -> tuple[int, ...]:
        return tuple(i for i, d in enumerate(self.shape) if d < 0)

    @property
    def is_dynamic(self) -> bool:
        return bool(self.dynamic_axes)

    @property
    def size(self) -> int:
        """Elements in the allocation."""
        return math.prod(self.alloc_shape)

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    def tensor_spec(self) -> TensorSpec:
        """The ``TensorSpec`` the backend reports: dynamic axes as names ("batch" for axis 0, else "?")."""
        dims: tuple[int | str, ...] = tuple(
            d if d >= 0 else ("batch" if i == 0 else "?") for i, d in enumerate(self.shape)
        )
        return TensorSpec(self.name, dims, self.dtype)


@dataclass(frozen=True)
class BufferPlan:
    """All buffers of one engine, inputs and outputs in engine order."""

    inputs: tuple[BufferSpec, ...]
    outputs: tuple[BufferSpec, ...]

    @property
    def total_bytes(self) -> int:
        return sum(b.nbytes for b in (*self.inputs, *self.outputs))

    def get(self, name: str) -> BufferSpec:
        for b in (*self.inputs, *self.outputs):
            if b.name == name:
                return b
        raise KeyError(name)


def _numpy_dtype(info: TensorInfo) -> str:
    try:
        return np.dtype(info.dtype).name
    except TypeError:
        raise UserError(
            f"engine tensor {info.name!r} has type {info.dtype}, which numpy cannot hold; rebuild the "
            "engine with float32, float16, int8/int32/int64 or bool inputs and outputs"
        ) from None


def _input_spec(info: TensorInfo, dtype: str) -> BufferSpec:
    if not any(d < 0 for d in info.shape):
        return BufferSpec(info.name, True, dtype, info.shape, info.shape, info.shape)
    if info.profile is None:
        raise UserError(
            f"engine input {info.name!r} has dynamic shape {list(info.shape)} but no "
            "optimization profile; rebuild it with min/opt/max shapes"
        )
    lo, _, hi = (tuple(int(d) for d in s) for s in info.profile)
    if len(lo) != len(info.shape) or len(hi) != len(info.shape) or any(d < 0 for d in (*lo, *hi)):
        raise UserError(
            f"engine input {info.name!r}: optimization profile {list(lo)}..{list(hi)} does "
            f"not fit its shape {list(info.shape)}"
        )
    return BufferSpec(info.name, True, dtype, info.shape, hi, lo)


def plan_buffers(view: EngineView) -> BufferPlan:
    """Decide every buffer: static tensors as declared, dynamic inputs at their profile maximum, and
    outputs at the shapes TensorRT infers for those maxima (output size grows with input size for
    the layouts this runtime decodes). Data-dependent output shapes are refused."""
    infos = list(view.tensors())
    inputs = [_input_spec(t, _numpy_dtype(t)) for t in infos if t.is_input]
    if not inputs:
        raise UserError("engine has no inputs")
    out_infos = [t for t in infos if not t.is_input]
    if not out_infos:
        raise UserError("engine has no outputs")
    resolved = view.output_shapes({b.name: b.alloc_shape for b in inputs})
    outputs = []
    for t in out_infos:
        shape = tuple(int(d) for d in resolved.get(t.name, t.shape))
        if any(d < 0 for d in shape):
            raise UserError(
                f"engine output {t.name!r} has a data-dependent shape {list(shape)}; this "
                "runtime needs output shapes that follow from the input shapes"
            )
        outputs.append(BufferSpec(t.name, False, _numpy_dtype(t), t.shape, shape, shape))
    return BufferPlan(tuple(inputs), tuple(outputs))


def resolve_input_shapes(plan: BufferPlan, shapes: Mapping[str, Sequence[int]]) -> dict[str, Shape]:
    """Check a feed's shapes: every input present and no others, right rank, fixed dims equal, dynamic
    dims within the optimization profile. Returns the shapes to set on the execution context."""
    names = [b.name for b in plan.inputs]
    missing = [n for n in names if n not in shapes]
    unknown = [n for n in shapes if n not in names]
    if missing or unknown:
        raise UserError(f"engine inputs are {names}; missing {missing}, unexpected {unknown}")
    out: dict[str, Shape] = {}
    for b in plan.inputs:
        shape = tuple(int(d) for d in shapes[b.name])
        if len(shape) != len(b.shape):
            raise UserError(
                f"input {b.name!r}: expected {len(b.shape)}-D {list(b.tensor_spec().shape)}, got shape {list(shape)}"
            )
        for axis, (got, want, lo, hi) in enumerate(zip(shape, b.shape, b.min_shape, b.alloc_shape)):
            if want >= 0 and got != want:
                raise UserError(f"input {b.name!r}: axis {axis} must be {want}, got shape {list(shape)}")
            if want < 0 and not lo <= got <= hi:
                raise UserError(
                    f"input {b.name!r}: axis {axis} = {got} is outside the engine's optimization profile "
                    f"[{lo}, {hi}]; rebuild the engine with a larger range to run shape {list(shape)}"
                )
        out[b.name] = shape
    return out


_SM_RE = re.compile(r"^(?:sm_?|compute_?)?(\d+)(?:\.(\d+))?$", re.IGNORECASE)


def normalize_sm(sm: str | Sequence[int]) -> str:
    """GPU compute capability as "major.minor": "8.7", "87", "sm_87", (8, 7) -> "8.7"; "120" -> "12.0"."""
    if not isinstance(sm, str):
        major, minor = (int(v) for v in tuple(sm)[:2])
        return f"{major}.{minor}"
    m = _SM_RE.match(sm.strip())
    if m is None:
        raise UserError(f"not a GPU compute capability: {sm!r} (expected e.g. '8.7')")
    if m.group(2) is not None:
        return f"{int(m.group(1))}.{int(m.group(2))}"
    digits = m.group(1)
    if len(digits) < 2:
        raise UserError(f"not a GPU compute capability: {sm!r} (expected e.g. '8.7')")
    return f"{int(digits[:-1])}.{int(digits[-1])}"


class EngineRecord(Protocol):
    """What the check reads from a sidecar engine entry (``edgevision.runtime.bundle.EngineSpec``)."""

    @property
    def file(self) -> str: ...

    @property
    def device_profile(self) -> str: ...

    @property
    def tensorrt_version(self) -> str: ...

    @property
    def gpu_sm(self) -> str: ...

    @property
    def flags(self) -> list[str]: ...


def rebuild_command(bundle: str | Path, profile: str) -> str:
    """The command that builds an engine for ``profile`` from ``bundle`` (run it on the device), shell-quoted:
    a bundle path holding ``;$(...)`` stays one argument when the line is pasted."""
    return shlex.join(["edgevision", "engine", str(bundle), "--device", profile])


def _sm_ok(built: str, found: str, flags: Sequence[str]) -> bool:
    if FLAG_HARDWARE_COMPATIBLE in flags:
        return supports_hardware_compatible_on(built, found)
    return built == found


def check_engine_compat(
    engine: EngineRecord,
    found_tensorrt: str,
    found_sm: str | Sequence[int],
    *,
    bundle: str | Path = "BUNDLE",
    this_profile: str | None = None,
) -> None:
    """Refuse an engine built for another TensorRT release (``trt_version.plan_runs_on``) or another GPU SM.

    ``bundle`` goes into the rebuild command; ``this_profile`` is the device profile that matches this
    machine when the caller knows it (``edgevision doctor``). Without it the engine's own profile is
    suggested when only TensorRT differs (same GPU), else ``PROFILE`` with a pointer to ``doctor``.
    """
    built_v = parse_trt_version(engine.tensorrt_version)
    found_v = parse_trt_version(found_tensorrt)
    built_sm, here_sm = normalize_sm(engine.gpu_sm), normalize_sm(found_sm)
    flags = list(engine.flags)
    problems = []
    if not plan_runs_on(built_v, found_v, version_compatible=FLAG_VERSION_COMPATIBLE in flags):
        problems.append(f"TensorRT {built_v} expected, {found_v} found")
    if not _sm_ok(built_sm, here_sm, flags):
        problems.append(f"GPU SM {built_sm} expected, SM {here_sm} found")
    if not problems:
        return
    profile = this_profile or (engine.device_profile if built_sm == here_sm else None)
    hint = "" if profile else " (`edgevision doctor` names the profile that matches this device)"
    raise UserError(
        f"engine {engine.file} (profile {engine.device_profile}) cannot run here: {'; '.join(problems)}. "
        "TensorRT engines run only on the GPU architecture and TensorRT version they were built with; "
        f"rebuild it on this device: {rebuild_command(bundle, profile or 'PROFILE')}{hint}"
    )
