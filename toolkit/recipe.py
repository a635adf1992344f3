"""Recipe schema: what `edgevision build RECIPE.yaml` reads.

Validated with pydantic (unknown keys are errors, types are checked); a failure becomes one ``UserError``
line naming the file and the key path, e.g. ``recipe.yaml: compress[1].quantize.method: ...``.
The ``compress:`` list is ordered; each item is a one-key mapping whose key names the stage, validated
against that stage's schema (``compress/*_config.py``) and stored with its defaults filled in, so the
recipe's hash covers them; :meth:`Recipe.compress_steps` returns the typed configs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from edgevision.runtime.benchmark import DEFAULT_ITERS, DEFAULT_WARMUP
from edgevision.runtime.errors import UserError
from edgevision.runtime.validation import allowed_range, format_loc, parse_yaml, validation_line

from .compress.distill_config import DistillConfig
from .compress.prune_config import PruneConfig
from .compress.quantize_config import QuantizeConfig
from .gates_config import GatesConfig

CompressConfig = PruneConfig | DistillConfig | QuantizeConfig
COMPRESS_SCHEMAS: dict[str, type[PruneConfig] | type[DistillConfig] | type[QuantizeConfig]] = {
    "prune": PruneConfig, "distill": DistillConfig, "quantize": QuantizeConfig,
}
COMPRESS_STAGES = tuple(COMPRESS_SCHEMAS)
_NOT_ARTIFACT = {"eval", "bench", "targets", "gates"}


# Upper bounds: far above any sensible recipe, low enough that a typo cannot fill the disk, allocate the
# machine's memory or run for days. Each breach is one line naming the key and its range.
MAX_SEED = 2**32 - 1  # numpy's SeedSequence accepts any non-negative int; 32 bits is what users type
MAX_SIDE = 4096  # image / input side in pixels
MAX_IMAGES = 100_000  # synthetic images per split (~20 kB each at 256 px: 2 GB)
MAX_EPOCHS = 1000
MAX_BATCH = 1024
MAX_THREADS = 1024
MAX_DET = 10_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


_FACTORY = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"
#: The model sources; ``name`` (+ ``size``) is the built-in one and the default.
MODEL_SOURCES = ("name", "checkpoint", "ultralytics", "module", "onnx")
#: Keys that describe a ``module:`` model (its weights, loss and preprocessing contract).
MODULE_KEYS = ("weights", "loss", "output_layout", "mean", "std", "color", "pad_value", "strides")


class ModelConfig(_Strict):
    """Where the model comes from: exactly one of ``name`` (+ ``size``), ``checkpoint``, ``ultralytics``,
    ``module`` or ``onnx`` (see ``toolkit/models/sources``)."""

    name: str = "edgedet"
    size: str = "n"
    checkpoint: Path | None = Field(
        default=None, description="a checkpoint written by `edgevision build`/`train`; skips training"
    )
    ultralytics: Path | None = Field(default=None, description="an Ultralytics YOLOv8/YOLO11 .pt (runs its pickle)")
    module: str | None = Field(default=None, pattern=_FACTORY,
                               description="'package.module:factory' returning an nn.Module")
    onnx: Path | None = Field(default=None, description="an ONNX file: quantize/fp16/evaluate/bench, no torch steps")
    weights: Path | None = Field(default=None, description="module: a state dict loaded into the factory's model")
    loss: str | None = Field(default=None, pattern=_FACTORY,
                             description="module: 'package.module:factory', factory(model) -> loss(preds, targets)")
    output_layout: Literal["yolo", "nms"] | None = Field(default=None, description="module: what forward returns")
    mean: tuple[float, float, float] | None = Field(default=None, description="module: per-channel mean (0-1 scale)")
    std: tuple[float, float, float] | None = Field(default=None, description="module: per-channel std (0-1 scale)")
    color: Literal["rgb", "bgr"] | None = Field(default=None, description="module: channel order it expects")
    pad_value: int | None = Field(default=None, ge=0, le=255, description="module: letterbox pad value")
    strides: tuple[int, ...] | None = Field(default=None, description="module: output strides, e.g. [8, 16, 32]")

    @model_validator(mode="before")
    @classmethod
    def _one_source(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        if (raw.get("checkpoint") is not None and raw.get("name") == cls.model_fields["name"].default
                and raw.get("size", cls.model_fields["size"].default) == cls.model_fields["size"].default):
            # a dumped checkpoint recipe (a manifest's ``recipe``): the serializer below keeps the default
            # name/size beside the checkpoint, so it must read back (``regress --reeval`` validates it)
            raw = {k: v for k, v in raw.items() if k not in ("name", "size")}
        named = [k for k in MODEL_SOURCES if raw.get(k) is not None]
        if "size" in raw and "name" not in named:
            named.insert(0, "size")
        if len(named) > 1:
            raise ValueError(f"{named[0]} and {named[1]} are two model sources; give exactly one of "
                             "name (+ size), checkpoint, ultralytics, module, onnx")
        stray = [k for k in MODULE_KEYS if raw.get(k) is not None]
        if stray and "module" not in named:
            raise ValueError(f"{stray[0]}: only for a 'module' model source")
        return raw

    @model_serializer(mode="wrap")
    def _drop_unset_sources(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave out the keys a recipe's source does not use, so recipes (and their stage caches) written
        before the other sources existed keep their hashes."""
        out = handler(self)
        keep = ("name", "size", "checkpoint") if self.kind in ("builtin", "checkpoint") else ()
        return {k: v for k, v in out.items() if k in keep or v is not None}

    @property
    def kind(self) -> str:
        """``builtin``, ``checkpoint``, ``ultralytics``, ``module`` or ``onnx``."""
        for key in MODEL_SOURCES[1:]:
            if getattr(self, key) is not None:
                return key
        return "builtin"


class CocoSplit(_Strict):
    annotations: Path
    images: Path | None = None


class SyntheticData(_Strict):
    """The built-in generator (shapes for ``task: detect``, mannequins for ``task: pose``)."""

    kind: Literal["synthetic"] = "synthetic"
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    num_train: int = Field(default=2000, ge=1, le=MAX_IMAGES)
    num_val: int = Field(default=300, ge=1, le=MAX_IMAGES)
    image_size: int = Field(default=256, ge=32, le=MAX_SIDE, description="synthetic image side in pixels")
    max_objects: int = Field(default=8, ge=1, le=100)


class CocoData(_Strict):
    """COCO json annotations (``images`` defaults to the folder beside each json)."""

    kind: Literal["coco"]
    train: CocoSplit
    val: CocoSplit


class YoloData(_Strict):
    """A YOLO-format ``data.yaml`` (converted to COCO json in the stage cache)."""

    kind: Literal["yolo"]
    data_yaml: Path = Field(description="YOLO-format data.yaml")


DatasetConfig = SyntheticData | CocoData | YoloData
DATASET_KINDS: dict[str, type[SyntheticData] | type[CocoData] | type[YoloData]] = {
    "synthetic": SyntheticData, "coco": CocoData, "yolo": YoloData,
}
# The dataset section as it was dumped before it became a union: the recipe's hashes (bundle provenance and the
# bundle stage's cache key) are computed over this shape, so bundles cached before stay valid.
_FLAT_DATASET = {"kind": "synthetic", "seed": 0, "num_train": 2000, "num_val": 300, "image_size": 256,
                 "max_objects": 8, "train": None, "val": None, "data_yaml": None}


def _dataset_section(raw: Any) -> Any:
    """Validate ``dataset:`` by its ``kind`` (default synthetic); a key of another kind is an error naming it."""
    if not isinstance(raw, dict):
        return raw  # pydantic reports the type
    kind = raw.get("kind", "synthetic")
    if kind not in DATASET_KINDS:
        raise ValueError(f"dataset.kind: must be one of {', '.join(DATASET_KINDS)}, got {kind!r}")
    schema = DATASET_KINDS[kind]
    for key in raw:
        if key not in schema.model_fields:
            owners = [k for k, sch in DATASET_KINDS.items() if key in sch.model_fields]
            why = f"belongs to kind {' / '.join(owners)}" if owners else "unknown key"
            raise ValueError(f"dataset.{key}: {why}, not kind {kind!r} (its keys: {', '.join(schema.model_fields)})")
    try:
        return schema.model_validate({**raw, "kind": kind})
    except ValidationError as exc:
        raise ValueError(validation_line("dataset", exc, schema=schema).replace("dataset: ", "dataset.", 1)
                         + f" (kind {kind!r})") from None


class AugmentSection(_Strict):
    """Training augmentation strengths (0 disables one); see toolkit/data/augment.py. The default is a
    horizontal flip only, for every dataset (the shipped recipes spell it out, so copying one or leaving
    ``augment`` out gives the same): in the short CPU schedules measured here colour/geometric jitter only
    slowed learning (0.58 mAP50-95 flip-only, 5 epochs). Longer runs on real data: see the README."""

    flip: float = Field(default=0.5, ge=0, le=1)
    hsv_h: float = Field(default=0.0, ge=0, le=0.5)
    hsv_s: float = Field(default=0.0, ge=0, le=1)
    hsv_v: float = Field(default=0.0, ge=0, le=1)
    scale: float = Field(default=0.0, ge=0, lt=1)
    translate: float = Field(default=0.0, ge=0, le=0.5)


class TrainConfig(_Strict):
    epochs: int = Field(default=5, ge=1, le=MAX_EPOCHS)
    time: float | None = Field(default=None, gt=0, le=1000, description=(
        "wall-clock training budget in hours (Ultralytics' time=); replaces epochs: training stops when it is "
        "spent and the lr schedule (warmup, decay to lr x lrf) is fitted to the iterations that fit in it"))
    batch: int = Field(default=16, ge=1, le=MAX_BATCH)
    lr: float = Field(default=0.002, gt=0, le=10)
    weight_decay: float = Field(default=0.0005, ge=0, le=1)
    warmup_epochs: float = Field(default=0.5, ge=0, le=MAX_EPOCHS)
    augment: AugmentSection = AugmentSection()
    optimizer: Literal["sgd", "adamw"] = "adamw"
    ema: bool = True
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    num_threads: int = Field(default=0, ge=0, le=MAX_THREADS, description="0 = all cores")
    device: str = Field(default="cpu", pattern=r"^(cpu|cuda(:\d+)?)$",
                        description="torch device for training, distillation and QAT: cpu, cuda or cuda:N")

    def cache_material(self) -> dict[str, Any]:
        """This section as stage-cache input. ``device`` counts only when it is not the default ``cpu``, so
        caches of CPU builds made before the key existed stay valid (GPU training gives other weights);
        ``time`` only when set."""
        out = self.model_dump(mode="json")
        if out["device"] == "cpu":
            del out["device"]
        if out["time"] is None:  # likewise: epoch-bound builds keep their caches
            del out["time"]
        return out


class ParityConfig(_Strict):
    samples: int = Field(default=4, ge=1, le=1000)
    atol: float = Field(default=1e-3, gt=0, le=1e3)
    rtol: float = Field(default=1e-3, gt=0, le=1e3)


class ExportConfig(_Strict):
    opset: int = Field(default=17, ge=11, le=21)
    dynamic_batch: bool = False
    simplify: bool = True
    parity: ParityConfig = ParityConfig()
    nms: bool = Field(default=False, description=(
        "bundle the model with NMS inside the graph (output layout 'nms': the device's CPU only thresholds); "
        "IoU is postprocess.iou, the score floor min(eval.conf, postprocess.conf); batch 1, opset >= 13"))


class PostprocessConfig(_Strict):
    conf: float = Field(default=0.25, ge=0, le=1)
    iou: float = Field(default=0.45, gt=0, le=1)
    max_det: int = Field(default=100, ge=1, le=MAX_DET)


class EvalConfig(_Strict):
    conf: float = Field(default=0.001, ge=0, le=1)
    iou: float = Field(default=0.6, gt=0, le=1)
    max_det: int = Field(default=100, ge=1, le=MAX_DET)
    limit: int | None = Field(default=None, ge=1, le=10 * MAX_IMAGES,
                              description="evaluate only the first N val images")


class BenchConfig(_Strict):
    warmup: int = Field(default=DEFAULT_WARMUP, ge=0, le=10_000)
    iters: int = Field(default=DEFAULT_ITERS, ge=1, le=100_000)  # `edgevision bench`'s default too
    threads: int = Field(default=0, ge=0, le=MAX_THREADS, description="0 = all cores")
    backends: list[Literal["torch-cpu", "onnxruntime-cpu"]] = ["torch-cpu", "onnxruntime-cpu"]


class Recipe(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    task: Literal["detect", "pose"] = "detect"
    model: ModelConfig = ModelConfig()
    input_size: int = Field(default=256, ge=32, le=MAX_SIDE)
    dataset: DatasetConfig = Field(default_factory=SyntheticData, discriminator="kind")
    train: TrainConfig = TrainConfig()
    export: ExportConfig = ExportConfig()
    postprocess: PostprocessConfig = PostprocessConfig()
    eval: EvalConfig = EvalConfig()
    bench: BenchConfig = BenchConfig()
    targets: list[str] = ["x86-cpu"]
    compress: list[dict[str, Any]] = []
    gates: GatesConfig = GatesConfig()

    @field_validator("input_size")
    @classmethod
    def _multiple_of_32(cls, v: int) -> int:
        if v % 32:
            raise ValueError(f"must be a multiple of 32 (the largest stride), got {v}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _dataset_by_kind(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and "dataset" in raw:
            return {**raw, "dataset": _dataset_section(raw["dataset"])}
        return raw

    @model_validator(mode="before")
    @classmethod
    def _compress_items(cls, raw: Any) -> Any:
        """Validate each ``compress`` item by its stage's schema; errors carry the full key path
        (``compress[1].quantize.method``) in the message, as pydantic's own location stops at the list."""
        if not isinstance(raw, dict) or not isinstance(raw.get("compress"), list):
            return raw
        items = []
        for i, item in enumerate(raw["compress"]):
            where = f"compress[{i}]"
            if not isinstance(item, dict) or len(item) != 1:
                raise ValueError(f"{where}: must be a one-key mapping like '- prune: {{...}}', got {item!r}")
            ((stage, body),) = item.items()
            if stage not in COMPRESS_SCHEMAS:
                raise ValueError(f"{where}: unknown stage {stage!r}; known: {', '.join(COMPRESS_STAGES)}")
            try:
                cfg = COMPRESS_SCHEMAS[stage].model_validate(body if body is not None else {})
            except ValidationError as exc:
                first = exc.errors()[0]
                loc = format_loc((stage, *first["loc"]))
                msg = str(first["msg"]).removeprefix("Value error, ")
                msg = "unknown key" if first["type"] == "extra_forbidden" else msg
                if rng := allowed_range(COMPRESS_SCHEMAS[stage], first["loc"]):
                    msg += f" ({rng})"
                raise ValueError(f"{where}.{loc}: {msg}") from None
            items.append({stage: cfg.model_dump(mode="json")})
        q = [i for i, it in enumerate(items) if "quantize" in it]
        if q and q[0] != len(items) - 1:
            raise ValueError(f"compress[{q[0]}]: 'quantize' must be the last step (it ends the float chain)")
        return {**raw, "compress": items}

    def compress_steps(self) -> list[tuple[str, CompressConfig]]:
        """The ``compress`` list as typed configs, in order."""
        out: list[tuple[str, CompressConfig]] = []
        for item in self.compress:
            ((stage, body),) = item.items()
            out.append((stage, COMPRESS_SCHEMAS[stage].model_validate(body)))
        return out

    def _hash_dump(self, exclude: set[str] | None = None) -> dict[str, Any]:
        out = self.model_dump(mode="json", exclude=exclude)
        if out.get("gates") == GatesConfig().model_dump(mode="json"):
            del out["gates"]  # recipes without gates keep the hash they had before the section existed
        out["dataset"] = {**_FLAT_DATASET, **out["dataset"]}
        return out

    def digest(self) -> str:
        """Content hash of the whole validated recipe."""
        blob = json.dumps(self._hash_dump(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    def artifact_digest(self) -> str:
        """Hash of the sections that shape the deployed model (not eval/bench/targets): the bundle's
        provenance, so re-scoring or re-timing a model does not make its bundle look different."""
        blob = json.dumps(self._hash_dump(exclude=_NOT_ARTIFACT), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


def load_yaml(path: Path) -> Any:
    """Read a YAML file; missing file or malformed YAML -> ``UserError`` naming the file (and line)."""
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    return parse_yaml(path.read_text(encoding="utf-8"), str(path))


def load_recipe(path: Path) -> Recipe:
    """Load and validate a recipe; relative dataset/checkpoint paths resolve against the recipe's folder."""
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a recipe must be a YAML mapping, got {type(raw).__name__}")
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        raise UserError(validation_line(str(path), exc, schema=Recipe)) from None
    return _resolve_paths(recipe, path.parent)


def _resolve_paths(recipe: Recipe, base: Path) -> Recipe:
    def fix(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else (base / p).resolve())

    ds: DatasetConfig = recipe.dataset
    if isinstance(ds, CocoData):
        ds = ds.model_copy(update={k: s.model_copy(update={"annotations": fix(s.annotations), "images": fix(s.images)})
                                   for k, s in (("train", ds.train), ("val", ds.val))})
    elif isinstance(ds, YoloData):
        ds = ds.model_copy(update={"data_yaml": fix(ds.data_yaml)})
    m = recipe.model
    model = m.model_copy(update={k: fix(getattr(m, k)) for k in ("checkpoint", "ultralytics", "onnx", "weights")})
    compress = [{stage: {**body, "teacher": str(fix(Path(body["teacher"])))}
                 if stage == "distill" and body.get("teacher") else body} for item in recipe.compress
                for stage, body in item.items()]
    acc = recipe.gates.accuracy
    gates = recipe.gates.model_copy(update={"accuracy": acc.model_copy(update={"baseline": fix(acc.baseline)})})
    return recipe.model_copy(update={"dataset": ds, "model": model, "compress": compress, "gates": gates})
