"""Device profiles: what a deployment target can run, read from ``devices/*.yaml``.

A profile says which GPU (CUDA compute capability, "SM") a target has, which precisions its
backend can use (FP32/FP16/INT8, 2:4 sparsity), how many DLA cores it has, and which JetPack and
TensorRT versions it is known with. The shipped profiles are the package data of
``edgevision.devices``; a user may point at another folder of YAML files.

Version ranges: ``min`` is inclusive; ``max`` is inclusive *as a prefix*, so ``max: "10"`` covers every
10.x and ``max: "8.5"`` covers 8.5.x. Versions are quoted strings in YAML (``8.10`` unquoted is a float).

This module imports only pydantic, yaml and the standard library: ``edgevision devices`` and
``edgevision doctor`` must work where only the runtime's dependencies are installed.
"""

from __future__ import annotations

import importlib
import importlib.resources
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgevision.runtime.errors import UserError
from edgevision.runtime.validation import parse_yaml, validation_line

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
PACKAGE = "edgevision.devices"
_SUFFIXES = (".yaml", ".yml")
_VERSION_RE = re.compile(r"^\d+(\.\d+){0,3}$")
_SM_RE = re.compile(r"^\d{1,2}\.\d$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.-]*$")


def parse_version(text: str) -> tuple[int, ...]:
    """``"8.5.2.2"`` -> ``(8, 5, 2, 2)``; anything else raises ``ValueError``."""
    if not _VERSION_RE.match(text):
        raise ValueError(f"{text!r} is not a version like '8.5' or '10.3.0'")
    return tuple(int(p) for p in text.split("."))


def sm_tuple(sm: str) -> tuple[int, int]:
    """``"8.7"`` -> ``(8, 7)``; raises ``ValueError`` on anything that is not ``MAJOR.MINOR``."""
    if not _SM_RE.match(sm):
        raise ValueError(f"{sm!r} is not a compute capability like '8.7'")
    major, minor = sm.split(".")
    return int(major), int(minor)


# TensorRT hardware/precision matrix (TensorRT 8.x support matrix; GPU Coder docs say the same):
# INT8 needs SM 6.1 or >= 7.0 (6.0 and 6.2 have no fast INT8); FP16 needs SM 5.3, 6.0, 6.2 or >= 7.0
# (6.1 has no fast FP16). 2:4 structured sparsity needs Ampere tensor cores (SM >= 8.0).
def sm_has_int8(sm: str) -> bool:
    """Whether TensorRT offers INT8 kernels on this compute capability."""
    cc = sm_tuple(sm)
    return cc == (6, 1) or cc >= (7, 0)


def sm_has_fp16(sm: str) -> bool:
    """Whether TensorRT offers fast FP16 kernels on this compute capability."""
    cc = sm_tuple(sm)
    return cc in ((5, 3), (6, 0), (6, 2)) or cc >= (7, 0)


def sm_has_sparsity(sm: str) -> bool:
    """Whether the GPU has 2:4 structured-sparse tensor cores (Ampere and newer)."""
    return sm_tuple(sm) >= (8, 0)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VersionRange(_Strict):
    """Inclusive range; ``max`` matches as a prefix (``"10"`` = any 10.x). ``max`` absent = open."""

    min: str
    max: str | None = None

    @field_validator("min", "max")
    @classmethod
    def _version(cls, v: str | None) -> str | None:
        if v is not None:
            parse_version(v)
        return v

    @model_validator(mode="after")
    def _ordered(self) -> VersionRange:
        if self.max is not None:
            hi = parse_version(self.max)
            if parse_version(self.min)[: len(hi)] > hi:
                raise ValueError(f"min {self.min} is above max {self.max}")
        return self

    def contains(self, version: str) -> bool:
        """Whether ``version`` (e.g. ``"8.5.2.2"``) lies in the range."""
        v = parse_version(version)
        lo = parse_version(self.min)
        width = max(len(v), len(lo))
        if v + (0,) * (width - len(v)) < lo + (0,) * (width - len(lo)):
            return False
        if self.max is None:
            return True
        hi = parse_version(self.max)
        return v[: len(hi)] + (0,) * (len(hi) - len(v)) <= hi

    def __str__(self) -> str:
        return f"{self.min}–{self.max}.x" if self.max else f">={self.min}"


class Supports(_Strict):
    """Precisions the profile's backend can run on this hardware."""

    fp32: bool = True
    fp16: bool
    int8: bool
    sparsity: bool = Field(default=False, description="2:4 structured-sparse tensor cores")


class DeviceProfile(_Strict):
    """One deployment target. See ``devices/*.yaml`` for the shipped ones and their sources."""

    name: str
    description: str
    kind: Literal["jetson", "desktop", "cpu"]
    gpu_sm: str | list[str] | None = Field(default=None, description="compute capability, or a list")
    gpu_arch: str | None = None
    cuda_cores: int | None = Field(default=None, ge=0)
    tensor_cores: int | None = Field(default=None, ge=0)
    memory_gb: float | None = Field(default=None, gt=0, description="memory (shared CPU/GPU on Jetson)")
    supports: Supports
    dla_cores: int = Field(default=0, ge=0)
    jetpack: VersionRange | None = None
    tensorrt: VersionRange | None = None
    backend: Literal["tensorrt", "onnxruntime"]
    default_precision: Precision
    workspace_mb: int | None = Field(default=None, ge=16)
    max_batch: int = Field(default=1, ge=1)
    input_size: int | None = Field(default=None, ge=32, description="recommended square input side")
    notes: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"{v!r}: use lower-case letters, digits, '-' and '.'")
        return v

    @field_validator("gpu_sm")
    @classmethod
    def _sm(cls, v: str | list[str] | None) -> str | list[str] | None:
        for sm in [v] if isinstance(v, str) else (v or []):
            sm_tuple(sm)
        if isinstance(v, list) and not v:
            raise ValueError("an empty list; leave the key out for a CPU-only profile")
        return v

    @property
    def sms(self) -> list[str]:
        """``gpu_sm`` as a list (empty for a CPU-only profile)."""
        if self.gpu_sm is None:
            return []
        return [self.gpu_sm] if isinstance(self.gpu_sm, str) else list(self.gpu_sm)

    @model_validator(mode="after")
    def _consistent(self) -> DeviceProfile:
        sms = self.sms
        if self.kind == "cpu":
            if sms or self.dla_cores or self.tensorrt or self.jetpack:
                raise ValueError("a 'cpu' profile has no gpu_sm, dla_cores, tensorrt or jetpack")
            if self.backend != "onnxruntime":
                raise ValueError("a 'cpu' profile runs on backend 'onnxruntime'")
            if self.supports.sparsity:
                raise ValueError("supports.sparsity needs a GPU with sparse tensor cores")
        else:
            if not sms:
                raise ValueError(f"a '{self.kind}' profile needs gpu_sm")
            self._check_gpu(sms)
        if self.kind == "jetson":
            if len(sms) != 1:
                raise ValueError("a 'jetson' profile names exactly one gpu_sm")
            if self.jetpack is None or self.memory_gb is None:
                raise ValueError("a 'jetson' profile needs jetpack and memory_gb")
        elif self.jetpack is not None:
            raise ValueError("jetpack applies only to kind 'jetson'")
        if self.dla_cores and self.kind != "jetson":
            raise ValueError("dla_cores > 0 only exist on Jetson (Xavier / Orin) modules")
        if not profile_supports(self, self.default_precision):
            raise ValueError(f"default_precision {self.default_precision!r} is not in supports")
        return self

    def _check_gpu(self, sms: list[str]) -> None:
        if self.backend == "tensorrt" and self.tensorrt is None:
            raise ValueError("backend 'tensorrt' needs a tensorrt version range")
        checks = (("int8", sm_has_int8, "6.1 or >= 7.0"), ("fp16", sm_has_fp16, "5.3, 6.0, 6.2 or >= 7.0"))
        for flag, has, need in checks:
            bad = [sm for sm in sms if not has(sm)]
            if getattr(self.supports, flag) and bad:
                raise ValueError(f"supports.{flag}: SM {', '.join(bad)} has no {flag} (needs SM {need})")
        if self.supports.sparsity and not all(sm_has_sparsity(sm) for sm in sms):
            raise ValueError("supports.sparsity: 2:4 sparse tensor cores need SM >= 8.0 (Ampere)")
        # TensorRT 10 is built for SM >= 7.0 only (TensorRT 10.x support matrix).
        trt = self.tensorrt
        if trt is not None and (trt.max is None or parse_version(trt.max)[0] >= 10):
            old = [sm for sm in sms if sm_tuple(sm) < (7, 0)]
            if old:
                raise ValueError(f"tensorrt: TensorRT 10+ has no SM {', '.join(old)} (needs SM >= 7.0)")


def profile_supports(profile: DeviceProfile, precision: str) -> bool:
    """Whether ``profile`` runs ``precision`` (``fp32`` | ``fp16`` | ``int8``); another name -> UserError."""
    key = precision.lower()
    if key not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; expected one of: {', '.join(PRECISIONS)}")
    return bool(getattr(profile.supports, key))

_HINTS = {"string_type": " (quote versions and SMs in YAML, e.g. \"8.7\")"}


def _files(directory: Path | None) -> dict[str, Traversable]:
    """Profile name (file stem) -> file, from ``directory`` or the packaged ``edgevision.devices``."""
    if directory is None:
        if sys.version_info >= (3, 9):
            root: Traversable = importlib.resources.files(PACKAGE)
        else:  # Python 3.8 (the runtime on JetPack 5): no importlib.resources.files; the package is a folder
            root = Path(str(importlib.import_module(PACKAGE).__file__)).parent
    else:
        if not directory.is_dir():
            raise UserError(f"{directory}: device profile folder not found")
        root = directory
    out: dict[str, Traversable] = {}
    for entry in root.iterdir():
        stem, dot, suffix = entry.name.rpartition(".")
        if dot and f".{suffix}" in _SUFFIXES and entry.is_file():
            out.setdefault(stem, entry)
    return dict(sorted(out.items()))


def _parse(stem: str, entry: Traversable) -> DeviceProfile:
    source = str(entry)
    raw: Any = parse_yaml(entry.read_text(encoding="utf-8"), source)
    if not isinstance(raw, dict):
        raise UserError(f"{source}: a device profile must be a YAML mapping, got {type(raw).__name__}")
    try:
        profile = DeviceProfile.model_validate(raw)
    except ValidationError as exc:
        raise UserError(validation_line(source, exc, _HINTS)) from None
    if profile.name != stem:
        raise UserError(f"{source}: name: {profile.name!r} must match the file name {stem!r}")
    return profile


def profile_names(directory: Path | None = None) -> list[str]:
    """Names of the profiles in ``directory`` (default: the shipped ones), sorted, without validating."""
    return list(_files(directory))


def list_profiles(directory: Path | None = None) -> list[DeviceProfile]:
    """Every profile in ``directory`` (default: the shipped ones), validated, sorted by name."""
    return [_parse(stem, entry) for stem, entry in _files(directory).items()]


def load_profile(name: str, directory: Path | None = None) -> DeviceProfile:
    """The profile called ``name``; an unknown name -> ``UserError`` listing the known ones."""
    files = _files(directory)
    if name not in files:
        where = f" in {directory}" if directory is not None else ""
        known = ", ".join(files) or "(none)"
        raise UserError(f"unknown device profile {name!r}{where}; known profiles: {known}")
    return _parse(name, files[name])


def match_profile(
    sm: str | None,
    tensorrt_version: str | None,
    is_jetson: bool,
    total_memory_gb: float | None,
    *,
    directory: Path | None = None,
) -> list[DeviceProfile]:
    """Profiles that fit a machine as ``doctor`` sees it; every given fact must agree.

    ``sm`` None means no usable GPU: the CPU profiles match. ``tensorrt_version`` filters on the
    profile's TensorRT range when given. ``total_memory_gb`` (as the OS reports it, a little under the
    nominal size) must lie within 80–105 % of a profile's ``memory_gb`` when both are known. Call again
    with fewer facts for looser matches.
    """
    kind = "cpu" if sm is None else ("jetson" if is_jetson else "desktop")
    if tensorrt_version:
        found = re.match(r"\d+(\.\d+){0,3}", tensorrt_version)  # "10.3.0.30+cuda12" -> "10.3.0.30"
        tensorrt_version = found.group(0) if found else None
    out: list[DeviceProfile] = []
    for profile in list_profiles(directory):
        if profile.kind != kind or (sm is not None and sm not in profile.sms):
            continue
        trt = profile.tensorrt
        if tensorrt_version and sm is not None and (trt is None or not trt.contains(tensorrt_version)):
            continue
        mem = profile.memory_gb
        if total_memory_gb is not None and mem is not None and not 0.8 * mem <= total_memory_gb <= 1.05 * mem:
            continue
        out.append(profile)
    return out
