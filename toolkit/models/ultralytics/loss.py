"""Ground-truth loss for Ultralytics models: Ultralytics' own ``v8DetectionLoss`` / ``v8PoseLoss``.

Not re-implemented (DFL, TAL assignment, OKS keypoint loss are theirs): this adapter only converts
edgevision's inputs to theirs. Raw maps ``[B, 4*reg_max + C (+ 3K), H, W]`` per level (what
:class:`~.net.UltralyticsHead` returns in training) become their prediction dict (``boxes`` / ``scores`` /
``kpts`` flattened over anchors, ``feats`` for the anchor grid); targets ``[T, 6 (+ 3K)]`` (batch index,
class, x1, y1, x2, y2, then x, y, v per keypoint, input pixels) become their batch dict (normalised
cx, cy, w, h and keypoints). Their loss classes read hyper-parameters from ``model.args`` and the head from
``model.model[-1]``; a small namespace supplies both. Returns ``(total, items)`` like
``toolkit.models.loss.make_loss``: items are (box, cls, dfl), or (box, pose, kobj, cls, dfl) for pose.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch


class UltralyticsLoss:
    def __init__(self, net: Any, weights: tuple[float, ...] = (7.5, 0.5, 1.5)) -> None:
        from ultralytics.cfg import get_cfg
        from ultralytics.utils.loss import v8DetectionLoss, v8PoseLoss

        head = net.head
        hyp = get_cfg()
        hyp.box, hyp.cls, hyp.dfl = (float(w) for w in weights[:3])
        shim: Any = SimpleNamespace(args=hyp, model=[head.m], parameters=net.parameters)  # what they read
        self.nc, self.nk, self.reg_max = head.nc, head.nk, head.reg_max
        self.stride0 = float(head.strides[0])
        self.fn = v8PoseLoss(shim) if self.nk else v8DetectionLoss(shim)

    def __call__(self, preds: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = preds[0].shape[0]
        x = torch.cat([p.view(b, p.shape[1], -1) for p in preds], 2)
        r4 = 4 * self.reg_max
        d: dict[str, Any] = {"boxes": x[:, :r4], "scores": x[:, r4 : r4 + self.nc], "feats": preds}
        if self.nk:
            d["kpts"] = x[:, r4 + self.nc :]
        h, w = preds[0].shape[2] * self.stride0, preds[0].shape[3] * self.stride0
        t = targets.to(x.device).float()
        scale = t.new_tensor([w, h, w, h])
        xyxy = t[:, 2:6]
        xywh = torch.cat(((xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]), 1) / scale
        batch: dict[str, torch.Tensor] = {"batch_idx": t[:, 0], "cls": t[:, 1:2], "bboxes": xywh}
        if self.nk:
            k = t[:, 6 : 6 + 3 * self.nk].reshape(-1, self.nk, 3).clone()
            k[..., 0] /= w
            k[..., 1] /= h
            batch["keypoints"] = k
        loss, items = self.fn(d, batch)
        return loss.sum(), torch.stack([v.detach().float() for v in items.values()])
