"""Prune stage: structured channel pruning with Torch-Pruning, optionally followed by 2:4 sparsity.

Torch-Pruning (``tp.pruner.BasePruner`` over its dependency graph) decides which convs / norms / concat
inputs lose channels together, so residual adds, C2f concats and the head's inputs stay consistent with no
per-model code here. This module only maps the recipe onto it: the importance criterion, a MACs target
(found by bisection over the pruning ratio, since Torch-Pruning takes a ratio), protected layers, and
``round_to`` so every surviving channel count stays a multiple of 8 for TensorRT.

Protection: the head's final 1x1 convs (``model.head_outputs()``) are *always* ignored — their output
channels are the deployed layout (DFL bins, classes, keypoints). A model without ``head_outputs()``
(a ``module:`` source) gets the convs nearest its output instead (:func:`output_convs`).
``protect_head: true`` (the default) also keeps the head's hidden convs whole: the built-in heads are
already narrow (32-64 channels per branch at stride 8) and measured cheaper to keep than to retrain.
Their *input* channels still follow the neck.
"""

from __future__ import annotations

import copy
import difflib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from edgevision.runtime.errors import UserError

from ..checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from . import sparsity
from .prune_config import PruneConfig

Batch = tuple[torch.Tensor, torch.Tensor]  # images [B,3,S,S], targets [T,6]
MAX_RATIO = 0.9  # per layer / group, passed to Torch-Pruning
SEARCH_MAX = 0.75  # the MACs search stays below this: past it round_to empties layers, which TP then skips
SEARCH_ITERS = 8


def count_macs(model: nn.Module, input_size: int) -> tuple[int, int]:
    """(MACs, params) of one ``[1, 3, S, S]`` forward, counted by Torch-Pruning's op counter."""
    import torch_pruning as tp

    was_training = model.training
    macs, params = tp.utils.count_ops_and_params(model.eval(), torch.zeros(1, 3, input_size, input_size))
    model.train(was_training)
    return int(macs), int(params)


def _importance(name: str) -> Any:
    import torch_pruning as tp

    if name == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if name == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if name == "bn_scale":
        return tp.importance.BNScaleImportance()
    return tp.importance.GroupTaylorImportance()


def _few(names: list[str], near: str, n: int = 5) -> str:
    close = difflib.get_close_matches(near, names, n=n, cutoff=0.5)
    return ", ".join(close or [x for x in names if x and "." not in x][:n] or names[:n])


def layout_layers(model: nn.Module, input_size: int) -> list[nn.Module]:
    """The layers whose output channels are the deployed layout: ``model.head_outputs()`` when the model
    has it (built-ins), else :func:`output_convs`."""
    head_outputs = cast(Callable[[], list[nn.Module]] | None, getattr(model, "head_outputs", None))
    return list(head_outputs()) if head_outputs is not None else output_convs(model, input_size)


def output_convs(model: nn.Module, input_size: int) -> list[nn.Module]:
    """The convs / linears nearest the output: walking the output's autograd graph back from the output,
    the first weighted layers reached on every path (what a model without ``head_outputs()`` emits its
    layout through). Follows the graph autograd records, so it needs no tracer-friendly code."""
    weighted = [m for m in model.modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.ConvTranspose2d | nn.Linear)]
    made: dict[Any, nn.Module] = {}

    def record(mod: nn.Module, _args: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor) and out.grad_fn is not None:
            made.setdefault(out.grad_fn, mod)

    hooks = [m.register_forward_hook(record) for m in weighted]
    was = model.training
    try:
        with torch.enable_grad():
            out = model.eval()(torch.zeros(1, 3, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    tensors = [out] if isinstance(out, torch.Tensor) else [t for t in out if isinstance(t, torch.Tensor)]
    found: list[nn.Module] = []
    stack: list[Any] = [t.grad_fn for t in tensors if t.grad_fn is not None]
    seen: set[int] = set()
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        if fn in made:
            if not any(made[fn] is f for f in found):
                found.append(made[fn])
            continue
        stack.extend(nxt for nxt, _ in fn.next_functions if nxt is not None)
    return found


def protected_modules(model: nn.Module, cfg: PruneConfig, where: str,
                      input_size: int = 320) -> tuple[list[nn.Module], list[str]]:
    """Modules the pruner must not narrow (their output channels): head outputs always (``layout_layers``),
    the head's branches with ``protect_head``, and ``cfg.protect`` by name (unknown names -> UserError)."""
    named = dict(model.named_modules())
    by_module = {m: n for n, m in named.items()}
    for name in cfg.protect:
        if name not in named:
            raise UserError(f"{where}.protect: no module named {name!r} in the model; valid names include "
                            f"{_few(list(named), name)}")
    out: list[nn.Module] = layout_layers(model, input_size)
    if cfg.protect_head and isinstance(getattr(model, "head", None), nn.Module):
        out.append(cast(nn.Module, model.head))
    out += [named[n] for n in cfg.protect]
    never = getattr(model, "never_prune", None)  # blocks that reshape channels (e.g. Ultralytics' attention)
    if callable(never):
        out += list(cast(Callable[[], list[nn.Module]], never)())
    names = sorted({by_module[m] for m in out})
    return out, names


def _raw_head(model: nn.Module) -> nn.Module:
    """The module whose ``training`` flag switches the model's output to raw per-level maps."""
    return cast(nn.Module, getattr(model, "head", model))


def taylor_grads(model: nn.Module, batches: list[Batch]) -> None:
    """Accumulate task-loss gradients (for Taylor importance) with BatchNorm in eval mode: the model runs
    in eval, only the head's flag is set so it returns the raw maps the loss needs."""
    from ..models.loss import make_loss

    loss_fn = make_loss(model)
    model.eval()
    head = _raw_head(model)
    head.training = True
    try:
        model.zero_grad(set_to_none=True)
        for imgs, targets in batches:
            loss, _ = loss_fn(cast(list[torch.Tensor], model(imgs)), targets)
            loss.backward()
    finally:
        head.training = False


def _prune_once(model: nn.Module, cfg: PruneConfig, ratio: float, ignored: list[nn.Module], input_size: int,
                batches: list[Batch]) -> None:
    import torch_pruning as tp

    pruner = tp.pruner.BasePruner(
        model, torch.zeros(1, 3, input_size, input_size), importance=_importance(cfg.importance),
        global_pruning=cfg.global_pruning, pruning_ratio=ratio, max_pruning_ratio=MAX_RATIO,
        iterative_steps=cfg.steps, ignored_layers=ignored, round_to=cfg.round_to,
    )
    for _ in range(cfg.steps):
        if cfg.importance == "taylor":
            taylor_grads(model, batches)
        pruner.step()
    model.zero_grad(set_to_none=True)


def _trial(model: nn.Module, cfg: PruneConfig, ratio: float, where: str, input_size: int,
           batches: list[Batch]) -> nn.Module:
    trial = copy.deepcopy(model)
    ignored, _ = protected_modules(trial, cfg, where, input_size)
    _prune_once(trial, cfg, ratio, ignored, input_size, batches)
    return trial


def search_ratio(model: nn.Module, cfg: PruneConfig, target: float, where: str, input_size: int,
                 batches: list[Batch], log: Callable[[str], None]) -> float:
    """Smallest pruning ratio whose pruned copy has ``base_macs / macs >= target`` (bisection)."""
    base = count_macs(model, input_size)[0]

    def reduction(r: float) -> float:
        return base / count_macs(_trial(model, cfg, r, where, input_size, batches), input_size)[0]

    hi_red = reduction(SEARCH_MAX)
    if hi_red < target:
        raise UserError(f"{where}.macs_reduction: {target:g}x is out of reach; at most {hi_red:.2f}x with these "
                        "protected layers (lower it, or unprotect layers)")
    lo, hi = 0.0, SEARCH_MAX
    for _ in range(SEARCH_ITERS):
        mid = (lo + hi) / 2
        red = reduction(mid)
        log(f"[prune] ratio {mid:.3f} -> {red:.2f}x fewer MACs")
        if red >= target:
            hi = mid
        else:
            lo = mid
    return hi


def prune_model(model: nn.Module, cfg: PruneConfig, *, input_size: int, where: str = "prune",
                batches: list[Batch] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Prune ``model`` in place (channels, then 2:4 masks); returns a JSON-ready record of what changed."""
    batches = batches or []
    if cfg.importance == "taylor" and not batches:
        raise UserError(f"{where}.importance: 'taylor' needs calibration batches (training images)")
    ignored, protected = protected_modules(model, cfg, where, input_size)  # validates names even for 2:4-only
    base_macs, base_params = count_macs(model, input_size)
    ratio = cfg.ratio
    if cfg.macs_reduction is not None:
        ratio = search_ratio(model, cfg, cfg.macs_reduction, where, input_size, batches, log)
    if ratio is not None:
        _prune_once(model, cfg, ratio, ignored, input_size, batches)
    macs, params = count_macs(model, input_size)
    record: dict[str, Any] = {
        "importance": cfg.importance, "ratio": ratio, "global": cfg.global_pruning, "round_to": cfg.round_to,
        "protected": protected, "base_macs": base_macs, "macs": macs, "base_params": base_params,
        "params": params, "macs_reduction": round(base_macs / macs, 4),
    }
    if cfg.sparsity == "2:4":
        record["sparsity"] = apply_sparsity(model, cfg, protected, where)
    model.eval()
    return record


def apply_sparsity(model: nn.Module, cfg: PruneConfig, protected: list[str], where: str) -> dict[str, Any]:
    """Mask the chosen convs to 2:4 (all eligible unprotected convs when ``sparse_layers`` is empty)."""
    named = dict(model.named_modules())
    for name in cfg.sparse_layers:
        if not isinstance(named.get(name), nn.Conv2d):
            convs = [n for n, m in named.items() if isinstance(m, nn.Conv2d)]
            raise UserError(f"{where}.sparse_layers: {name!r} is not a Conv2d of the model; convs include "
                            f"{_few(convs, name)}")
    names = cfg.sparse_layers or None
    exclude = () if names else [n for n in protected if isinstance(named[n], nn.Conv2d)]
    layers, skipped = sparsity.sparse_candidates(model, names, exclude=exclude)
    sparsity.apply_2to4(model, layers)
    return {"pattern": sparsity.PATTERN, "layers": layers, "skipped": skipped}


def calibration_batches(train: Any, input_size: int, n: int, batch: int = 8) -> list[Batch]:
    """The first ``n`` un-augmented training batches (deterministic), for Taylor importance."""
    from ..data.dataset import DetectionDataset, collate_detection

    ds = DetectionDataset(train, input_size, augment=False)
    items = [ds[i] for i in range(min(len(ds), n * batch))]
    return [collate_detection(items[i : i + batch]) for i in range(0, len(items), batch)]


def prune_checkpoint(src: Path, dst: Path, cfg: PruneConfig, *, train: Any, input_size: int, where: str,
                     log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build-chain entry: load ``src``, prune, save ``dst`` (``extra["pruned"]`` + ``extra["sparsity"]``)."""
    t0 = time.perf_counter()
    model, meta = load_checkpoint(src)
    batches = calibration_batches(train, input_size, cfg.calib_batches) if cfg.importance == "taylor" else []
    record = prune_model(model, cfg, input_size=input_size, where=where, batches=batches, log=log)
    extra = dict(meta.extra)
    if cfg.ratio is not None or cfg.macs_reduction is not None:
        extra["pruned"] = {k: record[k] for k in ("base_macs", "macs", "macs_reduction", "ratio", "importance")}
    if "sparsity" in record:
        extra["sparsity"] = record["sparsity"]
    save_checkpoint(dst, model, CheckpointMeta(**{**meta.__dict__, "extra": extra}))
    record["seconds"] = round(time.perf_counter() - t0, 2)
    log(f"[prune] {record['base_macs'] / 1e6:.0f}M -> {record['macs'] / 1e6:.0f}M MACs "
        f"({record['macs_reduction']:.2f}x), {record['params']} params")
    return record
