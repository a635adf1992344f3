"""2:4 semi-structured sparsity: masks, a weight parametrization that keeps them during fine-tuning.

The pattern is the one TensorRT's sparse kernels (cuSPARSELt / Ampere+ sparse tensor cores) and NVIDIA's
ASP (``apex.contrib.sparsity``, ``create_mask`` for a ``[K, C, R, S]`` conv weight) use: for every output
channel and every kernel position, each run of 4 consecutive *input* channels holds at most 2 non-zero
weights. Hand-written (about 30 lines) because ASP needs apex + CUDA and torchao's 2:4 path targets
``nn.Linear`` on GPU; here the mask only has to be computed and held, on CPU, for a conv.

During fine-tuning the mask is a ``torch.nn.utils.parametrize`` parametrization (``weight = original *
mask``), so every forward — and therefore every optimizer step, the EMA copy and any checkpoint taken from
it — sees exactly the pattern. :func:`strip_masks` bakes the masked weight back into a plain parameter
before saving or exporting: checkpoints and ONNX graphs never contain the parametrization.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import torch
from torch import nn
from torch.nn.utils import parametrize

PATTERN = "2:4"


def mask_2to4(weight: torch.Tensor) -> torch.Tensor:
    """Bool mask of ``weight [K, C, *kernel]`` keeping the 2 largest ``|w|`` in every 4 consecutive input
    channels (dim 1) per output channel and kernel position. ``C`` must be a multiple of 4."""
    k, c = weight.shape[:2]
    if c % 4:
        raise ValueError(f"2:4 needs input channels per group divisible by 4, got {c}")
    w = weight.detach().abs().movedim(1, -1).reshape(-1, c // 4, 4)  # [K*R*S, C/4, 4]
    keep = w.topk(2, dim=-1).indices
    mask = torch.zeros_like(w, dtype=torch.bool).scatter_(-1, keep, True)
    return mask.reshape(k, *weight.shape[2:], c).movedim(-1, 1).contiguous()


def is_2to4(weight: torch.Tensor) -> bool:
    """True when at most 2 of every 4 consecutive input-channel weights are non-zero."""
    c = weight.shape[1]
    if c % 4:
        return False
    nz = (weight.detach() != 0).movedim(1, -1).reshape(-1, c // 4, 4).sum(-1)
    return bool((nz <= 2).all())


def eligible(module: nn.Module) -> bool:
    """A conv whose input channels per group split into groups of 4 (others are skipped and listed)."""
    return isinstance(module, nn.Conv2d) and (module.in_channels // module.groups) % 4 == 0


def sparse_candidates(model: nn.Module, names: Iterable[str] | None, exclude: Iterable[str] = ()) -> \
        tuple[list[str], list[str]]:
    """``(eligible, skipped)`` conv names: ``names`` (all convs when None) minus ``exclude``."""
    skip_names = set(exclude)
    modules = dict(model.named_modules())
    wanted = list(names) if names is not None else [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
    ok: list[str] = []
    skipped: list[str] = []
    for n in wanted:
        if n in skip_names:
            continue
        (ok if eligible(modules[n]) else skipped).append(n)
    return ok, skipped


@torch.no_grad()
def apply_2to4(model: nn.Module, layers: Iterable[str]) -> None:
    """Zero the weights of ``layers`` (conv names) outside their magnitude-based 2:4 mask, in place."""
    modules = dict(model.named_modules())
    for n in layers:
        conv = cast(nn.Conv2d, modules[n])  # names come from sparse_candidates
        conv.weight.mul_(mask_2to4(conv.weight))


class TwoFourMask(nn.Module):
    """Parametrization ``weight = original * mask``; the mask is a bool buffer (an EMA leaves it alone)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.mask: torch.Tensor
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def attach_masks(model: nn.Module, layers: Iterable[str]) -> None:
    """Hold ``layers`` at their current 2:4 pattern (mask = the 2 largest of each 4, which for weights
    already masked is their non-zero support) while training."""
    modules = dict(model.named_modules())
    for n in layers:
        conv = modules[n]
        parametrize.register_parametrization(conv, "weight", TwoFourMask(mask_2to4(conv.weight)))


def strip_masks(model: nn.Module) -> nn.Module:
    """Bake every :class:`TwoFourMask` into a plain weight (for saving and export); returns ``model``."""
    for m in model.modules():
        if not parametrize.is_parametrized(m, "weight"):
            continue
        plist = cast(Iterable[nn.Module], cast(nn.ModuleDict, m.parametrizations)["weight"])
        if any(isinstance(p, TwoFourMask) for p in plist):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return model


def check_layers(model: nn.Module, layers: Iterable[str]) -> list[str]:
    """Names among ``layers`` whose weight breaks the 2:4 pattern (empty = all hold it)."""
    modules = dict(model.named_modules())
    return [n for n in layers if not is_2to4(cast(nn.Conv2d, modules[n]).weight)]
