"""The bundle: the only contract between toolkit and runtime.

A bundle is a directory with ``model.onnx``, optional plain TensorRT plans, and ``edgevision.json`` (the
sidecar) which says everything needed to run the model without guessing. The schema is pydantic so that
both the writer (toolkit) and the reader (runtime) share one definition and a hand-edited sidecar gets a
one-line error naming the key.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import UserError
from .validation import validation_line

SIDECAR_NAME = "edgevision.json"
SCHEMA_VERSION = 1
# Caps on memory-shaped values: an input side of 100,000 px would ask for 30 GB per frame. 8192 px is twice
# the toolkit's largest export (recipe input_size <= 4096) and keeps one float32 input under 1 GB.
MAX_INPUT_SIDE = 8192
MAX_BATCH = 256
MAX_CLASSES = 100_000
MAX_KEYPOINTS = 1000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def bundle_relative(value: str, key: str) -> str:
    """``value`` as a path inside the bundle: relative, no ``..``, no drive; else ``ValueError`` naming ``key``."""
    if not value or "\x00" in value:
        raise ValueError(f"{key} must name a file inside the bundle, got {value!r}")
    if PurePosixPath(value).is_absolute() or PureWindowsPath(value).is_absolute() or PureWindowsPath(value).drive:
        raise ValueError(f"{key} must be relative to the bundle directory, got the absolute path {value!r}")
    if ".." in PurePosixPath(value.replace("\\", "/")).parts:
        raise ValueError(f"{key} must stay inside the bundle directory (no '..'), got {value!r}")
    return value


class InputSpec(_Model):
    name: str = Field(default="images", min_length=1)
    shape: list[int | str] = Field(description="NCHW; a string marks a dynamic batch dimension, e.g. 'batch'")
    dtype: Literal["float32", "float16", "uint8"] = "float32"
    layout: Literal["NCHW"] = "NCHW"
    color: Literal["rgb", "bgr"] = "rgb"
    scale: float = Field(default=1 / 255, gt=0, le=1, description="pixel values are multiplied by this first")
    mean: list[float] = Field(default=[0.0, 0.0, 0.0], min_length=3, max_length=3)
    std: list[float] = Field(default=[1.0, 1.0, 1.0], min_length=3, max_length=3)
    letterbox: bool = True
    pad_value: int = Field(default=114, ge=0, le=255)

    @field_validator("shape")
    @classmethod
    def _nchw(cls, v: list[int | str]) -> list[int | str]:
        if len(v) != 4:
            raise ValueError(f"must be [batch, 3, height, width] (NCHW), got {len(v)} dimensions {v}")
        batch, channels, h, w = v
        if isinstance(batch, int) and not 1 <= batch <= MAX_BATCH:
            raise ValueError(f"batch {batch} out of range [1, {MAX_BATCH}] (or a string for a dynamic batch)")
        if channels != 3:
            raise ValueError(f"must have 3 channels (an RGB/BGR image), got {channels!r}")
        for what, side in (("height", h), ("width", w)):
            if not isinstance(side, int):
                raise ValueError(f"{what} must be a fixed number of pixels, got {side!r}")
            if not 1 <= side <= MAX_INPUT_SIDE:
                raise ValueError(f"{what} {side} out of range [1, {MAX_INPUT_SIDE}]")
        return v

    @field_validator("std")
    @classmethod
    def _nonzero_std(cls, v: list[float]) -> list[float]:
        if any(x == 0 for x in v):
            raise ValueError(f"must be non-zero (inputs are divided by it), got {v}")
        return v

    @property
    def height(self) -> int:
        return int(self.shape[2])

    @property
    def width(self) -> int:
        return int(self.shape[3])


class OutputSpec(_Model):
    layout: Literal["yolo", "nms"] = "yolo"
    names: list[str] = Field(default=["output0"], min_length=1, max_length=8)
    num_classes: int = Field(ge=1, le=MAX_CLASSES)
    num_keypoints: int = Field(default=0, ge=0, le=MAX_KEYPOINTS)
    strides: list[int] = Field(default=[8, 16, 32], min_length=1, max_length=8)

    @field_validator("strides")
    @classmethod
    def _strides(cls, v: list[int]) -> list[int]:
        if any(not 1 <= s <= 1024 for s in v):
            raise ValueError(f"each stride must be in [1, 1024], got {v}")
        return v


class KeypointSpec(_Model):
    names: list[str] = Field(min_length=1, max_length=MAX_KEYPOINTS)
    skeleton: list[tuple[int, int]] = []
    sigmas: list[float] = []

    @model_validator(mode="after")
    def _consistent(self) -> KeypointSpec:
        k = len(self.names)
        bad = [pair for pair in self.skeleton if not all(0 <= i < k for i in pair)]
        if bad:
            raise ValueError(f"skeleton pairs must index the {k} keypoint names (0..{k - 1}), got {bad[0]}")
        if self.sigmas and (len(self.sigmas) != k or any(not s > 0 for s in self.sigmas)):
            raise ValueError(f"sigmas must be {k} positive numbers (one per keypoint name), got {len(self.sigmas)}")
        return self


class PostprocessSpec(_Model):
    conf: float = Field(default=0.25, ge=0, le=1)
    iou: float = Field(default=0.45, gt=0, le=1)
    max_det: int = Field(default=100, ge=1, le=10_000)
    class_agnostic: bool = False


class Provenance(_Model):
    recipe_hash: str | None = None
    dataset_hash: str | None = None
    calibration_hash: str | None = None
    checkpoint_hash: str | None = None
    onnx_hash: str | None = None
    tools: dict[str, str] = {}
    created: str | None = None


class EngineSpec(_Model):
    file: str

    @field_validator("file")
    @classmethod
    def _inside(cls, v: str) -> str:
        return bundle_relative(v, "file")

    device_profile: str
    tensorrt_version: str
    gpu_sm: str
    precision: Literal["fp32", "fp16", "int8"]
    dla_core: int | None = None
    flags: list[str] = []
    onnx_hash: str | None = None
    calibration_hash: str | None = None


class Sidecar(_Model):
    schema_version: int = Field(default=SCHEMA_VERSION, ge=1, strict=True)
    name: str
    task: Literal["detect", "pose"]
    model_file: str = "model.onnx"
    class_names: list[str] = Field(min_length=1, max_length=MAX_CLASSES)
    keypoints: KeypointSpec | None = None
    input: InputSpec
    output: OutputSpec
    postprocess: PostprocessSpec = PostprocessSpec()
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    provenance: Provenance = Provenance()
    engines: list[EngineSpec] = []
    extra: dict[str, Any] = {}

    @field_validator("model_file")
    @classmethod
    def _model_inside(cls, v: str) -> str:
        return bundle_relative(v, "model_file")

    @model_validator(mode="after")
    def _consistent(self) -> Sidecar:
        """Fields that describe the same thing agree (the decoder trusts them to)."""
        out = self.output
        if out.num_classes != len(self.class_names):
            raise ValueError(f"output.num_classes {out.num_classes} != {len(self.class_names)} class_names")
        if self.task == "detect" and out.num_keypoints:
            raise ValueError(f"task 'detect' with output.num_keypoints {out.num_keypoints}: keypoints need task 'pose'")
        if self.task == "pose" and not out.num_keypoints:
            raise ValueError("task 'pose' needs output.num_keypoints >= 1")
        if self.keypoints is not None and len(self.keypoints.names) != out.num_keypoints:
            raise ValueError(f"keypoints.names has {len(self.keypoints.names)} names, output.num_keypoints is "
                             f"{out.num_keypoints}")
        return self


class Bundle:
    """A validated bundle directory."""

    def __init__(self, root: Path, sidecar: Sidecar, engine_file: str | None = None) -> None:
        self.root = root
        self.sidecar = sidecar
        #: set when a plain plan file was opened (``model_plan.load_model``): run that engine of ``engines``
        self.engine_file = engine_file
        #: the file the user named when it was no bundle directory (a bare ONNX: ``onnx_meta.bundle_from_onnx``)
        self.source_file: Path | None = None

    @property
    def model_path(self) -> Path:
        return self.root / self.sidecar.model_file

    def __repr__(self) -> str:
        return f"Bundle({str(self.root)!r}, task={self.sidecar.task!r}, precision={self.sidecar.precision!r})"


def parse_sidecar(data: Any, source: str) -> Sidecar:
    """Validate sidecar JSON data; errors name the file and the key path."""
    version = data.get("schema_version") if isinstance(data, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise UserError(
            f"{source}: schema_version {data['schema_version']} is newer than this runtime understands "
            f"({SCHEMA_VERSION}); upgrade edgevision on the device"
        )
    try:
        return Sidecar.model_validate(data)
    except ValidationError as exc:
        raise UserError(validation_line(source, exc, schema=Sidecar)) from None


def load_bundle(path: str | Path) -> Bundle:
    """Open a bundle directory (or the sidecar file inside it) and check that its model file exists."""
    root = Path(path)
    if root.is_file() and root.name == SIDECAR_NAME:
        root = root.parent
    if not root.exists():
        raise UserError(f"{root}: bundle not found")
    if not root.is_dir():
        raise UserError(f"{root}: a bundle is a directory holding {SIDECAR_NAME} and model.onnx")
    side = root / SIDECAR_NAME
    if not side.is_file():
        raise UserError(f"{root}: not a bundle (no {SIDECAR_NAME} sidecar); build one with `edgevision build`")
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{side}: invalid JSON: {exc}") from None
    except RecursionError:
        raise UserError(f"{side}: invalid JSON: nested too deeply") from None
    except OSError as exc:
        raise UserError(f"{side}: cannot read: {exc.strerror or exc}") from None
    bundle = Bundle(root, parse_sidecar(data, str(side)))
    if not bundle.model_path.is_file():
        raise UserError(f"{side}: model_file {bundle.sidecar.model_file!r} is missing from the bundle")
    return bundle
