"""Torch detection dataset: letterbox geometry, colour order, augmentation keeps boxes exact, collate."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgevision.runtime.errors import UserError
from edgevision.toolkit.data.augment import AugmentConfig, clip_boxes, hflip, scale_translate
from edgevision.toolkit.data.coco import CocoDataset, ImageRecord, load_coco
from edgevision.toolkit.data.dataset import DetectionDataset, collate_detection
from edgevision.toolkit.data.synthetic import generate_detection_dataset


def _one_image(tmp_path: Path) -> CocoDataset:
    """100x50 grey image with a blue 20x10 block at x 40..60, y 20..30, plus a crowd box."""
    img = np.full((50, 100, 3), 128, np.uint8)
    img[20:30, 40:60] = (255, 0, 0)  # BGR blue
    cv2.imwrite(str(tmp_path / "a.png"), img)
    rec = ImageRecord(1, tmp_path / "a.png", 100, 50, np.array([[40, 20, 60, 30], [0, 0, 5, 5]], np.float32),
                      np.array([2, 0], np.int64), np.array([False, True]))
    return CocoDataset(["a", "b", "c"], [1, 2, 3], [rec], tmp_path / "x.json", tmp_path)


def test_item_is_letterboxed_rgb_with_mapped_boxes(tmp_path: Path) -> None:
    ds = DetectionDataset(_one_image(tmp_path), 64, augment=False)
    img, targets = ds[0]
    assert img.shape == (3, 64, 64) and img.dtype == torch.float32
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
    # scale 0.64, image 64x32 padded 16 top/bottom: box -> x 25.6..38.4, y 16+12.8..16+19.2; crowd left out
    np.testing.assert_allclose(targets.numpy(), [[2, 25.6, 28.8, 38.4, 35.2]], atol=1e-4)
    assert float(img[2, 32, 32]) == pytest.approx(1.0) and float(img[0, 32, 32]) == pytest.approx(0.0)  # RGB
    assert float(img[0, 2, 32]) == pytest.approx(114 / 255)  # pad value
    assert ds.load(0)[0] is ds.load(0)[0]  # cached


def test_hflip_hand_computed() -> None:
    img = np.zeros((10, 10, 3), np.uint8)
    img[2:5, 1:4] = 255  # box x 1..4, y 2..5
    out, boxes = hflip(img, np.array([[1, 2, 4, 5]], np.float32))
    np.testing.assert_allclose(boxes, [[6, 2, 9, 5]])
    ys, xs = np.nonzero(out[..., 0])
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (6, 9, 2, 5)


def test_scale_translate_moves_pixels_and_boxes_together() -> None:
    img = np.zeros((64, 64, 3), np.uint8)
    img[20:30, 10:26] = 255  # box x 10..26, y 20..30
    out, boxes = scale_translate(img, np.array([[10, 20, 26, 30]], np.float32), 1.5, -10.0, -4.0, 0)
    # X' = 1.5 (X - 32) + 32 + t: x 10 -> -11, 26 -> 13; y 20 -> 10, 30 -> 25
    np.testing.assert_allclose(boxes, [[-11, 10, 13, 25]], atol=1e-5)
    ys, xs = np.nonzero(out[..., 0] > 127)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (0, 13, 10, 25)
    keep = clip_boxes(boxes, 64, 64, 0.5, 2.0)  # 13 of 24 px wide remain: kept, clipped
    assert keep.tolist() == [True] and boxes.tolist() == [[0, 10, 13, 25]]
    assert clip_boxes(boxes - [20, 0, 20, 0], 64, 64, 0.5, 2.0).tolist() == [False]


def test_augmented_items_keep_boxes_inside_the_image(tmp_path: Path) -> None:
    paths = generate_detection_dataset(tmp_path, num_train=6, num_val=1, image_size=96, seed=4)
    ds = DetectionDataset(load_coco(paths.train_json), 80, augment=True,
                          aug=AugmentConfig(scale=0.5, translate=0.3))
    ds.preload()
    torch.manual_seed(0)
    seen = 0
    for _ in range(4):
        for i in range(len(ds)):
            img, t = ds[i]
            assert img.shape == (3, 80, 80) and t.ndim == 2 and t.shape[1] == 5
            b = t[:, 1:].numpy()
            assert ((b >= 0) & (b <= 80)).all() and (b[:, 2:] - b[:, :2] >= 2.0).all()
            assert ((t[:, 0] >= 0) & (t[:, 0] < 6)).all()
            seen += len(t)
    assert seen > 0
    torch.manual_seed(1)
    a = ds[0]
    torch.manual_seed(1)
    b2 = ds[0]
    assert torch.equal(a[0], b2[0]) and torch.equal(a[1], b2[1])  # reproducible under torch's seed


def test_collate(tmp_path: Path) -> None:
    ds = DetectionDataset(_one_image(tmp_path), 32)
    imgs, targets = collate_detection([ds[0], (torch.zeros(3, 32, 32), torch.zeros((0, 5))), ds[0]])
    assert imgs.shape == (3, 3, 32, 32) and targets.shape == (2, 6)
    assert targets[:, 0].tolist() == [0.0, 2.0] and targets[:, 1].tolist() == [2.0, 2.0]


def test_unreadable_image_is_a_user_error(tmp_path: Path) -> None:
    ds = _one_image(tmp_path)
    (tmp_path / "a.png").write_bytes(b"not an image")
    with pytest.raises(UserError, match=r"cannot read image .*a\.png"):
        DetectionDataset(ds, 32)[0]
