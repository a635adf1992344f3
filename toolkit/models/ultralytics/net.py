"""An Ultralytics YOLOv8 / YOLO11 detect or pose model, shaped like the built-in models for every stage.

:class:`UltralyticsNet` takes the layers of an Ultralytics ``DetectionModel`` / ``PoseModel`` (their own
module classes, weights included) and gives them the interface the stages rely on (see ``edgedet.py``):

- ``.head`` (:class:`UltralyticsHead`) with ``nc``, ``nk`` (keypoints K, not Ultralytics' 3K), ``reg_max``,
  ``strides``; its ``training`` flag alone switches the output to raw per-level maps
  ``[B, 4*reg_max + C (+ 3K), H, W]`` (box bins, class logits, keypoints: the built-in order, so the
  distillation terms and the prune stage's Taylor gradients work unchanged);
- eval forward: ONE tensor ``[B, 4 + C (+ 3K), N]`` in the ``yolo`` layout the runtime decodes
  (``runtime/postprocess.py``): cx, cy, w, h in input pixels, sigmoid scores, keypoints x, y (pixels),
  sigmoid visibility interleaved. The decode is the one Ultralytics exports (its ``DFL`` module, anchors at
  cell centres, ``dist2bbox`` xywh x stride; keypoints ``(raw * 2 + anchor - 0.5) * stride``), so
  edgevision's ONNX and Ultralytics' own ONNX of the same weights agree to float precision
  (``test_ultralytics_export.py``);
- ``head_outputs()``: the final 1x1 convs ``cv2[i][-1]``, ``cv3[i][-1]``, ``cv4[i][-1]`` plus the DFL
  projection conv: never pruned, kept in float by QAT;
- ``never_prune()``: attention blocks (YOLO11's C2PSA) whose channels are reshaped into heads.

C2f / C3k2 / C2PSA are rewritten split-free at construction (``splitfree.py``; exact), so the same module
tree is what the prune stage narrows and what a checkpoint's skeleton rebuilds. The layer wiring is
Ultralytics' (each layer's ``f``: -1 = previous output, else indices of earlier outputs), copied into a
plain list so the forward is a loop a tracer follows.
"""

from __future__ import annotations

import warnings
from typing import Any, cast

import torch
from torch import nn

from ..blocks import dist2bbox, make_anchors
from . import splitfree


class UltralyticsHead(nn.Module):
    """Wraps Ultralytics' ``Detect`` / ``Pose`` module (child ``m``): raw maps in training, decode in eval."""

    def __init__(self, detect: Any) -> None:
        super().__init__()
        self.m: Any = detect
        self.nc = int(detect.nc)
        self.reg_max = int(detect.reg_max)
        self.strides = tuple(int(s) for s in cast(torch.Tensor, detect.stride).tolist())
        kpt = getattr(detect, "kpt_shape", None)
        self.kpt_shape: tuple[int, int] | None = (int(kpt[0]), int(kpt[1])) if kpt is not None else None
        self.nk = self.kpt_shape[0] if self.kpt_shape else 0

    def branches(self) -> list[nn.ModuleList]:
        m = self.m
        return [cast(nn.ModuleList, m.cv2), cast(nn.ModuleList, m.cv3)] + (
            [cast(nn.ModuleList, m.cv4)] if self.nk else [])

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        parts = [[br[i](f) for br in self.branches()] for i, f in enumerate(feats)]
        if self.training:
            return [torch.cat(p, 1) for p in parts]
        return self.decode(parts)

    def decode(self, parts: list[list[torch.Tensor]]) -> torch.Tensor:
        """Per-level (box bins, class logits[, keypoints]) -> ``[B, 4 + C (+3K), N]``."""
        b = parts[0][0].shape[0]
        with warnings.catch_warnings():
            # the graph has a fixed input size (only the batch is dynamic): anchors fold into constants
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            shapes = [(int(p[0].shape[2]), int(p[0].shape[3])) for p in parts]
            anchors, stride_t = make_anchors(shapes, self.strides, parts[0][0].device, parts[0][0].dtype)
        anchors, stride_t = anchors.transpose(0, 1), stride_t.transpose(0, 1)  # [2, N], [1, N]
        bins = torch.cat([p[0].view(b, 4 * self.reg_max, -1) for p in parts], 2)
        scores = torch.cat([p[1].view(b, self.nc, -1) for p in parts], 2)
        dist = self.m.dfl(bins)  # Ultralytics' DFL: softmax over bins, 1x1 projection conv
        out = [dist2bbox(dist, anchors.unsqueeze(0), xywh=True, dim=1) * stride_t, scores.sigmoid()]
        if self.nk:
            k = torch.cat([p[2].view(b, 3 * self.nk, -1) for p in parts], 2).view(b, self.nk, 3, -1)
            xy = (k[:, :, :2] * 2.0 + (anchors - 0.5)) * stride_t
            out.append(torch.cat((xy, k[:, :, 2:3].sigmoid()), 2).view(b, 3 * self.nk, -1))
        return torch.cat(out, 1)


class UltralyticsNet(nn.Module):
    """An Ultralytics detection/pose network as an edgevision model (see the module docstring)."""

    def __init__(self, ul_model: nn.Module, *, rewrite: bool = True) -> None:
        super().__init__()
        layers = list(cast(nn.Sequential, ul_model.model))
        self.froms: list[int | list[int]] = [cast(Any, m).f for m in layers]
        self.keep: set[int] = {int(i) for i in cast(Any, ul_model).save}
        self.layers = nn.ModuleList(layers[:-1])
        self.head = UltralyticsHead(layers[-1])
        self.yaml: dict[str, Any] = dict(cast(dict, ul_model.yaml))
        self.task = "pose" if self.head.nk else "detect"
        self.split_free = splitfree.rewrite_(self.layers) if rewrite else 0

    @property
    def reg_max(self) -> int:
        return self.head.reg_max

    @property
    def strides(self) -> tuple[int, ...]:
        return self.head.strides

    def head_outputs(self) -> list[nn.Conv2d]:
        """The head's final 1x1 convs (box bins, classes, keypoints) and the DFL projection: the layout."""
        outs = [cast(nn.Conv2d, cast(nn.Sequential, br)[-1]) for group in self.head.branches() for br in group]
        dfl = getattr(self.head.m.dfl, "conv", None)
        return outs + ([dfl] if isinstance(dfl, nn.Conv2d) else [])

    def task_loss(self, weights: tuple[float, ...] = (7.5, 0.5, 1.5)) -> Any:
        """Ultralytics' own loss for this head (``loss.UltralyticsLoss``), the ``task_loss`` hook of ``make_loss``."""
        from .loss import UltralyticsLoss

        return UltralyticsLoss(self, weights)

    def never_prune(self) -> list[nn.Module]:
        return splitfree.never_prune(self)

    def _inputs(self, i: int, x: torch.Tensor, saved: dict[int, torch.Tensor]) -> Any:
        f = self.froms[i]
        if isinstance(f, int):
            return x if f == -1 else saved[f]
        return [x if j == -1 else saved[j] for j in f]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        saved: dict[int, torch.Tensor] = {}
        for i, layer in enumerate(self.layers):
            x = layer(self._inputs(i, x, saved))
            if i in self.keep:
                saved[i] = x
        return self.head(self._inputs(len(self.layers), x, saved))
