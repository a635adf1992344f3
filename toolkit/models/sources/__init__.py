"""Model sources behind one interface (:class:`ModelSource`); :func:`open_source` picks the recipe's.

``prepare`` is what a build calls first: it opens the source, settles the effective input size and task
(the recipe's when it sets them, else the model's own: an Ultralytics checkpoint's ``imgsz``, an ONNX
file's input) and refuses compression steps the source cannot do, each as one line naming the step,
before any stage runs. Sources are looked up by kind in :data:`OPENERS`, whose modules are imported on
first use (``ultralytics`` needs the optional extra).
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgevision.runtime.errors import UserError

from .base import Contract, ModelSource, SourceInfo, rebuild_skeleton, register_skeleton

if TYPE_CHECKING:
    from ...recipe import Recipe

__all__ = ["OPENERS", "Contract", "ModelSource", "SourceInfo", "check_steps", "open_source", "prepare",
           "rebuild_skeleton", "register_skeleton"]

#: kind -> (module in this package, opener name, what the opener takes: the recipe or its model section)
OPENERS: dict[str, tuple[str, str, str]] = {
    "builtin": ("builtin", "BuiltinSource", "recipe"),
    "checkpoint": ("checkpoint", "CheckpointSource", "model"),
    "ultralytics": ("ultralytics", "open_ultralytics", "model"),
    "module": ("module", "ModuleSource", "recipe"),
    "onnx": ("onnx", "OnnxSource", "recipe"),
}


def open_source(recipe: Recipe, base: Path | None = None) -> ModelSource:
    """The recipe's model source (nothing is loaded until ``describe()``)."""
    kind = recipe.model.kind
    mod_name, opener, takes = OPENERS[kind]
    try:
        mod = importlib.import_module(f"{__name__}.{mod_name}")
    except ImportError as exc:
        hint = " (pip install 'edgevision[ultralytics]')" if kind == "ultralytics" else ""
        raise UserError(f"model.{kind}: this model source is not available: {exc}{hint}") from None
    fn: Any = getattr(mod, opener)
    if kind == "module":
        return fn(recipe, base)
    return fn(recipe if takes == "recipe" else recipe.model)


def prepare(recipe: Recipe, base: Path | None = None) -> tuple[Recipe, ModelSource, SourceInfo]:
    """Open and describe the source; returns the recipe with the effective ``input_size`` and ``task``."""
    source = open_source(recipe, base)
    info = source.describe()
    fields = recipe.model_fields_set
    if "task" in fields and info.task != recipe.task:
        raise UserError(f"task: the recipe says {recipe.task!r} but model.{_key(recipe)} is a {info.task} model")
    size = recipe.input_size if "input_size" in fields else info.contract.input_size
    stride = max(info.contract.strides)
    if size % 32 or size % stride:
        raise UserError(f"input_size: the model's {size} is not a multiple of 32 (and of its largest stride "
                        f"{stride}); set input_size in the recipe")
    info = replace(info, contract=replace(info.contract, input_size=size))
    recipe = recipe.model_copy(update={"input_size": size, "task": info.task})
    check_steps(recipe, info)
    return recipe, source, info


def _key(recipe: Recipe) -> str:
    kind = recipe.model.kind
    return "name" if kind == "builtin" else kind


def check_steps(recipe: Recipe, info: SourceInfo) -> None:
    """One ``UserError`` line for the first compression step this source cannot do."""
    from ...compress.distill_config import DistillConfig
    from ...compress.prune_config import PruneConfig
    from ...compress.quantize_config import QuantizeConfig

    src = f"model.{_key(recipe)}"
    for i, (stage, cfg) in enumerate(recipe.compress_steps()):
        where = f"compress[{i}].{stage}"
        if not info.has_torch:
            what = None
            if isinstance(cfg, PruneConfig | DistillConfig):
                what = where
            elif isinstance(cfg, QuantizeConfig) and cfg.qat is not None:
                what = f"{where}.qat"
            if what:
                raise UserError(f"{what}: needs a torch model, but {src} is an ONNX file; use model.checkpoint / "
                                "model.ultralytics / model.module, or drop this step")
            continue
        if isinstance(cfg, PruneConfig) and cfg.importance == "taylor" and not info.has_loss:
            raise UserError(f"{where}.importance: 'taylor' needs a task loss, and {src} has none (set model.loss, "
                            "or use l1 / l2 / bn_scale)")
        if isinstance(cfg, DistillConfig):
            if cfg.student is not None:
                continue  # a fresh built-in student: its own loss and head
            if not info.has_loss and (cfg.mode == "finetune" or cfg.compare_finetune or cfg.gt_weight > 0):
                which = ("mode: finetune" if cfg.mode == "finetune" else
                         "compare_finetune" if cfg.compare_finetune else "gt_weight > 0")
                raise UserError(f"{where}: {which} needs a task loss, and {src} has none; set model.loss, or "
                                "distill only (gt_weight: 0, no compare_finetune)")
            if cfg.mode == "distill" and not info.has_head_protocol:
                raise UserError(f"{where}: distillation reads raw DFL head maps, and {src} has no model.head with "
                                "nc / nk / reg_max / strides; quantize or prune it without distill")
        if isinstance(cfg, QuantizeConfig) and cfg.qat is not None and not info.has_loss:
            raise UserError(f"{where}.qat: needs a task loss, and {src} has none; set model.loss, or use PTQ only")
