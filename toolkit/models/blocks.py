"""Building blocks of the built-in detector: conv-BN-act, C2f-lite, SPPF, DFL and anchor helpers.

Hand-written on purpose: no well-kept pip library offers a compact YOLO-style detector as plain
``nn.Module`` code without either pulling pretrained weights (timm backbones are classifiers, and
their detection heads live elsewhere) or depending on Ultralytics' AGPL-3.0 code. The blocks follow
the published YOLOv8 design (CSP "C2f" stages, SPPF, distribution focal head) in a few dozen lines,
with every channel count a multiple of 8 so TensorRT picks fast kernels and later channel pruning
(round_to=8) keeps that property. Every op exports to ONNX opset 17 with ``dynamo=False``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def round8(c: float) -> int:
    """Round a channel count to the nearest multiple of 8 (at least 8)."""
    return max(8, int(math.ceil(c / 8.0) * 8))


class Conv(nn.Module):
    """Conv2d (no bias) + BatchNorm + activation, 'same' padding."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, act: str = "silu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act: nn.Module = nn.SiLU(inplace=True) if act == "silu" else nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """Two 3x3 convs with an optional residual."""

    def __init__(self, c: int, shortcut: bool = True, act: str = "silu") -> None:
        super().__init__()
        self.cv1 = Conv(c, c, 3, act=act)
        self.cv2 = Conv(c, c, 3, act=act)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """CSP stage, YOLOv8 style: two halves, n bottlenecks on one, concat every intermediate, fuse.

    The halves come from two 1x1 convs rather than one conv + ``split`` (same function and cost), so a
    channel pruner sees no hard-coded split sizes (Torch-Pruning's "C2f_v2" form).
    """

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, act: str = "silu") -> None:
        super().__init__()
        c = round8(c2 / 2)
        self.cv0 = Conv(c1, c, 1, act=act)
        self.cv1 = Conv(c1, c, 1, act=act)
        self.cv2 = Conv((2 + n) * c, c2, 1, act=act)
        self.m = nn.ModuleList(Bottleneck(c, shortcut, act) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv0(x), self.cv1(x)]
        for m in self.m:
            y.append(m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling (fast): three chained 5x5 max-pools, concatenated."""

    def __init__(self, c1: int, c2: int, k: int = 5, act: str = "silu") -> None:
        super().__init__()
        c_ = round8(c1 / 2)
        self.cv1 = Conv(c1, c_, 1, act=act)
        self.cv2 = Conv(c_ * 4, c2, 1, act=act)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.m(y[-1]))
        return self.cv2(torch.cat(y, 1))


def dfl_expectation(x: torch.Tensor, reg_max: int) -> torch.Tensor:
    """``[B, 4*R, N]`` bin logits -> ``[B, 4, N]`` expected distances (in stride units)."""
    b, _, n = x.shape
    proj = torch.arange(reg_max, dtype=x.dtype, device=x.device).view(1, 1, reg_max, 1)
    return (x.view(b, 4, reg_max, n).softmax(2) * proj).sum(2)


def make_anchors(
    shapes: list[tuple[int, int]], strides: tuple[int, ...], device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor centres ``[N, 2]`` (grid units, +0.5) and their strides ``[N, 1]``, level by level."""
    points, stride_t = [], []
    for (h, w), s in zip(shapes, strides, strict=True):
        sy, sx = torch.meshgrid(
            torch.arange(h, device=device, dtype=dtype) + 0.5,
            torch.arange(w, device=device, dtype=dtype) + 0.5,
            indexing="ij",
        )
        points.append(torch.stack((sx, sy), -1).view(-1, 2))
        stride_t.append(torch.full((h * w, 1), float(s), device=device, dtype=dtype))
    return torch.cat(points), torch.cat(stride_t)


def dist2bbox(dist: torch.Tensor, anchors: torch.Tensor, xywh: bool, dim: int = -1) -> torch.Tensor:
    """ltrb distances -> boxes (xyxy, or cx,cy,w,h when ``xywh``) around anchor points."""
    lt, rb = dist.chunk(2, dim)
    x1y1 = anchors - lt
    x2y2 = anchors + rb
    if xywh:
        return torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), dim)
    return torch.cat((x1y1, x2y2), dim)
