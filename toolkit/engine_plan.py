"""The decisions behind a TensorRT engine build, as plain data (no TensorRT import).

``plan_engine`` turns a device profile x TensorRT version x model (precision, ONNX kind, DLA, 2:4
sparsity, dynamic batch) into an ``EnginePlan``: strongly typed or not, which ``BuilderFlag`` names
to set, the DLA core, optimization-profile shapes, workspace bytes, builder optimization level and
notes. ``engine_build.py`` is the thin part that hands the plan to TensorRT. Impossible requests are
``UserError``s naming the profile and what to do instead.

Rules (NVIDIA TensorRT documentation):

- TensorRT <= 10 is weakly typed: FP16/INT8 are ``BuilderFlag``s. INT8 is explicit quantization only
  (a Q/DQ ONNX; edgevision never uses the deprecated calibrator), and a Q/DQ network still needs the
  INT8 flag before 11; FP16 is set beside INT8 so non-quantized layers may run in FP16.
  https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/work-with-quantized-types.html
- TensorRT 11 is strongly typed only: no FP16/INT8 flags; FP16 comes from an FP16 ONNX, INT8 from Q/DQ.
  https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-reference.html
- DLA runs FP16/INT8 only; ``config.default_device_type = DeviceType.DLA``, ``config.DLA_core`` and
  ``BuilderFlag.GPU_FALLBACK`` for layers DLA cannot run.
  https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/work-with-dla.html
- ``BuilderFlag.SPARSE_WEIGHTS`` lets TensorRT use 2:4 structured-sparse tensor cores (Ampere+).
- DLA takes static shapes only (an optimization profile with min = opt = max) and implicit quantization
  only: Q/DQ layers are not DLA layers, so a Q/DQ ONNX with ``--dla`` would silently run on the GPU
  (NVIDIA TensorRT #2222, Model-Optimizer #1661). On TensorRT <= 10 edgevision builds Q/DQ + DLA the
  implicit way (``engine_dla``: Q/DQ removed, scales as per-tensor dynamic ranges); TensorRT 11 has no
  implicit INT8, so there it is refused. A dynamic batch is fixed to one size.
  https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/work-with-dla.html
- Version-compatible plans (``BuilderFlag.VERSION_COMPATIBLE``, 8.6+) run on the same or a newer
  TensorRT; hardware-compatible plans (``hardware_compatibility_level = AMPERE_PLUS``, 8.6+) run on any
  discrete Ampere+ GPU, and are not supported on Jetson (JetPack) nor with DLA.
  https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/advanced.html
- ``builder_optimization_level`` (0-5, default 3) exists from 8.6; the workspace limit is
  ``set_memory_pool_limit(MemoryPoolType.WORKSPACE, bytes)``.
  https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/BuilderConfig.html
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Tuple

from edgevision.runtime.backends.trt_plan import FLAG_HARDWARE_COMPATIBLE
from edgevision.runtime.backends.trt_version import (
    has_builder_optimization_level,
    has_builder_precision_flags,
    needs_explicit_batch_flag,
    require_supported,
    strongly_typed_only,
    supports_version_compatible,
)
from edgevision.runtime.errors import UserError

from .devices import DeviceProfile, profile_supports

__all__ = ["DEFAULT_WORKSPACE_MB", "ONNX_KINDS", "EnginePlan", "OnnxKind", "engine_name", "plan_engine"]

OnnxKind = Literal["fp32", "fp16", "qdq-int8"]
ONNX_KINDS: tuple[str, ...] = ("fp32", "fp16", "qdq-int8")
DEFAULT_WORKSPACE_MB = 1024
Shape = Tuple[int, ...]  # typing.Tuple: `edgevision engine` runs on Python 3.8 (JetPack 5)


@dataclass(frozen=True)
class EnginePlan:
    """Everything the builder sets, decided up front. ``builder_flags`` are ``trt.BuilderFlag`` names."""

    profile: str
    tensorrt_version: str
    precision: str
    onnx_kind: str
    strongly_typed: bool
    explicit_batch: bool
    builder_flags: tuple[str, ...]
    dla_core: int | None
    profile_shapes: dict[str, tuple[Shape, Shape, Shape]]
    workspace_bytes: int
    opt_level: int | None
    target_sms: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())
    hardware_compatible: bool = False
    implicit_int8: bool = False  # DLA: Q/DQ scales applied as dynamic ranges, Q/DQ removed (engine_dla)

    @property
    def version_compatible(self) -> bool:
        return "VERSION_COMPATIBLE" in self.builder_flags

    @property
    def sidecar_flags(self) -> list[str]:
        """Flags as the sidecar records them: lower-case builder flags (``version_compatible`` among them),
        plus ``strongly_typed`` and ``hardware_compatible`` (the names ``trt_plan.check_engine_compat`` reads)."""
        return ([f.lower() for f in self.builder_flags] + (["strongly_typed"] if self.strongly_typed else [])
                + ([FLAG_HARDWARE_COMPATIBLE] if self.hardware_compatible else []))


def engine_name(profile: DeviceProfile | str, precision: str, *, dla_core: int | None = None) -> str:
    """File name of a plan inside the bundle: ``model.jetson-agx-orin-64gb.int8.dla0.engine``."""
    name = profile if isinstance(profile, str) else profile.name
    dla = f".dla{dla_core}" if dla_core is not None else ""
    return f"model.{name}.{precision}{dla}.engine"


def _precision(profile: DeviceProfile, precision: str | None, onnx_kind: str, notes: list[str]) -> str:
    if precision is None:
        implied = {"qdq-int8": "int8", "fp16": "fp16"}.get(onnx_kind)
        chosen = implied or profile.default_precision
        if chosen == "int8" and onnx_kind != "qdq-int8":
            chosen = "fp16" if profile.supports.fp16 else "fp32"
            notes.append(f"profile default int8 needs a Q/DQ ONNX; building {chosen} from the {onnx_kind} ONNX")
        precision = chosen
    precision = precision.lower()
    if not profile_supports(profile, precision):  # also rejects unknown names
        raise UserError(
            f"device profile {profile.name} cannot run {precision} (its GPU, SM {', '.join(profile.sms) or '-'}, "
            f"has no {precision} support); use --precision "
            f"{'fp16' if profile.supports.fp16 else 'fp32'}"
        )
    return precision


def _check_onnx(profile: DeviceProfile, precision: str, onnx_kind: str, typed: bool, version: str) -> None:
    if onnx_kind not in ONNX_KINDS:
        raise UserError(f"unknown ONNX kind {onnx_kind!r}; expected one of: {', '.join(ONNX_KINDS)}")
    if precision == "int8" and onnx_kind != "qdq-int8":
        why = "TensorRT 11 is strongly typed" if typed else "edgevision uses explicit quantization only"
        raise UserError(
            f"int8 engine for {profile.name} needs a Q/DQ (quantized) ONNX, the bundle has a {onnx_kind} ONNX "
            f"({why}; no calibrator); add a quantize step to the recipe or use --precision fp16"
        )
    if onnx_kind == "qdq-int8" and precision != "int8":
        raise UserError(f"the bundle's ONNX is Q/DQ INT8; it builds an int8 engine, not {precision}")
    if typed and precision == "fp16" and onnx_kind != "fp16":
        raise UserError(
            f"TensorRT {version} builds strongly typed networks only: an fp16 engine needs an FP16 ONNX, the "
            f"bundle has a {onnx_kind} ONNX; export with FP16 conversion or use --precision fp32"
        )
    if onnx_kind == "fp16" and precision == "fp32":
        raise UserError("the bundle's ONNX is FP16; it builds an fp16 engine, not fp32")


def _flags(profile: DeviceProfile, precision: str, version: str, dla: bool, sparse: bool,
           notes: list[str]) -> list[str]:
    flags: list[str] = []
    if has_builder_precision_flags(version):
        if precision in ("fp16", "int8") and profile.supports.fp16:
            flags.append("FP16")
        if precision == "int8":
            flags.append("INT8")
    if dla:
        flags.append("GPU_FALLBACK")
    if sparse:
        if profile.supports.sparsity:
            flags.append("SPARSE_WEIGHTS")
        else:
            notes.append(f"2:4 sparsity skipped: {profile.name} has no sparse tensor cores (needs SM >= 8.0)")
    return flags


def _shapes(input_name: str, input_shape: Sequence[int | str],
            dynamic_batch: tuple[int, int, int] | None, profile: DeviceProfile,
            notes: list[str], dla: bool = False) -> dict[str, tuple[Shape, Shape, Shape]]:
    dims = list(input_shape)
    if len(dims) != 4:
        raise UserError(f"input {input_name!r}: expected an NCHW shape, got {dims}")
    rest = dims[1:]
    if any(not isinstance(d, int) or d <= 0 for d in rest):
        raise UserError(f"input {input_name!r}: only the batch dimension may be dynamic, got {dims}")
    batch_dynamic = not isinstance(dims[0], int) or dims[0] <= 0
    if not batch_dynamic:
        if dynamic_batch is not None:
            raise UserError(
                f"input {input_name!r} has a fixed batch of {dims[0]}; export with --dynamic-batch to build "
                f"a batch range {list(dynamic_batch)}"
            )
        return {}
    if dla and dynamic_batch is not None and not dynamic_batch[0] == dynamic_batch[1] == dynamic_batch[2]:
        raise UserError(
            f"DLA takes static shapes only: dynamic batch (min, opt, max) = {tuple(dynamic_batch)} has min != max; "
            "give one batch size (min = opt = max) or build without --dla"
        )
    if dla and dynamic_batch is None:
        dynamic_batch = (1, 1, 1)
        notes.append("DLA takes static shapes only: the dynamic batch is fixed at 1")
    lo, opt, hi = dynamic_batch if dynamic_batch is not None else (1, 1, profile.max_batch)
    if not 1 <= lo <= opt <= hi:
        raise UserError(f"dynamic batch (min, opt, max) = {(lo, opt, hi)} must satisfy 1 <= min <= opt <= max")
    if hi > profile.max_batch:
        notes.append(f"max batch {hi} is above {profile.name}'s recommended max_batch {profile.max_batch}")
    c, h, w = (int(d) for d in rest)
    return {input_name: ((lo, c, h, w), (opt, c, h, w), (hi, c, h, w))}


def plan_engine(
    profile: DeviceProfile,
    trt_version: str,
    *,
    precision: str | None,
    onnx_kind: str,
    dla: bool,
    sparse_model: bool,
    dynamic_batch: tuple[int, int, int] | None,
    input_shape: Sequence[int | str],
    input_name: str = "images",
    workspace_mb: int | None,
    opt_level: int | None,
    version_compatible: bool = False,
    hardware_compatible: bool = False,
) -> EnginePlan:
    """Decide one engine build; a request the profile or TensorRT version cannot do is a ``UserError``."""
    if profile.backend != "tensorrt":
        raise UserError(f"device profile {profile.name} runs on {profile.backend}, not TensorRT; no engine to build")
    notes: list[str] = []
    prec = _precision(profile, precision, onnx_kind, notes)
    if dla and profile.dla_cores == 0:
        raise UserError(f"device profile {profile.name} has no DLA cores; build without --dla (GPU only)")
    if dla and prec == "fp32":
        raise UserError("DLA runs fp16 or int8 only; use --precision fp16 or int8 with --dla")
    ver = require_supported(trt_version)
    version = str(ver)
    if profile.tensorrt is None or not profile.tensorrt.contains(version):
        raise UserError(
            f"TensorRT {version} is outside device profile {profile.name}'s range "
            f"({profile.tensorrt or 'none'}); build on a device with a TensorRT in that range"
        )
    typed = strongly_typed_only(ver)
    implicit_int8 = dla and onnx_kind == "qdq-int8"
    if implicit_int8 and typed:
        raise UserError(
            f"DLA takes only implicit quantization, not a Q/DQ ONNX, and TensorRT {version} has no implicit INT8 "
            f"(set_dynamic_range): the int8 engine for {profile.name} would run on the GPU, not the DLA; build "
            "--precision fp16 --dla from an FP32/FP16 bundle, or int8 with --no-dla"
        )
    if implicit_int8:
        notes.append("DLA INT8: the Q/DQ scales become per-tensor dynamic ranges (implicit quantization)")
    _check_onnx(profile, prec, onnx_kind, typed, version)
    flags = _flags(profile, prec, version, dla, sparse_model, notes)
    _check_compat(profile, version, dla, version_compatible, hardware_compatible)
    if version_compatible:
        flags.append("VERSION_COMPATIBLE")
    if dla and ver.major >= 11:
        notes.append("DLA on TensorRT 11 needs a JetPack release whose TensorRT ships DLA support")
    if opt_level is not None:
        if not 0 <= opt_level <= 5:
            raise UserError(f"--opt-level {opt_level}: TensorRT builder optimization levels are 0 to 5")
        if not has_builder_optimization_level(ver):
            notes.append(f"builder optimization level ignored: TensorRT {version} has none (8.6+)")
            opt_level = None
    mb = workspace_mb if workspace_mb is not None else (profile.workspace_mb or DEFAULT_WORKSPACE_MB)
    if mb < 16:
        raise UserError(f"--workspace-mb {mb}: give at least 16 MiB")
    return EnginePlan(
        profile=profile.name,
        tensorrt_version=version,
        precision=prec,
        onnx_kind=onnx_kind,
        strongly_typed=typed,
        explicit_batch=needs_explicit_batch_flag(ver),
        builder_flags=tuple(flags),
        dla_core=0 if dla else None,
        profile_shapes=_shapes(input_name, input_shape, dynamic_batch, profile, notes, dla),
        workspace_bytes=mb << 20,
        opt_level=opt_level,
        target_sms=tuple(profile.sms),
        notes=tuple(notes),
        hardware_compatible=hardware_compatible,
        implicit_int8=implicit_int8,
    )


def _check_compat(profile: DeviceProfile, version: str, dla: bool, version_compatible: bool,
                  hardware_compatible: bool) -> None:
    for wanted, what in ((version_compatible, "version-compatible"), (hardware_compatible, "hardware-compatible")):
        if wanted and not supports_version_compatible(version):
            raise UserError(f"{what} engines need TensorRT 8.6 or newer, the plan is for TensorRT {version}")
    if not hardware_compatible:
        return
    if profile.kind == "jetson" or "8.7" in profile.sms:
        raise UserError(f"hardware-compatible engines are not supported on Jetson ({profile.name}, SM "
                        f"{', '.join(profile.sms)}); build without --hardware-compatible")
    if dla:
        raise UserError("hardware-compatible engines cannot use DLA; build without --dla")
    if any(int(sm.split(".")[0]) < 8 for sm in profile.sms):
        raise UserError(f"hardware-compatible engines need an Ampere or newer GPU (SM >= 8.0); {profile.name} "
                        f"has SM {', '.join(profile.sms)}")
