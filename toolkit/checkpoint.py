"""Checkpoints: a trained model plus what is needed to rebuild and deploy it.

Format: ``torch.save`` of a dict with ``format: "edgevision-checkpoint"``, the registry name/size, class
names, input size and the state dict. Loading rebuilds the module from the registry, so a checkpoint never
pickles code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgevision.runtime.errors import UserError

from .models.registry import build_model

FORMAT = "edgevision-checkpoint"


@dataclass
class CheckpointMeta:
    model: str
    size: str
    task: str
    class_names: list[str]
    input_size: int
    num_keypoints: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(path: Path, model: nn.Module, meta: CheckpointMeta) -> None:
    """Write atomically (torch.save to a temp sibling, then rename)."""
    tmp = path.with_name(path.name + ".tmp-save")
    torch.save({"format": FORMAT, "meta": meta.__dict__, "state_dict": model.state_dict()}, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> tuple[nn.Module, CheckpointMeta]:
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt/foreign file
        raise UserError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise UserError(f"{path}: not an edgevision checkpoint (missing format={FORMAT!r})")
    meta = CheckpointMeta(**blob["meta"])
    model = build_model(meta.model, meta.size, num_classes=len(meta.class_names),
                        num_keypoints=meta.num_keypoints)
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:
        raise UserError(f"{path}: weights do not fit {meta.model}-{meta.size}: {str(exc).splitlines()[0]}") \
            from None
    model.eval()
    return model, meta
