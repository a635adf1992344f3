"""Task-aligned label assignment (TAL, from TOOD; as used by YOLOv6/v8), vectorised over the batch.

For each ground-truth box, the anchors whose centre lies inside it are scored with
``score(gt class) ** alpha * IoU ** beta`` (plain IoU as in TOOD/PP-YOLOE: it stays positive for any
overlap, where YOLOv8's clamped CIoU is zero for small boxes); the ``topk`` best become positives; an
anchor claimed by several boxes keeps the one it overlaps most. The class target of a positive is its
normalised alignment (so the classifier learns IoU-aware scores). A box too small to contain any anchor
centre falls back to its nearest anchor, so tiny objects are never left unassigned.

Hand-written (no well-kept library offers TAL outside Ultralytics' AGPL code); every step is a tensor
op over ``[B, M, N]`` (images x max boxes x anchors), no Python loop over boxes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def box_iou(a: torch.Tensor, b: torch.Tensor, ciou: bool = False, eps: float = 1e-7) -> torch.Tensor:
    """IoU (or Complete-IoU) of broadcastable xyxy boxes ``[..., 4]`` -> ``[...]``."""
    ax1, ay1, ax2, ay2 = a.unbind(-1)
    bx1, by1, bx2, by2 = b.unbind(-1)
    w1, h1 = ax2 - ax1, ay2 - ay1 + eps
    w2, h2 = bx2 - bx1, by2 - by1 + eps
    inter = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(0) * (
        torch.minimum(ay2, by2) - torch.maximum(ay1, by1)
    ).clamp(0)
    iou = inter / (w1 * h1 + w2 * h2 - inter + eps)
    if not ciou:
        return iou
    cw = torch.maximum(ax2, bx2) - torch.minimum(ax1, bx1)
    ch = torch.maximum(ay2, by2) - torch.minimum(ay1, by1)
    c2 = cw.pow(2) + ch.pow(2) + eps
    rho2 = ((bx1 + bx2 - ax1 - ax2).pow(2) + (by1 + by2 - ay1 - ay2).pow(2)) / 4
    v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


@dataclass
class Assignment:
    """Per-anchor targets: labels ``[B,N]``, boxes ``[B,N,4]`` xyxy, scores ``[B,N,C]``, fg ``[B,N]``."""

    labels: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor
    fg_mask: torch.Tensor


class TaskAlignedAssigner:
    """TAL with ``topk`` candidates per box and metric ``s**alpha * iou**beta``."""

    def __init__(self, num_classes: int, topk: int = 10, alpha: float = 0.5, beta: float = 6.0) -> None:
        self.nc, self.topk, self.alpha, self.beta = num_classes, topk, alpha, beta
        self.eps = 1e-9

    @torch.no_grad()
    def __call__(
        self,
        pd_scores: torch.Tensor,
        pd_boxes: torch.Tensor,
        anchors: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_boxes: torch.Tensor,
        mask_gt: torch.Tensor,
    ) -> Assignment:
        """Scores ``[B,N,C]`` (sigmoid), boxes ``[B,N,4]`` xyxy, anchors ``[N,2]`` (same units as boxes),
        gt labels ``[B,M]`` int64, gt boxes ``[B,M,4]``, mask_gt ``[B,M]`` bool (padding False)."""
        b, n, _ = pd_scores.shape
        m = gt_boxes.shape[1]
        if m == 0:
            z = pd_scores.new_zeros
            return Assignment(torch.full((b, n), self.nc, dtype=torch.long, device=pd_scores.device),
                              z(b, n, 4), z(b, n, self.nc), z(b, n, dtype=torch.bool))
        in_gts = self._candidates(anchors, gt_boxes) & mask_gt.unsqueeze(-1)  # [B,M,N]
        idx = gt_labels.clamp(0, self.nc - 1).unsqueeze(-1).expand(-1, -1, n)
        cls_scores = pd_scores.transpose(1, 2).gather(1, idx)  # [B,M,N]
        overlaps = box_iou(gt_boxes.unsqueeze(2), pd_boxes.unsqueeze(1)) * in_gts
        # + eps: a candidate whose prediction misses its box entirely still outranks non-candidates
        metric = (cls_scores.pow(self.alpha) * overlaps.pow(self.beta) + self.eps) * in_gts
        topk_idx = metric.topk(min(self.topk, n), dim=-1).indices  # [B,M,k]
        mask_pos = torch.zeros_like(metric).scatter_(-1, topk_idx, 1.0).bool() & in_gts
        # one anchor, several boxes: keep the box it overlaps most
        multi = mask_pos.sum(1, keepdim=True) > 1  # [B,1,N]
        best = F.one_hot(overlaps.argmax(1), m).transpose(1, 2).bool()  # [B,M,N]
        mask_pos = torch.where(multi, best, mask_pos)
        fg = mask_pos.any(1)  # [B,N]
        gt_idx = mask_pos.float().argmax(1)  # [B,N]
        labels = gt_labels.gather(1, gt_idx)
        boxes = gt_boxes.gather(1, gt_idx.unsqueeze(-1).expand(-1, -1, 4))
        metric = metric * mask_pos
        pos_metric = metric.amax(-1, keepdim=True)  # [B,M,1]
        pos_iou = (overlaps * mask_pos).amax(-1, keepdim=True)
        norm = (metric * pos_iou / (pos_metric + self.eps)).amax(1)  # [B,N]
        scores = F.one_hot(labels.clamp(0, self.nc - 1), self.nc).to(pd_scores.dtype)
        scores = scores * (norm * fg).unsqueeze(-1)
        labels = torch.where(fg, labels, torch.full_like(labels, self.nc))
        return Assignment(labels, boxes, scores, fg)

    def _candidates(self, anchors: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
        """``[B,M,N]``: anchor centre strictly inside the box, or the nearest anchor for a box with none."""
        a = anchors.view(1, 1, -1, 2)
        lt = a - gt_boxes[..., None, :2]
        rb = gt_boxes[..., None, 2:] - a
        inside = torch.cat((lt, rb), -1).amin(-1) > self.eps
        centre = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2
        nearest = (a - centre.unsqueeze(2)).pow(2).sum(-1).argmin(-1, keepdim=True)  # [B,M,1]
        fallback = torch.zeros_like(inside).scatter_(-1, nearest, True)
        return torch.where(inside.any(-1, keepdim=True), inside, fallback)
