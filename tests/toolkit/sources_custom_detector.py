"""A small custom detector that is NOT an edgevision model, for the ``model: {module: ...}`` tests.

No ``model.head`` protocol and no ``head_outputs()``: the toolkit must treat it as an arbitrary
``nn.Module`` whose eval forward returns the yolo layout ``[B, 4 + C, N]`` (cx, cy, w, h in input pixels,
sigmoid class scores) for strides 8, 16, 32. ``centre_loss`` is a deliberately simple task loss in the
``loss:`` protocol (``factory(model) -> loss(output, targets) -> (total, items)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NUM_CLASSES = 6  # the synthetic dataset's shapes


def _block(ci: int, co: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(ci, co, 3, stride, 1, bias=False), nn.BatchNorm2d(co), nn.SiLU())


class TinyDetector(nn.Module):
    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 16) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(_block(3, w, 2), _block(w, 2 * w, 2))
        self.p3 = nn.Sequential(_block(2 * w, 4 * w, 2), _block(4 * w, 4 * w, 1))
        self.p4 = nn.Sequential(_block(4 * w, 8 * w, 2), _block(8 * w, 8 * w, 1))
        self.p5 = nn.Sequential(_block(8 * w, 8 * w, 2), _block(8 * w, 8 * w, 1))
        self.preds = nn.ModuleList(nn.Conv2d(c, 4 + num_classes, 1) for c in (4 * w, 8 * w, 8 * w))
        self.strides = (8, 16, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f3 = self.p3(self.stem(x))
        f4 = self.p4(f3)
        f5 = self.p5(f4)
        outs = []
        for f, conv, s in zip((f3, f4, f5), self.preds, self.strides, strict=True):
            p = conv(f)
            h, w = int(p.shape[2]), int(p.shape[3])
            ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            grid = torch.stack((xs, ys)).to(p).view(1, 2, h, w) + 0.5
            xy = (grid + p[:, :2].tanh()) * s
            wh = p[:, 2:4].clamp(max=6.0).exp() * s
            outs.append(torch.cat((xy, wh, p[:, 4:].sigmoid()), 1).flatten(2))
        return torch.cat(outs, 2)


def tiny_detector() -> nn.Module:
    return TinyDetector()


def not_a_module() -> dict[str, int]:
    return {"layers": 3}


def wrong_layout() -> nn.Module:
    """Emits [B, N, 4 + C] (transposed): a layout mismatch."""

    class Transposed(TinyDetector):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x).transpose(1, 2)

    return Transposed()


def centre_loss(model: nn.Module):  # type: ignore[no-untyped-def]
    """Class BCE towards 1 for anchors whose centre lies in a ground-truth box (0 elsewhere), plus L1 of the
    box (relative to its size) on those anchors. Targets: [T, 6] image index, class, x1, y1, x2, y2 pixels."""

    def loss(out: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = out.shape[0]
        boxes, scores = out[:, :4], out[:, 4:]
        tgt = torch.zeros_like(scores)
        box_err = out.new_zeros(())
        for t in targets:
            i, c = int(t[0]), int(t[1])
            x1, y1, x2, y2 = (float(v) for v in t[2:6])
            inside = (boxes[i, 0] > x1) & (boxes[i, 0] < x2) & (boxes[i, 1] > y1) & (boxes[i, 1] < y2)
            tgt[i, c, inside] = 1.0
            if inside.any():
                ref = torch.tensor([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]).to(out)
                box_err = box_err + ((boxes[i, :, inside].T - ref).abs() / ref[2:].repeat(2)).mean()
        cls = F.binary_cross_entropy(scores.clamp(1e-6, 1 - 1e-6), tgt)
        total = (cls + 0.1 * box_err / max(len(targets), 1)) * b
        return total, torch.stack((cls.detach(), box_err.detach()))

    return loss
