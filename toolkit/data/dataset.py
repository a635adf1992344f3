"""Torch dataset over a ``CocoDataset``: deployment letterbox, optional augmentation, batching.

Every image goes through ``edgevision.runtime.preprocess.letterbox``, the very function the device
runs, so training sees exactly the deployed input geometry. Letterboxed images are cached in memory
(up to ``cache_bytes``) because the built-in datasets are small and CPU training is bound by decoding
otherwise; call ``preload()`` before a multi-worker ``DataLoader`` so the workers share one cache.

Items: ``(image float32 [3, S, S] RGB in 0..1, targets float32 [M, 5] = class, x1, y1, x2, y2)`` in
letterboxed input pixels; crowd annotations are left out. ``collate_detection`` stacks a batch into
``(images [B, 3, S, S], targets [T, 6] = batch index, class, x1, y1, x2, y2)``. When the dataset has
keypoints (``ds.num_keypoints = K > 0``) every row carries ``3K`` more columns, x, y, v per keypoint in
letterboxed input pixels (COCO visibility; unlabelled ones are 0, 0, 0): items ``[M, 5 + 3K]``, collated
``[T, 6 + 3K]``. A horizontal flip swaps left/right keypoints (the dataset's ``flip_idx`` where its source
names one, a YOLO ``data.yaml``; else by name, ``coco.flip_index``).

Augmentation randomness is drawn from torch's generator (one seed per item), so ``torch.manual_seed``
and the DataLoader's per-worker seeding make it reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from edgevision.runtime.errors import UserError
from edgevision.runtime.preprocess import Letterbox, letterbox

from .augment import AugmentConfig, augment_pose
from .coco import CocoDataset, flip_index


def read_image(path: Path) -> np.ndarray:
    """BGR uint8 image, or a ``UserError`` naming the file."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UserError(f"cannot read image {path} (missing or not an image)")
    return np.asarray(img)


class DetectionDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Detection training/validation items from a ``CocoDataset`` at a square ``input_size``."""

    def __init__(self, ds: CocoDataset, input_size: int, augment: bool = False, pad_value: int = 114,
                 aug: AugmentConfig | None = None, cache_bytes: int = 2 << 30) -> None:
        if input_size <= 0:
            raise UserError(f"input_size must be positive, got {input_size}")
        self.ds = ds
        self.input_size = int(input_size)
        self.augment = augment
        self.pad_value = int(pad_value)
        self.aug = aug or AugmentConfig()
        self.cache_bytes = int(cache_bytes)
        self._cache: dict[int, tuple[np.ndarray, Letterbox]] = {}
        self._cached_bytes = 0
        self.num_keypoints = ds.num_keypoints
        self.flip_idx = ds.flip_idx if ds.flip_idx is not None else flip_index(ds.keypoint_names)

    @property
    def class_names(self) -> list[str]:
        return self.ds.class_names

    def __len__(self) -> int:
        return len(self.ds.records)

    def load(self, index: int) -> tuple[np.ndarray, Letterbox]:
        """The letterboxed BGR image of record ``index`` (cached) and its ``Letterbox``."""
        hit = self._cache.get(index)
        if hit is not None:
            return hit
        rec = self.ds.records[index]
        img = read_image(rec.path)
        if img.shape[:2] != (rec.height, rec.width):
            raise UserError(f"{rec.path}: image is {img.shape[1]}x{img.shape[0]} but {self.ds.ann_file} "
                            f"says {rec.width}x{rec.height}")
        out = letterbox(img, (self.input_size, self.input_size), self.pad_value)
        if self._cached_bytes + out[0].nbytes <= self.cache_bytes:
            self._cache[index] = out
            self._cached_bytes += out[0].nbytes
        return out

    def preload(self) -> None:
        """Decode and letterbox every image now (before forking DataLoader workers)."""
        for i in range(len(self)):
            self.load(i)

    def targets(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Non-crowd boxes (xyxy, letterboxed input pixels) and labels of record ``index``."""
        rec = self.ds.records[index]
        _, lb = self.load(index)
        keep = ~rec.iscrowd if len(rec.iscrowd) else np.ones(len(rec.labels), bool)
        boxes = rec.boxes[keep].astype(np.float32) * np.float32(lb.scale)
        boxes[:, (0, 2)] += lb.pad_x
        boxes[:, (1, 3)] += lb.pad_y
        s = float(self.input_size)
        return boxes.clip(0, s), rec.labels[keep]

    def keypoints(self, index: int) -> np.ndarray | None:
        """Non-crowd keypoints ``[M, K, 3]`` in letterboxed input pixels (None without keypoints);
        keypoints outside the input are unlabelled (0, 0, 0)."""
        rec = self.ds.records[index]
        if not self.num_keypoints:
            return None
        _, lb = self.load(index)
        keep = ~rec.iscrowd if len(rec.iscrowd) else np.ones(len(rec.labels), bool)
        src = rec.keypoints if rec.keypoints is not None else np.zeros((len(rec.labels), self.num_keypoints, 3))
        k = src[keep].astype(np.float32, copy=True)
        lab = k[..., 2] > 0
        k[..., 0] = np.where(lab, k[..., 0] * np.float32(lb.scale) + np.float32(lb.pad_x), 0)
        k[..., 1] = np.where(lab, k[..., 1] * np.float32(lb.scale) + np.float32(lb.pad_y), 0)
        k[~lab] = 0.0
        s = self.input_size
        out = (k[..., 0] < 0) | (k[..., 0] >= s) | (k[..., 1] < 0) | (k[..., 1] >= s)
        k[out] = 0.0
        return k

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, _ = self.load(index)
        boxes, labels = self.targets(index)
        kpts = self.keypoints(index)
        if self.augment:
            seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
            img, boxes, labels, kpts = augment_pose(img, boxes, labels, kpts, np.random.default_rng(seed),
                                                    self.aug, self.flip_idx, self.pad_value)
        rgb = torch.from_numpy(np.asarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)))
        image = rgb.permute(2, 0, 1).to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
        cols = [labels.reshape(-1, 1).astype(np.float32), boxes.reshape(-1, 4)]
        if kpts is not None:
            cols.append(kpts.reshape(len(labels), 3 * self.num_keypoints))
        targets = np.concatenate(cols, 1)
        return image, torch.from_numpy(targets.astype(np.float32))


def collate_detection(batch: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack images; concatenate targets with the batch index prepended: ``[T, 6]`` (``[T, 6 + 3K]``
    with keypoints)."""
    images = torch.stack([b[0] for b in batch])
    rows = []
    for i, (_, t) in enumerate(batch):
        rows.append(torch.cat([torch.full((t.shape[0], 1), float(i), dtype=torch.float32), t], 1))
    targets = torch.cat(rows, 0) if rows else torch.zeros((0, 6), dtype=torch.float32)
    return images, targets
