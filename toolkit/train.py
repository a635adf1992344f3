"""Training loop for built-in detectors: :class:`TrainConfig` + :func:`fit`.

A plain loop rather than a framework (Lightning, Ultralytics' trainer): the recipe maps 1:1 onto
:class:`TrainConfig`, the build stage caches its output by content hash, and on a 2-core CPU every
millisecond of overhead shows. What it does: SGD (nesterov) or AdamW with no weight decay on norms and
biases, linear warmup then cosine (or linear) decay per iteration, gradient clipping, an exponential
moving average of the weights (the EMA model is what :func:`fit` returns: it is markedly more accurate
after short schedules), channels-last tensors on CPU, seeded shuffling and weight init.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from edgevision.runtime.errors import UserError

from .models.loss import make_loss

CONFIG_VERSION = 1

LossFn = Callable[[Any, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``loss_fn(train_mode_outputs, targets, images) -> (total, detached per-term items)``."""
LossFactory = Callable[[nn.Module, "TrainConfig"], LossFn]


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (versioned: ``version`` bumps when semantics change).

    The defaults are the measured CPU quickstart budget: edgedet-n at 256 px on 2500 synthetic images,
    5 epochs of batch 16 with AdamW, about 5 minutes on 2 cores (mAP50-95 0.58 on the synthetic val set
    with flip-only augmentation). Longer schedules on real data want more epochs.
    """

    epochs: int = 5
    batch: int = 16
    lr: float = 0.002
    lrf: float = 0.02  # final lr = lr * lrf
    weight_decay: float = 5e-4
    momentum: float = 0.9  # SGD momentum / AdamW beta1
    warmup_epochs: float = 0.5
    optimizer: str = "adamw"  # "sgd" | "adamw"
    schedule: str = "cos"  # "cos" | "linear"
    ema: bool = True
    ema_horizon: float = 0.05  # EMA averages over ~this fraction of all iterations (decay auto-scaled)
    grad_clip: float = 10.0
    loss_weights: tuple[float, float, float] = (7.5, 0.5, 1.5)  # box (CIoU), cls (BCE), DFL
    seed: int = 0
    num_threads: int = 2
    workers: int = 0
    channels_last: bool = True
    amp: bool = False  # no mixed precision (CPU first); kept for recipe completeness
    device: str = "cpu"  # torch device string; recipes set it with train.device
    version: int = CONFIG_VERSION

    def validate(self) -> None:
        """Raise :class:`UserError` naming the bad key."""
        checks: list[tuple[str, bool, str]] = [
            ("epochs", self.epochs >= 1, ">= 1"),
            ("batch", self.batch >= 1, ">= 1"),
            ("lr", self.lr > 0, "> 0"),
            ("lrf", 0 < self.lrf <= 1, "in (0, 1]"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
            ("warmup_epochs", self.warmup_epochs >= 0, ">= 0"),
            ("optimizer", self.optimizer in ("sgd", "adamw"), "'sgd' or 'adamw'"),
            ("schedule", self.schedule in ("cos", "linear"), "'cos' or 'linear'"),
            ("ema_horizon", 0 < self.ema_horizon <= 1, "in (0, 1]"),
            ("num_threads", self.num_threads >= 1, ">= 1"),
            ("workers", self.workers >= 0, ">= 0"),
            ("amp", not self.amp, "false (no mixed precision on CPU)"),
        ]
        for key, ok, want in checks:
            if not ok:
                raise UserError(f"train.{key}: must be {want}, got {getattr(self, key)!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    """Mean loss per epoch (per image, weighted sum of box/cls/dfl), wall seconds, the model to use
    (the EMA copy when ``cfg.ema``, in eval mode, contiguous memory format)."""

    epoch_losses: list[float]
    seconds: float
    model: nn.Module | None = None
    loss_items: list[list[float]] = field(default_factory=list)  # per epoch: box, cls, dfl


class ModelEMA:
    """Exponential moving average of parameters and buffers, decay ramped up from 0 (YOLOv5 style).

    Short CPU schedules (a few thousand steps) need a decay matched to their length: a fixed 0.9999
    would still be averaging in the random initialisation at the end. :func:`ema_for` scales it.
    """

    def __init__(self, model: nn.Module, decay: float, tau: float) -> None:
        self.ema = copy.deepcopy(model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        msd = model.state_dict()
        for k, v in self.ema.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(msd[k].detach(), alpha=1 - d)


def ema_for(model: nn.Module, total_iters: int, horizon: float) -> ModelEMA:
    """EMA whose averaging window is ``horizon * total_iters`` steps (decay in [0.9, 0.9999])."""
    window = max(10.0, horizon * total_iters)
    decay = min(0.9999, max(0.9, 1.0 - 1.0 / window))
    return ModelEMA(model, decay, tau=window / 2)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for mod in model.modules():
        for name, p in mod.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_norm = isinstance(mod, nn.modules.batchnorm._BatchNorm | nn.GroupNorm | nn.LayerNorm)
            (no_decay if name == "bias" or is_norm else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = _param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))


def lr_factor(it: int, total: int, warmup: int, cfg: TrainConfig) -> float:
    """Multiplier of ``cfg.lr`` at iteration ``it``: linear warmup, then cosine/linear to ``cfg.lrf``."""
    if it < warmup:
        return (it + 1) / warmup
    t = (it - warmup) / max(1, total - warmup)
    if cfg.schedule == "cos":
        return cfg.lrf + (1 - cfg.lrf) * 0.5 * (1 + math.cos(math.pi * t))
    return 1 - (1 - cfg.lrf) * t


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def _threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _default_collate() -> Callable[..., Any]:
    from .data.dataset import collate_detection

    return collate_detection


def _task_loss(model: nn.Module, cfg: TrainConfig) -> LossFn:
    loss = make_loss(model, cfg.loss_weights)
    return lambda preds, targets, _imgs: loss(preds, targets)


def fit(
    model: nn.Module,
    train_dataset: Dataset,
    cfg: TrainConfig,
    progress: bool = True,
    on_epoch: Callable[[int, float, nn.Module], None] | None = None,
    collate_fn: Callable[..., Any] | None = None,
    loss_factory: LossFactory | None = None,
) -> TrainResult:
    """Train ``model`` (train-mode output + the task loss of :func:`make_loss`) on ``train_dataset``.

    ``loss_factory(model, cfg)`` replaces the task loss (distillation wraps it with a teacher's terms);
    it is called once, after the model is on its device.

    ``on_epoch(epoch, mean_loss, eval_model)`` runs after each epoch (``eval_model`` is the EMA copy
    when enabled). Returns :class:`TrainResult`; ``result.model`` is the model to export.
    """
    cfg.validate()
    if len(train_dataset) == 0:  # type: ignore[arg-type]
        raise UserError("train: the training dataset is empty")
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"train.device: {cfg.device!r} but this torch ({torch.__version__}) sees no CUDA GPU; "
                        "use 'cpu' or a CUDA build of torch")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"train.device: {cfg.device!r} but torch sees {torch.cuda.device_count()} CUDA GPU(s)")
    t0 = time.perf_counter()
    with _threads(cfg.num_threads):
        seed_everything(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        loader = DataLoader(train_dataset, batch_size=cfg.batch, shuffle=True, drop_last=False,
                            num_workers=cfg.workers, collate_fn=collate_fn or _default_collate(), generator=gen,
                            persistent_workers=cfg.workers > 0)
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        model = model.to(device).to(memory_format=fmt)
        loss_fn = (loss_factory or _task_loss)(model, cfg)
        opt = _make_optimizer(model, cfg)
        nb = len(loader)
        total, warmup = cfg.epochs * nb, round(cfg.warmup_epochs * nb)
        ema = ema_for(model, total, cfg.ema_horizon) if cfg.ema else None
        result = TrainResult([], 0.0)
        bar = _Progress(cfg.epochs * nb, enabled=progress)
        it = 0
        with bar:
            for epoch in range(cfg.epochs):
                model.train()
                run_loss, run_items, seen = 0.0, torch.zeros(0), 0
                for imgs, targets in loader:
                    f = lr_factor(it, total, warmup, cfg)
                    for g in opt.param_groups:
                        g["lr"] = cfg.lr * f
                    imgs = imgs.to(device, non_blocking=True).contiguous(memory_format=fmt)
                    loss, items = loss_fn(model(imgs), targets.to(device), imgs)
                    if not torch.isfinite(loss):
                        raise UserError(f"train: loss became {loss.item()} at epoch {epoch + 1}; lower train.lr")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.grad_clip > 0:
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    opt.step()
                    if ema is not None:
                        ema.update(model)
                    bs = imgs.shape[0]
                    run_loss += loss.item()
                    run_items = items.cpu() * bs + (run_items if run_items.numel() else 0)
                    seen += bs
                    it += 1
                    bar.step(f"epoch {epoch + 1}/{cfg.epochs} loss {run_loss / seen:.3f}")
                result.epoch_losses.append(run_loss / seen)
                result.loss_items.append((run_items / seen).tolist())
                if on_epoch is not None:
                    on_epoch(epoch, result.epoch_losses[-1], ema.ema if ema else model.eval())
        final = ema.ema if ema is not None else model
        # back on the CPU: export, checkpoints and evaluation take it from here whatever it trained on
        final = final.cpu().to(memory_format=torch.contiguous_format).eval()
        result.model = final
    result.seconds = time.perf_counter() - t0
    return result


class _Progress:
    """A rich progress bar, or nothing (``enabled=False``) — keeps :func:`fit` free of branches."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.enabled, self.total = enabled, total
        self._p: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            # stderr: stdout stays for results; rich draws only where stderr is a terminal
            self._p = Progress(TextColumn("[bold]train[/bold] {task.description}"), BarColumn(),
                               TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                               TimeRemainingColumn(), transient=False, console=Console(stderr=True))
            self._p.__enter__()
            self._task = self._p.add_task("", total=self.total)
        return self

    def step(self, text: str) -> None:
        if self._p is not None:
            self._p.update(self._task, advance=1, description=text)

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.__exit__(None, None, None)
