"""Model sources: where a recipe's model comes from, behind one small interface.

A recipe's ``model:`` section names exactly one source (built-in ``name`` + ``size``, an edgevision
``checkpoint``, an ``ultralytics`` checkpoint, a ``module: "package.module:factory"``, or an ``onnx`` file).
Each source module in this package turns its section into a :class:`ModelSource`; the stages only ever see
that interface and the edgevision checkpoints it produces, never where the model came from.

Contract between sources and the rest of the toolkit:

- :meth:`ModelSource.describe` says what the model is (task, classes, keypoints) and how to feed it
  (:class:`Contract`, copied into the bundle sidecar), plus a ``fingerprint`` for stage cache keys.
- A torch source materialises the model as an edgevision checkpoint (:meth:`ModelSource.to_checkpoint`);
  prune / distill / QAT / export then work on checkpoints as they always have. A checkpoint records its
  source kind in ``meta.extra["source"]``; :func:`rebuild_skeleton` asks the source kind registered with
  :func:`register_skeleton` for a module whose state dict the checkpoint's weights fit (narrowed after
  pruning by ``checkpoint.resize_to_state_dict``), so checkpoints stay ``weights_only`` loadable.
- An ONNX source has no torch model: :meth:`ModelSource.onnx_file` gives the file, and asking it for a
  torch step is a :class:`~edgevision.runtime.errors.UserError` naming the step.

Hand-written because no library describes "a model plus its deployment contract" across these sources.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgevision.runtime.errors import UserError

if TYPE_CHECKING:
    from torch import nn

    from ...checkpoint import CheckpointMeta


@dataclass(frozen=True)
class Contract:
    """How to feed the model and what it emits: the sidecar's input/output block."""

    input_size: int
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    rgb: bool = True
    pad_value: int = 114
    strides: tuple[int, ...] = (8, 16, 32)
    output_layout: str = "yolo"  # "yolo" | "nms", as the runtime decodes


@dataclass(frozen=True)
class SourceInfo:
    """What a source knows about its model before any stage runs."""

    kind: str  # builtin | checkpoint | ultralytics | module | onnx
    task: str  # detect | pose
    contract: Contract
    fingerprint: str  # content hash: changes whenever the model would
    class_names: list[str] | None = None  # None: the dataset's
    num_keypoints: int | None = None  # None: the dataset's (pose) / 0 (detect)
    has_torch: bool = True  # False for onnx: prune, distill, QAT and torch benchmarks are unavailable
    extra: dict[str, Any] = field(default_factory=dict)  # source-specific facts for the report
    has_loss: bool = True  # a task loss exists (fine-tune, QAT, Taylor importance); module without `loss:`: False
    has_head_protocol: bool = True  # model.head with nc/nk/reg_max/strides + raw maps (distillation's KD terms)


class ModelSource(ABC):
    """One model source; subclasses live in sibling modules, one per kind."""

    kind: str = ""

    @abstractmethod
    def describe(self) -> SourceInfo:
        """Task, classes, contract, fingerprint. Cheap enough to call before the data stage."""

    def to_checkpoint(self, dst: Path, *, class_names: list[str], num_keypoints: int,
                      keypoints: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write the (trained) model as an edgevision checkpoint at ``dst``; returns a record for the
        manifest. Sources without a torch model raise :class:`UserError`."""
        raise UserError(f"model: a {self.kind} model has no torch weights to write as a checkpoint")

    def onnx_file(self) -> Path | None:
        """The ONNX file itself, for sources that are one (``onnx``); ``None`` otherwise."""
        return None

    def require_torch(self, step: str) -> None:
        """``UserError`` naming ``step`` when this source has no torch model (prune, distill, QAT, train)."""
        if not self.describe().has_torch:
            raise UserError(f"{step}: needs a torch model, but model.{self.kind} is an ONNX file; use "
                            "model.checkpoint / model.ultralytics / model.module, or drop this step")


def source_record(kind: str, contract: Contract, **extra: Any) -> dict[str, Any]:
    """The ``meta.extra["source"]`` record of a checkpoint: its kind, its contract (so ``edgevision export``
    and the bundle stage need no registry entry) and whatever the kind's skeleton needs (JSON-ready)."""
    c = asdict(contract)
    c["mean"], c["std"], c["strides"] = list(c["mean"]), list(c["std"]), list(c["strides"])
    return {"kind": kind, "contract": c, **extra}


def contract_from_meta(meta: CheckpointMeta) -> Contract:
    """The contract a checkpoint was written with: its source record's, else the built-in registry's
    (checkpoints written before sources existed), else the defaults (RGB, x/255, pad 114, strides 8/16/32)."""
    src = meta.extra.get("source")
    if isinstance(src, dict) and isinstance(src.get("contract"), dict):
        c = dict(src["contract"])
        for key in ("mean", "std", "strides"):
            if key in c:
                c[key] = tuple(c[key])
        c["input_size"] = int(c.get("input_size", meta.input_size))
        return Contract(**c)
    if not isinstance(src, dict):
        from ..registry import _REGISTRY

        spec = _REGISTRY.get(meta.model)
        if spec is not None:
            return Contract(input_size=meta.input_size, mean=spec.mean, std=spec.std, rgb=spec.rgb,
                            pad_value=spec.pad_value, strides=spec.strides, output_layout=spec.output_layout)
    strides = src.get("strides") if isinstance(src, dict) else None  # a record without a contract may have them
    if isinstance(strides, list | tuple) and strides and all(isinstance(s, int) for s in strides):
        return Contract(input_size=meta.input_size, strides=tuple(strides))
    return Contract(input_size=meta.input_size)


Skeleton = Callable[["CheckpointMeta"], "nn.Module"]
_SKELETONS: dict[str, Skeleton] = {}
KINDS = ("builtin", "checkpoint", "ultralytics", "module", "onnx")


def register_skeleton(kind: str, build: Skeleton) -> None:
    """Register how checkpoints of source ``kind`` rebuild their (unpruned) module."""
    _SKELETONS[kind] = build


def rebuild_skeleton(kind: str, meta: CheckpointMeta) -> nn.Module:
    """The module a checkpoint of source ``kind`` loads its weights into (the kind's module in this package
    is imported on first use, which registers its skeleton)."""
    if kind not in _SKELETONS and kind in KINDS:
        import importlib

        try:
            importlib.import_module(f"{__package__}.{kind}")
        except ImportError as exc:
            raise UserError(f"checkpoint of model source {kind!r}: cannot load its support ({exc})") from None
    try:
        build = _SKELETONS[kind]
    except KeyError:
        raise UserError(f"checkpoint of unknown model source {kind!r}; known: {', '.join(sorted(_SKELETONS))}") \
            from None
    return build(meta)
