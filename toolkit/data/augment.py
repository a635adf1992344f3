"""Training augmentations on letterboxed images, applied consistently to xyxy boxes.

Hand-written (a few OpenCV calls) rather than taken from albumentations/torchvision: those would add a
dependency for three operations, and here the box arithmetic must follow the continuous pixel convention
used everywhere in edgevision (pixel ``i`` spans ``[i, i+1)``), so that a box stays exactly tight around
what is drawn after scaling, shifting and flipping. Every function takes a numpy ``Generator``.

Keypoints ``[N, K, 3]`` (x, y, v; COCO visibility) follow the same maps: a horizontal flip also swaps
left/right keypoints (``flip_idx``), and a keypoint moved outside the image becomes unlabelled
(``v = 0``, ``x = y = 0``), as COCO marks keypoints outside the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths of the training augmentations (0 disables one). Version 1. The defaults are the recipe's
    (``recipe.AugmentSection``: flip only); a test keeps the two equal."""

    flip: float = 0.5  # probability of a horizontal flip
    hsv_h: float = 0.0  # hue gain (fraction of the full hue circle), e.g. 0.015
    hsv_s: float = 0.0  # saturation gain, e.g. 0.5
    hsv_v: float = 0.0  # value (brightness) gain, e.g. 0.3
    scale: float = 0.0  # zoom factor drawn from [1 - scale, 1 + scale], e.g. 0.25
    translate: float = 0.0  # shift drawn from [-translate, translate] x image size, e.g. 0.1
    min_visible: float = 0.5  # keep a box cut by the border if this fraction of its area remains
    min_size: float = 2.0  # ... and if both sides are at least this many pixels


def hflip(img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right: x -> W - x (continuous coordinates), so x1' = W - x2 and x2' = W - x1."""
    w = img.shape[1]
    out = boxes.copy()
    out[:, 0], out[:, 2] = w - boxes[:, 2], w - boxes[:, 0]
    return np.asarray(cv2.flip(img, 1)), out


def hflip_keypoints(kpts: np.ndarray, width: int, flip_idx: list[int] | np.ndarray) -> np.ndarray:
    """Mirror keypoints ``[N, K, 3]`` (x -> W - x) and swap left/right twins; unlabelled ones stay 0."""
    out = kpts[:, np.asarray(flip_idx, np.int64)].copy() if kpts.shape[1] else kpts.copy()
    out[..., 0] = np.where(out[..., 2] > 0, width - out[..., 0], 0.0)
    return out


def clip_keypoints(kpts: np.ndarray, w: int, h: int) -> np.ndarray:
    """Keypoints outside ``[0, w) x [0, h)`` become unlabelled (0, 0, 0), in place; returns ``kpts``."""
    x, y = kpts[..., 0], kpts[..., 1]
    out = (x < 0) | (x >= w) | (y < 0) | (y >= h)
    kpts[out] = 0.0
    return kpts


def hsv_jitter(img: np.ndarray, rng: np.random.Generator, h: float, s: float, v: float) -> np.ndarray:
    """Random hue shift and saturation/value gains through per-channel lookup tables (BGR uint8)."""
    if not (h or s or v):
        return img
    gains = rng.uniform(-1, 1, 3) * (h, s, v) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * gains[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    return np.asarray(cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR))


def scale_translate(img: np.ndarray, boxes: np.ndarray, s: float, tx: float, ty: float, pad_value: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Zoom by about ``s`` around the image centre and shift by about (tx, ty) pixels; boxes follow exactly.

    Done as one ``cv2.resize`` (ratio ``new/old`` exactly, pixel-centre aligned like the letterbox)
    pasted at an integer offset into a ``pad_value`` canvas: ``X' = X * new_w / w + ox``. That is about
    3x faster than ``warpAffine`` and keeps the box arithmetic exact. Boxes are not clipped here.
    """
    h, w = img.shape[:2]
    new_w, new_h = max(round(w * s), 1), max(round(h * s), 1)
    ox, oy = round((w - new_w) / 2 + tx), round((h - new_h) / 2 + ty)
    out = np.full_like(img, pad_value)
    x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + new_w, w), min(oy + new_h, h)
    if x1 > x0 and y1 > y0:
        resized = img if (new_w, new_h) == (w, h) else cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        out[y0:y1, x0:x1] = resized[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    b = boxes.astype(np.float32, copy=True)
    b[:, (0, 2)] = b[:, (0, 2)] * np.float32(new_w / w) + ox
    b[:, (1, 3)] = b[:, (1, 3)] * np.float32(new_h / h) + oy
    return out, b


def clip_boxes(boxes: np.ndarray, w: int, h: int, min_visible: float, min_size: float) -> np.ndarray:
    """Clip to the image; return the mask of boxes that keep enough of their area and size."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    boxes[:, (0, 2)] = boxes[:, (0, 2)].clip(0, w)
    boxes[:, (1, 3)] = boxes[:, (1, 3)].clip(0, h)
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return np.asarray((bw >= min_size) & (bh >= min_size) & (bw * bh >= min_visible * area))


def augment(img: np.ndarray, boxes: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
            cfg: AugmentConfig, pad_value: int = 114) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale/translate, flip and colour-jitter a letterboxed BGR image with its boxes and labels."""
    img, boxes, labels, _ = augment_pose(img, boxes, labels, None, rng, cfg, None, pad_value)
    return img, boxes, labels


def augment_pose(img: np.ndarray, boxes: np.ndarray, labels: np.ndarray, kpts: np.ndarray | None,
                 rng: np.random.Generator, cfg: AugmentConfig, flip_idx: list[int] | None = None,
                 pad_value: int = 114) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`augment` that also carries keypoints ``[N, K, 3]`` (``None`` = boxes only; then it draws
    the same random numbers and returns the same image and boxes as :func:`augment`)."""
    h, w = img.shape[:2]
    if cfg.scale or cfg.translate:
        s = float(rng.uniform(1 - cfg.scale, 1 + cfg.scale))
        tx, ty = (rng.uniform(-cfg.translate, cfg.translate, 2) * (w, h)).tolist()
        new_w, new_h = max(round(w * s), 1), max(round(h * s), 1)
        ox, oy = round((w - new_w) / 2 + tx), round((h - new_h) / 2 + ty)
        img, boxes = scale_translate(img, boxes, s, tx, ty, pad_value)
        keep = clip_boxes(boxes, w, h, cfg.min_visible, cfg.min_size)
        boxes, labels = boxes[keep], labels[keep]
        if kpts is not None:
            k = kpts[keep].astype(np.float32, copy=True)
            lab = k[..., 2] > 0
            k[..., 0] = np.where(lab, k[..., 0] * np.float32(new_w / w) + ox, 0)
            k[..., 1] = np.where(lab, k[..., 1] * np.float32(new_h / h) + oy, 0)
            kpts = clip_keypoints(k, w, h)
    if rng.random() < cfg.flip:
        img, boxes = hflip(img, boxes)
        if kpts is not None:
            kpts = hflip_keypoints(kpts, w, flip_idx if flip_idx is not None else list(range(kpts.shape[1])))
    img = hsv_jitter(img, rng, cfg.hsv_h, cfg.hsv_s, cfg.hsv_v)
    return img, boxes, labels, kpts
