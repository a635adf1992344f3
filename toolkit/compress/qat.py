"""Quantization-aware fine-tuning: adapt the weights to INT8 noise, then export the same Q/DQ ONNX as PTQ.

The fake quantization is PyTorch's own (``torch.fake_quantize_per_channel_affine`` for weights, symmetric
[-127, 127] per output channel on the BatchNorm-folded weights the deployed graph has;
``torch.fake_quantize_per_tensor_affine`` for each quantized conv's input, symmetric int8 with a running
max-abs range), both with straight-through gradients. The convs TensorRT would keep in float (the head's
output convs) are not fake-quantized. After fine-tuning, BatchNorm is un-folded into an identity BatchNorm
carrying the bias, so the checkpoint has the registry's shapes and exports exactly the trained weights;
the Q/DQ model is then written by the PTQ path (``quantize.quantize_model``) calibrated on the QAT model,
so QAT and PTQ models are the same TensorRT-checked style, and the fake quantization sits where that
artifact's Q/DQ pairs do (conv inputs; none between a conv and its activation). The extra pairs ONNX
Runtime's CPU kernels put back (``qdq_place``) are not simulated in training. With ``qat.distill`` the
float model is the teacher (``distill.DistillLoss``). torch.ao's QAT flow is not used: its fused modules
export QLinear ops (not Q/DQ around float convs) and its eager API is being retired in favour of torchao.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..checkpoint import load_checkpoint, save_checkpoint
from .quantize_config import QatConfig


class WeightFakeQuant(nn.Module):
    """Per-output-channel symmetric INT8 fake quantization of a conv weight (TensorRT's [-127, 127])."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        scale = (w.detach().abs().amax(dim=tuple(range(1, w.dim()))) / 127.0).clamp(min=1e-8).float()
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)


class ActFakeQuant(nn.Module):
    """Per-tensor symmetric INT8 fake quantization with a running max-abs range (momentum 0.1)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("amax", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                cur = x.detach().abs().max()
                amax = cast(torch.Tensor, self.amax)
                amax.copy_(cur if amax == 0 else 0.9 * amax + 0.1 * cur)
        scale = float(cast(torch.Tensor, self.amax).clamp(min=1e-8)) / 127.0
        return torch.fake_quantize_per_tensor_affine(x, scale, 0, -128, 127)


def _conv_bn_blocks(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(getattr(m, "conv", None), nn.Conv2d)
            and isinstance(getattr(m, "bn", None), nn.BatchNorm2d)]


def fold_bn(model: nn.Module) -> list[nn.Module]:
    """Fold each conv+BN block's BatchNorm into its conv (eval statistics); returns the folded blocks."""
    blocks = _conv_bn_blocks(model)
    for b in blocks:
        b.conv = fuse_conv_bn_eval(cast(nn.Conv2d, b.conv).eval(), cast(nn.BatchNorm2d, b.bn).eval())
        b.bn = nn.Identity()
    return blocks


def unfold_bn(blocks: list[nn.Module]) -> None:
    """Back to conv (no bias) + an identity BatchNorm holding the bias: the registry's module shapes."""
    for b in blocks:
        fused = cast(nn.Conv2d, b.conv)
        conv = nn.Conv2d(fused.in_channels, fused.out_channels, fused.kernel_size,  # type: ignore[arg-type]
                         fused.stride, fused.padding, fused.dilation, fused.groups, bias=False)  # type: ignore[arg-type]
        conv.weight.data.copy_(fused.weight.detach())
        bn = nn.BatchNorm2d(fused.out_channels, eps=1e-3, momentum=0.03)
        bn.weight.data.fill_(1.0)
        bn.bias.data.copy_(cast(torch.Tensor, fused.bias).detach())
        cast(torch.Tensor, bn.running_mean).zero_()
        cast(torch.Tensor, bn.running_var).fill_(1.0 - bn.eps)  # sqrt(var + eps) == 1: an exact identity
        b.conv, b.bn = conv, bn.eval()


class FakeQuant:
    """Attach weight + input fake quantization to every conv but ``keep_float``; ``remove()`` detaches."""

    def __init__(self, model: nn.Module, keep_float: list[nn.Module]) -> None:
        self.convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and not any(m is k for k in keep_float)]
        self.observers = nn.ModuleList(ActFakeQuant() for _ in self.convs)
        model.qat_observers = self.observers  # buffers travel with the model (device, train/eval)
        self.handles = []
        for conv, obs in zip(self.convs, self.observers, strict=True):
            parametrize.register_parametrization(conv, "weight", WeightFakeQuant())
            self.handles.append(conv.register_forward_pre_hook(lambda _m, args, o=obs: (o(args[0]),)))
        self.model = model

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        for conv in self.convs:
            parametrize.remove_parametrizations(conv, "weight", leave_parametrized=False)
        del self.model.qat_observers


def qat_finetune(src: Path, dst: Path, cfg: QatConfig, *, train: Any, input_size: int, train_cfg: Any,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fine-tune ``src`` with fake quantization (distilling from ``src`` itself when ``cfg.distill``)."""
    from ..data.augment import AugmentConfig
    from ..data.dataset import DetectionDataset
    from ..models.loss import make_loss
    from ..train import TrainConfig as FitConfig
    from ..train import fit
    from .distill import DistillLoss, frozen_teacher
    from .distill_config import DistillConfig
    from .prune import layout_layers

    t0 = time.perf_counter()
    model, meta = load_checkpoint(src)
    teacher = frozen_teacher(load_checkpoint(src)[0]) if cfg.distill else None
    keep = layout_layers(model, input_size)
    blocks = fold_bn(model.eval())
    fq = FakeQuant(model, keep)

    def factory(m: nn.Module, fc: FitConfig) -> Callable[[Any, torch.Tensor, torch.Tensor],
                                                         tuple[torch.Tensor, torch.Tensor]]:
        task = make_loss(m, fc.loss_weights)
        if teacher is None:
            return lambda preds, targets, _imgs: task(preds, targets)
        return DistillLoss(m, teacher, DistillConfig(), task)

    ds = DetectionDataset(train, input_size, augment=True, aug=AugmentConfig(**train_cfg.augment.model_dump()))
    fcfg = FitConfig(epochs=cfg.epochs, batch=train_cfg.batch, lr=cfg.lr, weight_decay=train_cfg.weight_decay,
                     warmup_epochs=0.0, optimizer=train_cfg.optimizer, ema=False, seed=train_cfg.seed,
                     num_threads=train_cfg.num_threads or (os.cpu_count() or 1),
                     device=train_cfg.device)
    result = fit(model, ds, fcfg, progress=False, loss_factory=factory,
                 on_epoch=lambda i, loss, _m: log(f"[qat] epoch {i + 1}/{cfg.epochs} loss {loss:.3f}"))
    fq.remove()
    unfold_bn(blocks)
    model = model.eval()
    save_checkpoint(dst, model, meta)
    return {"epochs": cfg.epochs, "lr": cfg.lr, "distill": cfg.distill, "fake_quantized_convs": len(fq.convs),
            "epoch_losses": [float(x) for x in result.epoch_losses], "seconds": round(time.perf_counter() - t0, 2)}
