"""TensorRT version gates as plain data: what each TensorRT release can do, decided without importing it.

The runtime (``backends/tensorrt.py``) and the engine builder (toolkit ``engine`` stage) ask these
functions instead of probing ``hasattr(trt, ...)``, so every decision that depends on the TensorRT
version is visible in one table and unit-tested on machines without TensorRT. Supported range: 8.5 to
11.x (8.5 is the first release with the name-based I/O API this runtime uses; JetPack 5.1 ships 8.5.2).

Sources (NVIDIA documentation):

- 8.5 adds the name-based tensor API (``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``,
  ``get_tensor_shape``, ``get_tensor_profile_shape``, ``set_input_shape``, ``set_tensor_address``,
  ``execute_async_v3``) and deprecates bindings: "API Changes For TensorRT 8.5.1",
  https://docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-851/pdf/TensorRT-API.pdf
- 8.6 adds builder optimization levels, hardware-compatible (Ampere+) and version-compatible engines
  ("Version compatibility is supported from version 8.6"):
  https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/advanced.html
- 10.0 removes the binding API (``execute_async_v2``, ``get_binding_shape``, ``max_batch_size``),
  implicit batch and ``max_workspace_size``; EXPLICIT_BATCH is ignored; STRONGLY_TYPED networks exist
  (ONNX Runtime gates that flag on ``NV_TENSORRT_MAJOR > 8``):
  https://docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-1010/migration-guide/index.html
- 11.0 removes weak typing: ``BuilderFlag.FP16/INT8/BF16/FP8``, ``int8_calibrator``, quantization
  flags and the precision-constraint flags are gone; every network is strongly typed (FP16 from an
  FP16 ONNX, INT8 only from Q/DQ ONNX); ``ICudaEngine.device_memory_size`` is gone:
  https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-reference.html
  https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-patterns.html
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UserError

__all__ = [
    "MAX_MAJOR",
    "MIN_SUPPORTED",
    "TrtCapabilities",
    "TrtVersion",
    "capabilities",
    "has_binding_api",
    "has_builder_optimization_level",
    "has_builder_precision_flags",
    "has_int8_calibrator",
    "is_supported",
    "needs_explicit_batch_flag",
    "parse_trt_version",
    "plan_runs_on",
    "require_supported",
    "strongly_typed_only",
    "supports_hardware_compatible_on",
    "supports_named_tensor_api",
    "supports_strongly_typed_flag",
    "supports_version_compatible",
]

_VERSION_RE = re.compile(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?")


@dataclass(frozen=True, order=True)
class TrtVersion:
    """A TensorRT version; ordering compares (major, minor, patch, build)."""

    major: int
    minor: int
    patch: int = 0
    build: int = 0

    @property
    def major_minor(self) -> tuple[int, int]:
        return (self.major, self.minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}" + (f".{self.build}" if self.build else "")


MIN_SUPPORTED = TrtVersion(8, 5)
MAX_MAJOR = 11  # newest major release these gates know about


def parse_trt_version(text: str | TrtVersion) -> TrtVersion:
    """``"8.5.2.2"``, ``"10.3.0"``, ``"10.3"``, ``"8.6.1.post1"``, ``"10.3.0.30+cuda12"`` -> ``TrtVersion``.

    Trailing local/post tags are ignored; anything without ``major.minor`` is a ``UserError``.
    """
    if isinstance(text, TrtVersion):
        return text
    m = _VERSION_RE.match(str(text))
    if m is None:
        raise UserError(f"not a TensorRT version: {text!r} (expected e.g. '10.3.0')")
    parts = [int(g) if g is not None else 0 for g in m.groups()]
    return TrtVersion(*parts)


def is_supported(v: str | TrtVersion) -> bool:
    """8.5 <= v < 12."""
    ver = parse_trt_version(v)
    return ver >= MIN_SUPPORTED and ver.major <= MAX_MAJOR


def require_supported(v: str | TrtVersion) -> TrtVersion:
    """``v`` parsed, or a ``UserError`` saying which range edgevision supports."""
    ver = parse_trt_version(v)
    if not is_supported(ver):
        raise UserError(
            f"TensorRT {ver} is not supported: edgevision runs TensorRT {MIN_SUPPORTED.major}."
            f"{MIN_SUPPORTED.minor} to {MAX_MAJOR}.x (JetPack 5.1 or newer on Jetson)"
        )
    return ver


def supports_named_tensor_api(v: str | TrtVersion) -> bool:
    """Name-based I/O (``set_tensor_address`` + ``execute_async_v3``, ``set_input_shape``): 8.5+."""
    return parse_trt_version(v) >= TrtVersion(8, 5)


def has_binding_api(v: str | TrtVersion) -> bool:
    """Binding indices, ``execute_async_v2(bindings, ...)``, ``get_binding_shape``: up to 9.x, gone in 10."""
    return parse_trt_version(v).major < 10


def has_builder_precision_flags(v: str | TrtVersion) -> bool:
    """``BuilderFlag.FP16`` / ``BuilderFlag.INT8`` (weak typing): 8.5 to 10.x; removed in 11."""
    return parse_trt_version(v).major < 11


def has_int8_calibrator(v: str | TrtVersion) -> bool:
    """``IBuilderConfig.int8_calibrator`` (implicit INT8 calibration): up to 10.x; 11 takes Q/DQ only."""
    return parse_trt_version(v).major < 11


def strongly_typed_only(v: str | TrtVersion) -> bool:
    """11+: every network is strongly typed; precision comes from the ONNX (FP16 ONNX, Q/DQ INT8)."""
    return parse_trt_version(v).major >= 11


def supports_strongly_typed_flag(v: str | TrtVersion) -> bool:
    """``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` exists (9+; accepted and ignored in 11)."""
    return parse_trt_version(v).major >= 9


def needs_explicit_batch_flag(v: str | TrtVersion) -> bool:
    """Before 10, ``create_network`` needs ``1 << EXPLICIT_BATCH`` for ONNX; 10+ ignores it."""
    return parse_trt_version(v).major < 10


def has_builder_optimization_level(v: str | TrtVersion) -> bool:
    """``IBuilderConfig.builder_optimization_level``: 8.6+."""
    return parse_trt_version(v) >= TrtVersion(8, 6)


def supports_version_compatible(v: str | TrtVersion) -> bool:
    """``BuilderFlag.VERSION_COMPATIBLE`` plans (run on a newer runtime) and hardware compatibility: 8.6+."""
    return parse_trt_version(v) >= TrtVersion(8, 6)


# Version-compatible plans across a major release, as the 11.4 support matrix lists them ("TensorRT 10
# version-compatible engines can run with a TensorRT 11 runtime, and TensorRT 8 version-compatible engines can run
# with a TensorRT 10 runtime. No other combination across major versions is supported"; 8.6's guide adds 8 -> 9).
_CROSS_MAJOR_VC = {(8, 9), (8, 10), (9, 10), (10, 11)}
# JetPack does not support hardware-compatible plans (the TensorRT developer guide: "hardware compatibility is
# supported only for ... discrete GPUs"); Orin is SM 8.7 (Xavier, 7.2, is below Ampere anyway).
_NO_HARDWARE_COMPAT_SMS = frozenset({"8.7"})


def plan_runs_on(built: str | TrtVersion, found: str | TrtVersion, *, version_compatible: bool = False) -> bool:
    """Whether a plan built by TensorRT ``built`` deserializes on TensorRT ``found``.

    A plain plan needs the very same release: major.minor.patch, and the build number too when both strings
    carry one ("10.3.0" recorded matches "10.3.0.30" found; "10.3.0.26" does not). A version-compatible plan
    (built with 8.6+) runs on the same or a newer TensorRT of the same major, or across the pairs above.
    """
    b, f = parse_trt_version(built), parse_trt_version(found)
    if version_compatible and supports_version_compatible(b):
        return f >= b and (f.major == b.major or (b.major, f.major) in _CROSS_MAJOR_VC)
    same = (b.major, b.minor, b.patch) == (f.major, f.minor, f.patch)
    return same and (b.build == 0 or f.build == 0 or b.build == f.build)


def supports_hardware_compatible_on(built_sm: str, found_sm: str) -> bool:
    """A hardware-compatible (AMPERE_PLUS) plan runs on any SM >= 8.0 except Jetson's (``sm`` as "8.7")."""
    if built_sm in _NO_HARDWARE_COMPAT_SMS or found_sm in _NO_HARDWARE_COMPAT_SMS:
        return False
    return int(built_sm.split(".")[0]) >= 8 and int(found_sm.split(".")[0]) >= 8


@dataclass(frozen=True)
class TrtCapabilities:
    """Every gate for one version, as one record (handy for the engine stage and ``doctor``)."""

    version: TrtVersion
    supported: bool
    named_tensor_api: bool
    binding_api: bool
    builder_precision_flags: bool
    int8_calibrator: bool
    strongly_typed_only: bool
    strongly_typed_flag: bool
    explicit_batch_flag: bool
    builder_optimization_level: bool
    version_compatible: bool


def capabilities(v: str | TrtVersion) -> TrtCapabilities:
    """All gates for ``v`` at once."""
    ver = parse_trt_version(v)
    return TrtCapabilities(
        version=ver,
        supported=is_supported(ver),
        named_tensor_api=supports_named_tensor_api(ver),
        binding_api=has_binding_api(ver),
        builder_precision_flags=has_builder_precision_flags(ver),
        int8_calibrator=has_int8_calibrator(ver),
        strongly_typed_only=strongly_typed_only(ver),
        strongly_typed_flag=supports_strongly_typed_flag(ver),
        explicit_batch_flag=needs_explicit_batch_flag(ver),
        builder_optimization_level=has_builder_optimization_level(ver),
        version_compatible=supports_version_compatible(ver),
    )
