"""Checkpoints: a trained model plus what is needed to rebuild and deploy it.

Format: ``torch.save`` of a dict with ``format: "edgevision-checkpoint"``, the registry name/size, class
names, input size and the state dict. Loading rebuilds the module from the registry, so a checkpoint never
pickles code. A checkpoint of another model source (``meta.extra["source"] = {"kind": ...}``, see
``models/sources``) is rebuilt by that source's registered skeleton instead; checkpoints without a source
record are built-in ones and load as they always did.

Channel-pruned models (``meta.extra["pruned"]``, written by the prune stage) are rebuilt the same way and
then narrowed: the state dict's tensor shapes *are* the channel configuration, so each Conv2d / BatchNorm2d
/ Linear whose stored weight is smaller is resized to it before loading. Torch-Pruning's own
``tp.state_dict`` pickles every module's ``__dict__`` (not loadable with ``weights_only=True``), hence this.
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
    meta = parse_meta(blob.get("meta"), path)
    state = blob.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise UserError(f"{path}: checkpoint has no state_dict of named tensors")
    what = f"{meta.model}-{meta.size}" if meta.size else meta.model
    source = meta.extra.get("source")
    try:
        if isinstance(source, dict) and source.get("kind"):
            from .models.sources.base import rebuild_skeleton

            model = rebuild_skeleton(str(source["kind"]), meta)
        else:
            model = build_model(meta.model, meta.size, num_classes=len(meta.class_names),
                                num_keypoints=meta.num_keypoints)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    if meta.extra.get("pruned"):
        try:
            resize_to_state_dict(model, state, path)
        except (IndexError, ValueError, RuntimeError) as exc:
            raise UserError(f"{path}: pruned weights do not fit {what}: {exc}") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # torch: "Error(s) in loading state_dict for X:\n\t<what>" -> <what>
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
        raise UserError(f"{path}: weights do not fit {what}: {lines[min(1, len(lines) - 1)][:300]}") from None
    model.eval()
    if meta.extra.get("pruned"):
        _check_forward(model, path)
    return model, meta


_META_TYPES: dict[str, type | tuple[type, ...]] = {
    "model": str, "size": str, "task": str, "class_names": list, "input_size": int, "num_keypoints": int,
    "extra": dict,
}
MAX_CLASSES = 100_000  # the sidecar's bound (edgevision.runtime.bundle)


def parse_meta(raw: object, path: Path) -> CheckpointMeta:
    """The checkpoint's ``meta`` dict as a ``CheckpointMeta``; missing, unknown or mistyped keys -> ``UserError``."""
    if not isinstance(raw, dict):
        raise UserError(f"{path}: checkpoint has no 'meta' mapping (model, size, task, class_names, input_size)")
    unknown = sorted(str(k) for k in raw if k not in _META_TYPES)
    if unknown:
        raise UserError(f"{path}: checkpoint meta has unknown key(s) {', '.join(unknown)[:120]}")
    required = [k for k in ("model", "size", "task", "class_names", "input_size") if k not in raw]
    if required:
        raise UserError(f"{path}: checkpoint meta lacks {', '.join(required)}")
    for key, typ in _META_TYPES.items():
        if key in raw and (not isinstance(raw[key], typ) or isinstance(raw[key], bool)):
            raise UserError(f"{path}: checkpoint meta.{key} must be {getattr(typ, '__name__', typ)}, "
                            f"got {type(raw[key]).__name__}")
    names = raw["class_names"]
    if not 1 <= len(names) <= MAX_CLASSES or not all(isinstance(n, str) for n in names):
        raise UserError(f"{path}: checkpoint meta.class_names must be 1..{MAX_CLASSES} strings")
    if raw["task"] not in ("detect", "pose"):
        raise UserError(f"{path}: checkpoint meta.task must be detect or pose, got {raw['task']!r:.40}")
    if not 32 <= raw["input_size"] <= 4096:
        raise UserError(f"{path}: checkpoint meta.input_size {raw['input_size']} out of range [32, 4096]")
    if not 0 <= raw.get("num_keypoints", 0) <= 1000:
        raise UserError(f"{path}: checkpoint meta.num_keypoints {raw['num_keypoints']} out of range [0, 1000]")
    return CheckpointMeta(**raw)


def _check_forward(model: nn.Module, path: Path) -> None:
    """A pruned checkpoint's layer widths come from its tensors; one small forward pass shows whether they
    chain (an inconsistent state dict loads layer by layer but fails in the first convolution that disagrees)."""
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, 64, 64))
    except RuntimeError as exc:
        raise UserError(f"{path}: pruned weights are inconsistent: {str(exc).splitlines()[0]}") from None


def resize_to_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: object = "checkpoint") -> None:
    """Narrow conv / norm / linear layers of ``model`` to the shapes stored in ``state`` (a pruned model's)."""
    for name, mod in model.named_modules():
        w = state.get(f"{name}.weight" if name else "weight")
        if w is None or not isinstance(w, torch.Tensor):
            continue
        if isinstance(mod, nn.Conv2d):
            depthwise = mod.groups > 1 and mod.groups == mod.in_channels == mod.out_channels
            groups = int(w.shape[0]) if depthwise else mod.groups
            mod.out_channels, mod.in_channels, mod.groups = int(w.shape[0]), int(w.shape[1]) * groups, groups
        elif isinstance(mod, nn.Linear):
            mod.out_features, mod.in_features = int(w.shape[0]), int(w.shape[1])
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.num_features = int(w.shape[0])
        else:
            continue
        for pname, p in list(mod.named_parameters(recurse=False)):
            stored = state.get(f"{name}.{pname}" if name else pname)
            if stored is None:
                raise UserError(f"{source}: pruned checkpoint lacks {name}.{pname}")
            setattr(mod, pname, nn.Parameter(torch.empty_like(stored), requires_grad=p.requires_grad))
        for bname, b in list(mod.named_buffers(recurse=False)):
            stored = state.get(f"{name}.{bname}" if name else bname)
            if stored is not None and b is not None:
                mod.register_buffer(bname, torch.empty_like(stored))
