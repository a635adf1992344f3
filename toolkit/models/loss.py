"""Detection loss for edgedet: TAL assignment, CIoU + DFL box loss, BCE on IoU-aware class targets.

The YOLOv8 recipe (weights box 7.5 / cls 0.5 / dfl 1.5), written compactly and vectorised because the
only maintained implementation lives inside Ultralytics (AGPL-3.0). Targets come from
``collate_detection``: ``[T, 6]`` = batch index, class, x1, y1, x2, y2 in input pixels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import nn

from .assigner import Assignment, TaskAlignedAssigner, box_iou
from .blocks import dist2bbox, make_anchors
from .edgedet import DetectHead

if TYPE_CHECKING:
    from .pose_loss import PoseLoss


def pad_targets(targets: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[T,6]`` flat targets -> labels ``[B,M]`` int64, boxes ``[B,M,4]``, mask ``[B,M]`` bool."""
    dev = targets.device
    if targets.numel() == 0:
        return (torch.zeros(batch, 0, dtype=torch.long, device=dev), torch.zeros(batch, 0, 4, device=dev),
                torch.zeros(batch, 0, dtype=torch.bool, device=dev))
    targets = targets[targets[:, 0].argsort(stable=True)]
    bi = targets[:, 0].long()
    counts = torch.bincount(bi, minlength=batch)
    m = int(counts.max())
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(len(targets), device=dev) - starts[bi]
    labels = torch.zeros(batch, m, dtype=torch.long, device=dev)
    boxes = torch.zeros(batch, m, 4, device=dev)
    mask = torch.zeros(batch, m, dtype=torch.bool, device=dev)
    labels[bi, pos] = targets[:, 1].long()
    boxes[bi, pos] = targets[:, 2:6].float()
    mask[bi, pos] = True
    return labels, boxes, mask


def dfl_loss(pred: torch.Tensor, target: torch.Tensor, reg_max: int) -> torch.Tensor:
    """Distribution focal loss: ``pred [K, 4, R]`` logits vs ``target [K, 4]`` distances -> ``[K]``."""
    target = target.clamp(0, reg_max - 1 - 0.01)
    tl = target.long()
    wl = tl + 1 - target
    logp = F.log_softmax(pred, -1)
    nll_l = -logp.gather(-1, tl.unsqueeze(-1)).squeeze(-1)
    nll_r = -logp.gather(-1, (tl + 1).unsqueeze(-1)).squeeze(-1)
    return (nll_l * wl + nll_r * (1 - wl)).mean(-1)


def box_losses(pd_boxes: torch.Tensor, distri: torch.Tensor, a: Assignment, anchors: torch.Tensor,
               stride_t: torch.Tensor, reg_max: int, score_sum: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CIoU and DFL losses over the positive anchors, weighted by their IoU-aware class targets."""
    zero = pd_boxes.new_zeros(())
    fg = a.fg_mask
    if not fg.any():
        return zero, zero
    weight = a.scores.sum(-1)[fg]
    tgt = a.boxes / stride_t  # grid units
    iou = box_iou(pd_boxes[fg], tgt[fg], ciou=True)
    loss_box = ((1.0 - iou) * weight).sum() / score_sum
    anc = anchors.unsqueeze(0).expand(pd_boxes.shape[0], -1, -1)[fg]
    tgt_dist = torch.cat((anc - tgt[fg][:, :2], tgt[fg][:, 2:] - anc), -1)
    loss_dfl = (dfl_loss(distri[fg], tgt_dist, reg_max) * weight).sum() / score_sum
    return loss_box, loss_dfl


class DetectionLoss:
    """``loss(preds, targets) -> (total, items)``; ``total`` is scaled by batch size like YOLOv8,
    ``items`` = detached (box, cls, dfl) per-image means for logging."""

    def __init__(
        self,
        model: nn.Module,
        box: float = 7.5,
        cls: float = 0.5,
        dfl: float = 1.5,
        topk: int = 10,
        alpha: float = 0.5,
        beta: float = 6.0,
    ) -> None:
        head = cast(DetectHead, getattr(model, "head", model))
        self.nc: int = int(head.nc)
        self.reg_max: int = int(head.reg_max)
        self.strides: tuple[int, ...] = tuple(head.strides)
        self.w = (box, cls, dfl)
        self.assigner = TaskAlignedAssigner(self.nc, topk, alpha, beta)

    def __call__(self, preds: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = preds[0].shape[0]
        r4 = 4 * self.reg_max
        x = torch.cat([p.flatten(2) for p in preds], 2).transpose(1, 2)  # [B,N,no]
        pd_distri, pd_logits = x[..., :r4], x[..., r4 : r4 + self.nc]
        shapes = [(int(p.shape[2]), int(p.shape[3])) for p in preds]
        anchors, stride_t = make_anchors(shapes, self.strides, x.device, x.dtype)  # grid units
        n = anchors.shape[0]
        proj = torch.arange(self.reg_max, device=x.device, dtype=x.dtype)
        distri = pd_distri.view(b, n, 4, self.reg_max)
        pd_boxes = dist2bbox(distri.softmax(-1) @ proj, anchors, xywh=False)  # [B,N,4] grid units, xyxy

        labels, gt_boxes, mask_gt = pad_targets(targets, b)
        a = self.assigner(pd_logits.detach().sigmoid(), pd_boxes.detach() * stride_t,
                          anchors * stride_t, labels, gt_boxes, mask_gt)
        score_sum = a.scores.sum().clamp(min=1.0)
        loss_cls = F.binary_cross_entropy_with_logits(pd_logits, a.scores, reduction="sum") / score_sum
        loss_box, loss_dfl = box_losses(pd_boxes, distri, a, anchors, stride_t, self.reg_max, score_sum)
        wb, wc, wd = self.w
        total = (wb * loss_box + wc * loss_cls + wd * loss_dfl) * b
        return total, torch.stack((loss_box, loss_cls, loss_dfl)).detach()


def make_loss(model: nn.Module, weights: tuple[float, ...] = (7.5, 0.5, 1.5)
              ) -> DetectionLoss | PoseLoss:
    """The task loss for ``model``: :class:`DetectionLoss`, or the pose loss
    (:class:`~edgevision.toolkit.models.pose_loss.PoseLoss`, box/cls/dfl ``weights`` + its pose/kobj
    defaults) when the head has keypoints."""
    own = getattr(model, "make_loss", None)  # models from another source bring their loss (e.g. Ultralytics')
    if callable(own):
        return cast("DetectionLoss | PoseLoss", own(weights))
    box, cls, dfl = (float(w) for w in weights[:3])
    head = getattr(model, "head", model)
    if int(getattr(head, "nk", 0)):
        from .pose_loss import PoseLoss

        return PoseLoss(model, box, cls, dfl)
    return DetectionLoss(model, box, cls, dfl)
