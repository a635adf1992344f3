"""Split-free forms of Ultralytics' C2f / C3k2 / C2PSA blocks, so a dependency-graph pruner can narrow them.

Ultralytics' C2f (and C3k2, its YOLO11 subclass) runs one 1x1 conv to ``2c`` channels and ``chunk``s the
result into two halves; C2PSA does the same with ``split``. A channel pruner that removes channels of that
conv cannot keep the two halves equal, so Torch-Pruning's dependency graph either refuses the group or
produces a block whose halves no longer line up. The rewrite here replaces that conv with two 1x1 convs
(``cv1a`` -> first half, ``cv1b`` -> second half), copying the conv weights and the BatchNorm statistics
row by row. BatchNorm and SiLU act per channel, so the outputs are the same function exactly (the test
``test_ultralytics_prune.py`` checks max |diff| on yolov8n and yolo11n; measured 0.0 here, the same float
ops on the same rows). The bottleneck stack ``m`` and the output conv ``cv2`` are the original modules,
moved, not copied.

Hand-written (a few dozen lines) because the only published form is Torch-Pruning's YOLOv8 example script,
not an importable API, and Ultralytics' own code is AGPL-3.0 (we depend on it, never copy it).
"""

from __future__ import annotations

import copy
from typing import Any, cast

import torch
from torch import nn


def _half(conv_block: Any, lo: int, hi: int) -> nn.Module:
    """A copy of an Ultralytics ``Conv`` (conv + BN + act) keeping output channels ``lo:hi``."""
    block = copy.deepcopy(conv_block)
    conv, bn = cast(Any, block.conv), cast(Any, block.bn)
    new = nn.Conv2d(conv.in_channels, hi - lo, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    conv.groups, bias=conv.bias is not None)
    with torch.no_grad():
        new.weight.copy_(conv.weight[lo:hi])
        if conv.bias is not None:
            cast(torch.Tensor, new.bias).copy_(conv.bias[lo:hi])
    block.conv = new
    nbn: Any = nn.BatchNorm2d(hi - lo, eps=bn.eps, momentum=bn.momentum)
    with torch.no_grad():
        nbn.weight.copy_(bn.weight[lo:hi])
        nbn.bias.copy_(bn.bias[lo:hi])
        nbn.running_mean.copy_(bn.running_mean[lo:hi])
        nbn.running_var.copy_(bn.running_var[lo:hi])
        nbn.num_batches_tracked.copy_(bn.num_batches_tracked)
    block.bn = nbn
    return block


class SplitFreeC2f(nn.Module):
    """C2f / C3k2 without ``chunk``: ``y = [cv1a(x), cv1b(x)]``, then each bottleneck on the last, ``cv2(cat)``."""

    def __init__(self, src: Any) -> None:
        super().__init__()
        c = int(src.c)
        self.cv1a = _half(src.cv1, 0, c)
        self.cv1b = _half(src.cv1, c, 2 * c)
        self.m: Any = src.m
        self.cv2: Any = src.cv2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1a(x), self.cv1b(x)]
        for block in self.m:
            y.append(block(y[-1]))
        return self.cv2(torch.cat(y, 1))


class SplitFreeC2PSA(SplitFreeC2f):
    """C2PSA without ``split``: ``cv2(cat(cv1a(x), m(cv1b(x))))`` (the same halves as C2f, another forward).
    The attention blocks ``m`` reshape their channels into heads, so the pruner must leave them (and the ``b``
    half they add to) whole: :func:`never_prune` lists them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv2(torch.cat((self.cv1a(x), self.m(self.cv1b(x))), 1))


def rewrite_(layers: nn.ModuleList) -> int:
    """Replace every C2f / C3k2 / C2PSA in ``layers`` (top level and nested) by its split-free form, in place.
    Returns how many blocks were rewritten."""
    from ultralytics.nn.modules.block import C2PSA, C2f

    count = 0
    for parent in list(layers.modules()):
        for name, child in list(parent.named_children()):
            if type(child).__name__ in ("C2fAttn", "C2fPSA"):
                continue  # not in YOLOv8 / YOLO11 detect or pose; left as is (pruner ignores them)
            if isinstance(child, C2f):
                setattr(parent, name, _carry(child, SplitFreeC2f(child)))
                count += 1
            elif isinstance(child, C2PSA):
                setattr(parent, name, _carry(child, SplitFreeC2PSA(child)))
                count += 1
    return count


def _carry(old: nn.Module, new: nn.Module) -> nn.Module:
    """Keep the module's train/eval flag and Ultralytics' layer bookkeeping (``f``, ``i``, ``type``)."""
    for attr in ("f", "i", "type", "np"):
        if hasattr(old, attr):
            setattr(new, attr, getattr(old, attr))
    new.train(old.training)
    return new


def never_prune(model: nn.Module) -> list[nn.Module]:
    """Modules whose output channels the pruner must keep: Ultralytics' attention blocks (``PSABlock``) reshape
    channels into heads, and C2fAttn/C2fPSA (not rewritten) still split."""
    keep: list[nn.Module] = []
    for m in model.modules():
        if type(m).__name__ in ("PSABlock", "Attention", "C2fAttn", "C2fPSA", "AAttn", "ABlock", "A2C2f"):
            keep.extend(x for x in m.modules() if isinstance(x, nn.Conv2d | nn.BatchNorm2d))
    return keep
