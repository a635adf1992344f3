"""The bundle: the only contract between toolkit and runtime.

A bundle is a directory with ``model.onnx``, optional plain TensorRT plans, and ``edgevision.json`` (the
sidecar) which says everything needed to run the model without guessing. The schema is pydantic so that
both the writer (toolkit) and the reader (runtime) share one definition and a hand-edited sidecar gets a
one-line error naming the key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import UserError
from .validation import validation_line

SIDECAR_NAME = "edgevision.json"
SCHEMA_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputSpec(_Model):
    name: str = "images"
    shape: list[int | str] = Field(description="NCHW; a string marks a dynamic dimension, e.g. 'batch'")
    dtype: Literal["float32", "float16", "uint8"] = "float32"
    layout: Literal["NCHW"] = "NCHW"
    color: Literal["rgb", "bgr"] = "rgb"
    scale: float = Field(default=1 / 255, description="pixel values are multiplied by this first")
    mean: list[float] = [0.0, 0.0, 0.0]
    std: list[float] = [1.0, 1.0, 1.0]
    letterbox: bool = True
    pad_value: int = Field(default=114, ge=0, le=255)

    @property
    def height(self) -> int:
        return int(self.shape[2])

    @property
    def width(self) -> int:
        return int(self.shape[3])


class OutputSpec(_Model):
    layout: Literal["yolo", "nms"] = "yolo"
    names: list[str] = ["output0"]
    num_classes: int = Field(ge=1)
    num_keypoints: int = Field(default=0, ge=0)
    strides: list[int] = [8, 16, 32]


class KeypointSpec(_Model):
    names: list[str]
    skeleton: list[tuple[int, int]] = []
    sigmas: list[float] = []


class PostprocessSpec(_Model):
    conf: float = Field(default=0.25, ge=0, le=1)
    iou: float = Field(default=0.45, gt=0, le=1)
    max_det: int = Field(default=100, ge=1)
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
    device_profile: str
    tensorrt_version: str
    gpu_sm: str
    precision: Literal["fp32", "fp16", "int8"]
    dla_core: int | None = None
    flags: list[str] = []
    onnx_hash: str | None = None
    calibration_hash: str | None = None


class Sidecar(_Model):
    schema_version: int = SCHEMA_VERSION
    name: str
    task: Literal["detect", "pose"]
    model_file: str = "model.onnx"
    class_names: list[str]
    keypoints: KeypointSpec | None = None
    input: InputSpec
    output: OutputSpec
    postprocess: PostprocessSpec = PostprocessSpec()
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    provenance: Provenance = Provenance()
    engines: list[EngineSpec] = []
    extra: dict[str, Any] = {}


class Bundle:
    """A validated bundle directory."""

    def __init__(self, root: Path, sidecar: Sidecar, engine_file: str | None = None) -> None:
        self.root = root
        self.sidecar = sidecar
        #: set when a plain plan file was opened (``model_plan.load_model``): run that engine of ``engines``
        self.engine_file = engine_file

    @property
    def model_path(self) -> Path:
        return self.root / self.sidecar.model_file

    def __repr__(self) -> str:
        return f"Bundle({str(self.root)!r}, task={self.sidecar.task!r}, precision={self.sidecar.precision!r})"


def parse_sidecar(data: Any, source: str) -> Sidecar:
    """Validate sidecar JSON data; errors name the file and the key path."""
    if isinstance(data, dict) and int(data.get("schema_version", SCHEMA_VERSION)) > SCHEMA_VERSION:
        raise UserError(
            f"{source}: schema_version {data['schema_version']} is newer than this runtime understands "
            f"({SCHEMA_VERSION}); upgrade edgevision on the device"
        )
    try:
        return Sidecar.model_validate(data)
    except ValidationError as exc:
        raise UserError(validation_line(source, exc)) from None


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
        data = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{side}: invalid JSON: {exc}") from None
    bundle = Bundle(root, parse_sidecar(data, str(side)))
    if not bundle.model_path.is_file():
        raise UserError(f"{side}: model_file {bundle.sidecar.model_file!r} is missing from the bundle")
    return bundle
