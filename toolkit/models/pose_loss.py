"""Pose loss for edgedet with a keypoint head: the detection loss plus YOLO-pose's OKS keypoint terms.

Written here (torch only) because the reference implementation, Ultralytics' ``v8PoseLoss``, is AGPL-3.0
and lives inside their trainer. It follows that recipe: the person boxes are assigned and trained exactly
as in :class:`~edgevision.toolkit.models.loss.DetectionLoss` (TAL, CIoU + DFL, IoU-aware BCE); every
positive anchor then regresses the K keypoints of the person it was assigned, decoded as the exported
graph decodes them (``xy = (raw * 2 + anchor - 0.5) * stride``, the Ultralytics pose decode), with

- ``pose``: an OKS-shaped loss over labelled keypoints (``v > 0``),
  ``1 - exp(-d^2 / (2 * area * (2 sigma)^2))`` per keypoint, with ``area`` the person box area and
  ``sigma`` the OKS sigmas (COCO's for the 17 COCO keypoints, else ``1/K``), scaled by
  ``K / labelled`` so people with few labelled keypoints weigh the same;
- ``kobj``: BCE of the keypoint confidence logit against "labelled" (``v > 0``).

Two deliberate changes for a short CPU schedule. The loss's OKS kernel is ``sigma_scale`` (1.5) times
wider than the evaluation's: ``1 - exp(-e)`` saturates for keypoints far off (a wrist 20% of the body
height away has a gradient factor ``exp(-e)`` of ~0.1 with COCO's sigmas), which YOLO-pose can afford over
hundreds of epochs but a few-epoch CPU schedule cannot; the minimum (zero distance) is unchanged.
Widening the kernel by ``s`` also weakens the pull near the minimum by ``s^2``, so the pose weight is
doubled to 24 (near the minimum: 24 / 1.5^2 = 10.7, close to YOLOv8-pose's 12 at ``s = 1``). Evaluation
always uses the true sigmas. The other weights are YOLOv8-pose's defaults: box 7.5, cls 0.5, dfl 1.5,
kobj 1.

Targets come from ``collate_detection`` on a keypoint dataset: ``[T, 6 + 3K]`` = batch index, class, x1,
y1, x2, y2, then x, y, v per keypoint in input pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from edgevision.runtime.errors import UserError

from ..data.coco import COCO_SIGMAS
from .assigner import TaskAlignedAssigner
from .blocks import dist2bbox, make_anchors
from .edgedet import DetectHead
from .loss import box_losses


def default_sigmas(num_keypoints: int) -> list[float]:
    """COCO's OKS sigmas for 17 keypoints (the COCO person layout), else ``1/K`` each (Ultralytics' rule)."""
    return list(COCO_SIGMAS) if num_keypoints == 17 else [1.0 / num_keypoints] * num_keypoints


def pad_rows(targets: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[T, 1 + D]`` flat rows (batch index first) -> ``[B, M, D]`` padded rows and ``[B, M]`` mask."""
    dev, d = targets.device, targets.shape[1] - 1
    if targets.numel() == 0:
        return torch.zeros(batch, 0, d, device=dev), torch.zeros(batch, 0, dtype=torch.bool, device=dev)
    targets = targets[targets[:, 0].argsort(stable=True)]
    bi = targets[:, 0].long()
    counts = torch.bincount(bi, minlength=batch)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(len(targets), device=dev) - starts[bi]
    rows = torch.zeros(batch, int(counts.max()), d, device=dev)
    mask = torch.zeros(batch, rows.shape[1], dtype=torch.bool, device=dev)
    rows[bi, pos] = targets[:, 1:].float()
    mask[bi, pos] = True
    return rows, mask


def keypoint_loss(pred: torch.Tensor, gt: torch.Tensor, area: torch.Tensor, sigmas: torch.Tensor
                  ) -> torch.Tensor:
    """OKS-shaped loss: ``pred [P, K, 2]``, ``gt [P, K, 3]`` (v > 0 = labelled), ``area [P]`` (same
    units squared as the coordinates), ``sigmas [K]`` -> scalar mean over people and keypoints."""
    labelled = (gt[..., 2] > 0).float()
    d = (pred - gt[..., :2]).pow(2).sum(-1)
    e = d / ((2 * sigmas).pow(2) * (area.unsqueeze(-1) + 1e-9) * 2)
    factor = gt.shape[1] / (labelled.sum(1, keepdim=True) + 1e-9)
    return (factor * (1 - torch.exp(-e)) * labelled).mean()


class PoseLoss:
    """``loss(preds, targets) -> (total, items)``; items = detached (box, cls, dfl, pose, kobj)."""

    def __init__(self, model: nn.Module, box: float = 7.5, cls: float = 0.5, dfl: float = 1.5,
                 pose: float = 24.0, kobj: float = 1.0, sigmas: Sequence[float] | None = None,
                 sigma_scale: float = 1.5, topk: int = 10, alpha: float = 0.5, beta: float = 6.0) -> None:
        head = cast(DetectHead, getattr(model, "head", model))
        self.nc, self.nk = int(head.nc), int(head.nk)
        self.reg_max, self.strides = int(head.reg_max), tuple(head.strides)
        if self.nk < 1:
            raise UserError("pose loss: the model has no keypoint head (num_keypoints = 0)")
        sig = list(sigmas) if sigmas is not None else default_sigmas(self.nk)
        if len(sig) != self.nk:
            raise UserError(f"pose loss: {len(sig)} OKS sigmas for {self.nk} keypoints")
        self.sigmas = torch.tensor(sig, dtype=torch.float32)
        self.sigma_scale = float(sigma_scale)
        self.w = (box, cls, dfl, pose, kobj)
        self.assigner = TaskAlignedAssigner(self.nc, topk, alpha, beta)

    def __call__(self, preds: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, nk = preds[0].shape[0], self.nk
        r4 = 4 * self.reg_max
        if targets.shape[1] != 6 + 3 * nk:
            raise UserError(f"pose loss: targets have {targets.shape[1]} columns, expected {6 + 3 * nk} "
                            f"(batch, class, box, 3x{nk} keypoints); is the dataset's keypoint count the model's?")
        x = torch.cat([p.flatten(2) for p in preds], 2).transpose(1, 2)  # [B,N,no]
        pd_distri, pd_logits = x[..., :r4], x[..., r4:r4 + self.nc]
        pd_kpt = x[..., r4 + self.nc:].reshape(b, -1, nk, 3)
        shapes = [(int(p.shape[2]), int(p.shape[3])) for p in preds]
        anchors, stride_t = make_anchors(shapes, self.strides, x.device, x.dtype)  # grid units
        n = anchors.shape[0]
        proj = torch.arange(self.reg_max, device=x.device, dtype=x.dtype)
        distri = pd_distri.view(b, n, 4, self.reg_max)
        pd_boxes = dist2bbox(distri.softmax(-1) @ proj, anchors, xywh=False)  # [B,N,4] grid units

        rows, mask_gt = pad_rows(targets, b)
        labels, gt_boxes, gt_kpts = rows[..., 0].long(), rows[..., 1:5], rows[..., 5:].view(b, -1, nk, 3)
        a = self.assigner(pd_logits.detach().sigmoid(), pd_boxes.detach() * stride_t,
                          anchors * stride_t, labels, gt_boxes, mask_gt)
        score_sum = a.scores.sum().clamp(min=1.0)
        loss_cls = F.binary_cross_entropy_with_logits(pd_logits, a.scores, reduction="sum") / score_sum
        loss_box, loss_dfl = box_losses(pd_boxes, distri, a, anchors, stride_t, self.reg_max, score_sum)
        loss_pose = loss_kobj = x.new_zeros(())
        fg = a.fg_mask
        if fg.any():
            anc = anchors.unsqueeze(0).expand(b, -1, -1)[fg]
            # keypoints of the person each positive anchor was assigned (same argmax as the assigner)
            gt_idx = self._assigned_index(a.boxes, gt_boxes, mask_gt)  # [B,N]
            kp_gt = gt_kpts.gather(1, gt_idx[..., None, None].expand(-1, -1, nk, 3))[fg]  # [P,K,3]
            st = stride_t.unsqueeze(0).expand(b, -1, -1)[fg]  # [P,1]
            raw = pd_kpt[fg]  # [P,K,3]
            xy = (raw[..., :2] * 2.0 + (anc - 0.5).unsqueeze(1)) * st.unsqueeze(1)  # input pixels
            box_px = a.boxes[fg]
            area = (box_px[:, 2] - box_px[:, 0]) * (box_px[:, 3] - box_px[:, 1])
            loss_pose = keypoint_loss(xy, kp_gt, area, self.sigmas.to(x.device, x.dtype) * self.sigma_scale)
            loss_kobj = F.binary_cross_entropy_with_logits(raw[..., 2], (kp_gt[..., 2] > 0).to(x.dtype))
        wb, wc, wd, wp, wk = self.w
        total = (wb * loss_box + wc * loss_cls + wd * loss_dfl + wp * loss_pose + wk * loss_kobj) * b
        return total, torch.stack((loss_box, loss_cls, loss_dfl, loss_pose, loss_kobj)).detach()

    @staticmethod
    def _assigned_index(assigned: torch.Tensor, gt_boxes: torch.Tensor, mask_gt: torch.Tensor) -> torch.Tensor:
        """Index of the ground-truth box each anchor got (matched by its assigned box): ``[B, N]``."""
        if gt_boxes.shape[1] == 0:
            return torch.zeros(assigned.shape[:2], dtype=torch.long, device=assigned.device)
        diff = (assigned.unsqueeze(2) - gt_boxes.unsqueeze(1)).abs().sum(-1)  # [B,N,M]
        diff = diff.masked_fill(~mask_gt.unsqueeze(1), float("inf"))
        return diff.argmin(-1)
