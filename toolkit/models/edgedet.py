"""edgedet: the built-in compact anchor-free detector (CSP backbone, PAN neck, decoupled DFL head).

Hand-written because no well-kept pip library provides a small YOLO-style detector as plain,
weight-free PyTorch code under a permissive licence (Ultralytics' is AGPL-3.0). The design follows the
published YOLOv8 recipe, scaled by width/depth multipliers, with channel counts kept multiples of 8.

Outputs:
- ``.train()``: a list of per-level raw maps ``[B, 4*reg_max + C (+ 3K), H_l, W_l]`` for
  :class:`~edgevision.toolkit.models.loss.DetectionLoss`.
- ``.eval()``: ONE tensor ``[B, 4 + C (+ 3K), N]`` in the Ultralytics v8 ``yolo`` layout — cx, cy, w, h
  in input pixels, sigmoid class scores (then keypoints x, y, visibility-score when ``num_keypoints``),
  ``N = sum_l (H/s_l) * (W/s_l)`` — so the runtime's one decoder serves built-in and imported models.
  Keypoints are decoded as Ultralytics' ``Pose.kpts_decode``: ``xy = (raw * 2 + anchor - 0.5) * stride``
  (anchors are cell centres, so ``anchor - 0.5`` is the cell's corner), confidence ``sigmoid(raw)``,
  interleaved x0, y0, c0, x1, ... per anchor. With keypoints this is a YOLO-pose style multi-person pose
  model (``pose_loss.PoseLoss`` trains it).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from .blocks import SPPF, C2f, Conv, dfl_expectation, dist2bbox, make_anchors, round8


@dataclass(frozen=True)
class EdgeDetConfig:
    """Width/depth of one edgedet size. ``channels`` = stem, stride 4, 8, 16, 32 stages."""

    channels: tuple[int, int, int, int, int]
    depths: tuple[int, int, int, int]
    head_channels: int
    neck_depth: int = 1
    reg_max: int = 16
    act: str = "silu"

    @staticmethod
    def scaled(width: float, depth: float, head: int, max_ch: int = 1024, act: str = "silu") -> EdgeDetConfig:
        base = (64, 128, 256, 512, 1024)
        ch = tuple(round8(min(c, max_ch) * width) for c in base)
        dep = tuple(max(1, round(n * depth)) for n in (3, 6, 6, 3))
        return EdgeDetConfig(ch, dep, round8(head), max(1, round(3 * depth)), 16, act)  # type: ignore[arg-type]


class DetectHead(nn.Module):
    """Decoupled anchor-free head: per level a box branch (DFL bins), a class branch, a keypoint hook."""

    def __init__(
        self,
        in_channels: tuple[int, ...],
        num_classes: int,
        strides: tuple[int, ...],
        hidden: int,
        reg_max: int = 16,
        num_keypoints: int = 0,
        act: str = "silu",
    ) -> None:
        super().__init__()
        self.nc, self.nk, self.reg_max, self.strides = num_classes, num_keypoints, reg_max, strides
        self.no = 4 * reg_max + num_classes + 3 * num_keypoints
        cb = max(hidden, round8(4 * reg_max // 2))
        cc = max(hidden, round8(min(num_classes, 100)))

        def branch(c: int, hid: int, out: int) -> nn.Sequential:
            return nn.Sequential(Conv(c, hid, 3, act=act), Conv(hid, hid, 3, act=act), nn.Conv2d(hid, out, 1))

        self.box = nn.ModuleList(branch(c, cb, 4 * reg_max) for c in in_channels)
        self.cls = nn.ModuleList(branch(c, cc, num_classes) for c in in_channels)
        ck = max(cb, round8(3 * num_keypoints))  # as YOLOv8-pose: at least as wide as its 3K outputs
        self.kpt = nn.ModuleList(branch(c, ck, 3 * num_keypoints) for c in in_channels) if num_keypoints else None
        self.reset_bias()

    def reset_bias(self, image_size: int = 640, box_decay: float = 0.4) -> None:
        """Priors: class logits at ~5 objects per image spread over the grid; DFL bins decaying with
        distance (expected edge distance ~2 strides, not YOLOv8's flat 7.5), so the first boxes are
        object-sized and the IoU-aware class targets are informative from the first steps."""
        bins = -box_decay * torch.arange(self.reg_max, dtype=torch.float32)
        for box, cls, s in zip(self.box, self.cls, self.strides, strict=True):
            box_out, cls_out = cast(nn.Conv2d, box[-1]), cast(nn.Conv2d, cls[-1])  # type: ignore[index]
            cast(torch.Tensor, box_out.bias).data.copy_(bins.repeat(4))
            cast(torch.Tensor, cls_out.bias).data.fill_(math.log(5 / self.nc / (image_size / s) ** 2))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        outs = []
        for i, f in enumerate(feats):
            parts = [self.box[i](f), self.cls[i](f)]
            if self.kpt is not None:
                parts.append(self.kpt[i](f))
            outs.append(torch.cat(parts, 1))
        if self.training:
            return outs
        return self.decode(outs)

    def decode(self, outs: list[torch.Tensor]) -> torch.Tensor:
        """Per-level raw maps -> ``[B, 4 + C (+3K), N]`` with boxes in input pixels."""
        b = outs[0].shape[0]
        with warnings.catch_warnings():
            # Under ONNX tracing the spatial size becomes a constant on purpose: the graph has a fixed
            # input size (only the batch is dynamic), so the anchors are folded into constants.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            shapes = [(int(o.shape[2]), int(o.shape[3])) for o in outs]
            anchors, stride_t = make_anchors(shapes, self.strides, outs[0].device, outs[0].dtype)
        anchors, stride_t = anchors.transpose(0, 1), stride_t.transpose(0, 1)  # [2, N], [1, N]
        x = torch.cat([o.view(b, self.no, -1) for o in outs], 2)
        r4 = 4 * self.reg_max
        dist = dfl_expectation(x[:, :r4], self.reg_max)
        boxes = dist2bbox(dist, anchors.unsqueeze(0), xywh=True, dim=1) * stride_t
        parts = [boxes, x[:, r4 : r4 + self.nc].sigmoid()]
        if self.nk:
            k = x[:, r4 + self.nc :].reshape(b, self.nk, 3, -1)
            xy = (k[:, :, :2] * 2.0 + (anchors - 0.5).view(1, 1, 2, -1)) * stride_t
            parts.append(torch.cat((xy, k[:, :, 2:].sigmoid()), 2).reshape(b, 3 * self.nk, -1))
        return torch.cat(parts, 1)


class EdgeDet(nn.Module):
    """Backbone (stride 2..32, C2f stages, SPPF) + PAN neck over strides 8/16/32 + :class:`DetectHead`."""

    strides: tuple[int, ...] = (8, 16, 32)

    def __init__(self, cfg: EdgeDetConfig, num_classes: int, num_keypoints: int = 0) -> None:
        super().__init__()
        c0, c1, c2, c3, c4 = cfg.channels
        d1, d2, d3, d4 = cfg.depths
        nd, act = cfg.neck_depth, cfg.act
        self.cfg, self.num_classes, self.num_keypoints = cfg, num_classes, num_keypoints
        self.stem = Conv(3, c0, 3, 2, act)
        self.stage1 = nn.Sequential(Conv(c0, c1, 3, 2, act), C2f(c1, c1, d1, True, act))
        self.stage2 = nn.Sequential(Conv(c1, c2, 3, 2, act), C2f(c2, c2, d2, True, act))
        self.stage3 = nn.Sequential(Conv(c2, c3, 3, 2, act), C2f(c3, c3, d3, True, act))
        self.stage4 = nn.Sequential(Conv(c3, c4, 3, 2, act), C2f(c4, c4, d4, True, act), SPPF(c4, c4, 5, act))
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.td4 = C2f(c4 + c3, c3, nd, False, act)
        self.td3 = C2f(c3 + c2, c2, nd, False, act)
        self.down3 = Conv(c2, c2, 3, 2, act)
        self.bu4 = C2f(c2 + c3, c3, nd, False, act)
        self.down4 = Conv(c3, c3, 3, 2, act)
        self.bu5 = C2f(c3 + c4, c4, nd, False, act)
        self.head = DetectHead((c2, c3, c4), num_classes, self.strides, cfg.head_channels, cfg.reg_max,
                               num_keypoints, act)

    @property
    def reg_max(self) -> int:
        return self.cfg.reg_max

    def head_outputs(self) -> list[nn.Conv2d]:
        """The head's final 1x1 convs, whose channel counts are the output layout: never prune these."""
        branches = [*self.head.box, *self.head.cls, *(self.head.kpt or [])]
        return [cast(nn.Conv2d, b[-1]) for b in branches]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        p3 = self.stage2(self.stage1(self.stem(x)))
        p4 = self.stage3(p3)
        p5 = self.stage4(p4)
        t4 = self.td4(torch.cat((self.up(p5), p4), 1))
        o3 = self.td3(torch.cat((self.up(t4), p3), 1))
        o4 = self.bu4(torch.cat((self.down3(o3), t4), 1))
        o5 = self.bu5(torch.cat((self.down4(o4), p5), 1))
        return self.head([o3, o4, o5])
