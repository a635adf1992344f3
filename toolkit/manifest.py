"""The typed manifest: what `edgevision build` writes to ``OUT/manifest.json`` and what regression gates read.

One pydantic model, checked when the build writes the file and when anything reads it, so the writer and
every reader (``regress``, the pytest plugin) agree on names and types. Fields are only ever added; a
changed meaning bumps :data:`SCHEMA_VERSION`, and a manifest of another version, or a file that is not an
edgevision manifest, is a one-line :class:`~edgevision.runtime.errors.UserError` naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgevision.runtime.errors import UserError
from edgevision.runtime.validation import validation_line

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


class _Open(BaseModel):
    """Known fields are typed; records a later version adds are kept, not rejected."""

    model_config = ConfigDict(extra="allow")


class Latency(_Open):
    median: float = Field(gt=0)
    p90: float = Field(gt=0)
    p99: float = Field(gt=0)
    mean: float | None = None
    iters: int | None = None
    vs_original: float | None = None
    vs_torch: float | None = None
    timing: dict[str, Any] | None = None  # runtime.benchmark.TimingSettings.to_dict(): how it was measured


class Variant(_Open):
    bundle: str
    precision: str = "fp32"
    metrics: dict[str, float]
    latency_ms: dict[str, Latency] = {}
    parity: dict[str, Any] = {}
    macs: int | None = Field(default=None, ge=0)
    params: int | None = Field(default=None, ge=0)
    size_bytes: int = Field(ge=0)
    onnx_sha256: str | None = None
    compress: dict[str, Any] | None = None
    metrics_tensorrt_qdq: dict[str, float] | None = None
    ap_per_class: dict[str, dict[str, float | None]] | None = None  # box AP50 / AP50-95 per class name
    eval_curves: str | None = None  # per-class PR curves, relative to the build dir (stages.eval_curves)


class DatasetRecord(_Open):
    hash: str
    train_images: int
    val_images: int
    classes: list[str]


class GateCheck(_Open):
    """One check of the recipe's ``gates`` (the same record `edgevision regress` prints)."""

    name: str  # e.g. "fp32.accuracy_min.map50_95", "fp32.budget.x86-cpu.p50"
    kind: str  # accuracy | latency | budget | size | presence
    status: Literal["pass", "fail", "stale", "skip"]
    message: str
    values: dict[str, Any] = {}


class GatesRecord(_Open):
    """Added in schema 1 without a bump: absent from builds whose recipe declares no ``gates``."""

    passed: bool
    checks: list[GateCheck]


class Manifest(_Open):
    schema_version: int
    name: str
    task: str
    created: str
    recipe: dict[str, Any]
    recipe_hash: str
    dataset: DatasetRecord
    variants: dict[str, Variant]
    targets: dict[str, Any] = {}
    artifacts: list[dict[str, Any]] = []
    stages: list[dict[str, Any]] = []
    tools: dict[str, Any] = {}
    build_seconds: float = 0.0
    gates: GatesRecord | None = None


def check_manifest(data: Any, source: str) -> Manifest:
    """Validate a manifest dict; a foreign or other-version document is a one-line ``UserError``."""
    if not isinstance(data, dict) or "variants" not in data or "schema_version" not in data:
        raise UserError(f"{source}: not an edgevision build manifest (no schema_version/variants)")
    if data["schema_version"] != SCHEMA_VERSION:
        raise UserError(f"{source}: manifest schema_version {data['schema_version']!r}; this edgevision reads "
                        f"version {SCHEMA_VERSION} (rebuild with `edgevision build`)")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise UserError(validation_line(source, exc)) from None


def load_manifest(path: Path) -> Manifest:
    """Read ``path`` (a manifest file or a build directory holding one)."""
    file = path / MANIFEST_NAME if path.is_dir() else path
    if not file.is_file():
        raise UserError(f"{file}: no manifest (expected a build directory written by `edgevision build`)")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{file}: unreadable manifest ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    return check_manifest(data, str(file))
