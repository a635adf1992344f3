"""Built-in source (``model: {name, size}``): a registry model the build's train stage fits from scratch.

Its checkpoints carry no source record (the format predates sources), so :func:`load_checkpoint` builds
them from the registry; the ``builtin`` skeleton below serves records that name the kind explicitly.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from torch import nn

from edgevision.runtime.errors import UserError

from ..registry import build_model, get_model_spec
from .base import Contract, ModelSource, SourceInfo, register_skeleton

if TYPE_CHECKING:
    from ...checkpoint import CheckpointMeta
    from ...recipe import Recipe


class BuiltinSource(ModelSource):
    kind = "builtin"

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe

    def describe(self) -> SourceInfo:
        cfg, task = self.recipe.model, self.recipe.task
        spec = get_model_spec(cfg.name)  # unknown name -> UserError listing the known ones
        if cfg.size not in spec.sizes:
            raise UserError(f"model.size: {spec.name!r} has no size {cfg.size!r}; known sizes: {', '.join(spec.sizes)}")
        if spec.task != task:
            hint = {"pose": "edgepose", "detect": "edgedet"}.get(task, "")
            raise UserError(f"model.name: {spec.name!r} is a {spec.task} model but the recipe's task is {task!r}"
                            + (f"; use {hint!r}" if hint else ""))
        contract = Contract(input_size=self.recipe.input_size, mean=spec.mean, std=spec.std, rgb=spec.rgb,
                            pad_value=spec.pad_value, strides=spec.strides, output_layout=spec.output_layout)
        blob = json.dumps({"name": cfg.name, "size": cfg.size}, sort_keys=True).encode()
        return SourceInfo(kind=self.kind, task=spec.task, contract=contract,
                          fingerprint=hashlib.sha256(blob).hexdigest(), extra={"needs_training": True})


def _skeleton(meta: CheckpointMeta) -> nn.Module:
    return build_model(meta.model, meta.size, num_classes=len(meta.class_names), num_keypoints=meta.num_keypoints)


register_skeleton("builtin", _skeleton)
