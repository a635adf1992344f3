"""Synthetic pose data and keypoint plumbing: COCO keypoints format, visibility labels, letterbox and
flip (left/right swap) of keypoints, collate layout, and reader errors naming the file and annotation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgevision.runtime.errors import UserError
from edgevision.toolkit.data.augment import AugmentConfig, augment, augment_pose, hflip_keypoints
from edgevision.toolkit.data.coco import COCO_KEYPOINT_NAMES, COCO_SKELETON, flip_index, load_coco
from edgevision.toolkit.data.dataset import DetectionDataset, collate_detection
from edgevision.toolkit.data.synthetic_pose import (
    generate_pose_dataset,
    render_figure,
    render_pose_scene,
    sample_figure,
)


@pytest.fixture(scope="module")
def pose_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pose")
    return generate_pose_dataset(root, num_train=12, num_val=3, image_size=96, seed=3).train_json


def test_deterministic_by_seed(tmp_path: Path) -> None:
    def files(root: Path, seed: int) -> dict[str, bytes]:
        generate_pose_dataset(root, num_train=2, num_val=1, image_size=64, seed=seed)
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    a, b, c = files(tmp_path / "a", 1), files(tmp_path / "b", 1), files(tmp_path / "c", 2)
    assert a == b and a["train.json"] != c["train.json"]


def test_written_in_coco_keypoints_format(pose_set: Path) -> None:
    raw = json.loads(pose_set.read_text())
    (cat,) = raw["categories"]
    assert cat["name"] == "person" and cat["keypoints"] == COCO_KEYPOINT_NAMES
    assert [(a - 1, b - 1) for a, b in cat["skeleton"]] == COCO_SKELETON  # 1-based in the file
    ann = raw["annotations"][0]
    assert len(ann["keypoints"]) == 51 and ann["num_keypoints"] == sum(v > 0 for v in ann["keypoints"][2::3])
    ds = load_coco(pose_set)
    assert ds.num_keypoints == 17 and ds.skeleton == COCO_SKELETON
    assert sum(len(r.labels) for r in ds.records) >= len(ds)  # at least one person per image on average


def test_visibility_labels_follow_coco(pose_set: Path) -> None:
    ds = load_coco(pose_set)
    kp = np.concatenate([r.keypoints for r in ds.records if r.keypoints is not None])
    boxes = np.concatenate([r.boxes for r in ds.records])
    v = kp[..., 2]
    assert set(np.unique(v).tolist()) <= {0.0, 1.0, 2.0}
    assert (kp[v == 0][:, :2] == 0).all(), "unlabelled keypoints are (0, 0, 0)"
    assert ((v > 0).sum(1) >= 6).all(), "every drawn person has labelled keypoints"
    lab = v > 0
    assert ((kp[..., 0] >= 0) & (kp[..., 0] < 96) | ~lab).all(), "labelled keypoints lie in the image"
    inside = (kp[..., 0] >= boxes[:, None, 0] - 1) & (kp[..., 0] <= boxes[:, None, 2] + 1) \
        & (kp[..., 1] >= boxes[:, None, 1] - 1) & (kp[..., 1] <= boxes[:, None, 3] + 1)
    assert inside[v == 2].all(), "visible keypoints lie on the person (inside its box)"


def test_scenes_have_occlusion_and_several_people() -> None:
    counts, hidden = [], 0
    for i in range(20):
        _, boxes, kp, areas = render_pose_scene(np.random.default_rng(i), 128, 128, 4)
        counts.append(len(boxes))
        hidden += int((kp[..., 2] == 1).sum())
        assert (areas > 0).all() and (areas <= (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).all()
    assert max(counts) >= 3 and hidden > 0


def test_figures_have_human_proportions_and_joint_limits() -> None:
    """Silhouette area (the OKS scale) like a real person's frontal area (~0.2 x height^2); limbs attach
    at the joints with human lengths; knees barely bend sideways when standing."""
    ratios, per_h2, forearm, shin = [], [], [], []
    for i in range(60):
        fig = sample_figure(np.random.default_rng(i), 64.0, 56.0, 60.0)
        _, alpha = render_figure(fig, 128, 128)
        m = alpha >= 0.5
        ys, xs = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        w, h = xs[-1] + 1 - xs[0], ys[-1] + 1 - ys[0]
        ratios.append(m.sum() / (w * h))
        per_h2.append(m.sum() / h**2)
        k = fig.kpts
        forearm.append(np.linalg.norm(k[9] - k[7]) / fig.height)
        shin.append(np.linalg.norm(k[15] - k[13]) / fig.height)
    assert 0.3 < float(np.median(ratios)) < 0.6
    assert 0.17 < float(np.median(per_h2)) < 0.28
    assert min(forearm) > 0.08 and max(forearm) < 0.18 and min(shin) > 0.18 and max(shin) < 0.27


def test_flip_index_pairs_left_and_right() -> None:
    idx = flip_index(COCO_KEYPOINT_NAMES)
    assert idx[:7] == [0, 2, 1, 4, 3, 6, 5] and idx[15:] == [16, 15]
    assert flip_index(["head", "l_hand", "r_hand"]) == [0, 2, 1]


def test_hflip_keypoints_mirrors_and_swaps() -> None:
    kp = np.array([[[10.0, 5.0, 2.0], [20.0, 6.0, 1.0], [0.0, 0.0, 0.0]]], np.float32)
    out = hflip_keypoints(kp, 64, [1, 0, 2])
    np.testing.assert_allclose(out, [[[44.0, 6.0, 1.0], [54.0, 5.0, 2.0], [0.0, 0.0, 0.0]]])
    np.testing.assert_allclose(hflip_keypoints(out, 64, [1, 0, 2]), kp)


def test_augment_pose_keeps_boxes_and_keypoints_together() -> None:
    rng_img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 40, 50]], np.float32)
    kp = np.array([[[15, 20, 2], [35, 45, 2], [0, 0, 0]]], np.float32)
    cfg = AugmentConfig(flip=1.0, scale=0.0, translate=0.0, hsv_h=0, hsv_s=0, hsv_v=0)
    _, b, _, k = augment_pose(rng_img, boxes, np.zeros(1, np.int64), kp, np.random.default_rng(0), cfg, [1, 0, 2])
    assert k is not None
    np.testing.assert_allclose(b, [[24, 10, 54, 50]])
    np.testing.assert_allclose(k, [[[29, 45, 2], [49, 20, 2], [0, 0, 0]]])
    # scale/translate: keypoints move with the boxes; ones pushed out of the image become unlabelled
    cfg = AugmentConfig(flip=0.0, scale=0.0, translate=0.5, hsv_h=0, hsv_s=0, hsv_v=0, min_visible=0.0, min_size=0)
    moved = 0
    for seed in range(8):
        _, b2, _, k2 = augment_pose(rng_img, boxes, np.zeros(1, np.int64), kp, np.random.default_rng(seed), cfg)
        assert k2 is not None and len(k2) == len(b2)
        if len(b2) == 0:
            continue
        lab = k2[0, :, 2] > 0
        assert ((k2[0, lab, :2] >= 0) & (k2[0, lab, :2] < 64)).all() and (k2[0, ~lab] == 0).all()
        if b2[0, 0] > 0 and b2[0, 2] < 64 and b2[0, 1] > 0 and b2[0, 3] < 64:  # box not clipped: same shift
            np.testing.assert_allclose(k2[0, 0, :2], [15 + b2[0, 0] - 10, 20 + b2[0, 1] - 10])
            moved += 1
    assert moved >= 1


def test_detection_augment_unchanged_by_the_pose_path() -> None:
    img = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    boxes = np.array([[5, 5, 30, 30], [20, 25, 60, 60]], np.float32)
    labels = np.array([0, 1])
    cfg = AugmentConfig(hsv_h=0.015, hsv_s=0.5, hsv_v=0.3, scale=0.25, translate=0.1)  # every op on
    a = augment(img, boxes, labels, np.random.default_rng(7), cfg)
    b = augment_pose(img, boxes, labels, None, np.random.default_rng(7), cfg)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert b[3] is None


def test_items_and_collate_carry_keypoints_in_input_pixels(pose_set: Path) -> None:
    ds = load_coco(pose_set)
    dd = DetectionDataset(ds, 48, augment=False)  # 96 px images -> scale 0.5, no padding
    i = next(j for j, r in enumerate(ds.records) if len(r.labels))
    _, t = dd[i]
    rec = ds.records[i]
    assert rec.keypoints is not None and t.shape == (len(rec.labels), 5 + 51)
    kp = t[:, 5:].reshape(-1, 17, 3).numpy()
    lab = rec.keypoints[..., 2] > 0
    np.testing.assert_allclose(kp[..., :2][lab], rec.keypoints[..., :2][lab] * 0.5, atol=1e-4)
    np.testing.assert_array_equal(kp[..., 2], rec.keypoints[..., 2])
    torch.manual_seed(0)
    imgs, targets = collate_detection([dd[0], dd[1], dd[2]])
    assert imgs.shape == (3, 3, 48, 48) and targets.shape[1] == 6 + 51


def test_wrong_keypoint_count_names_file_and_annotation(tmp_path: Path, pose_set: Path) -> None:
    raw = json.loads(pose_set.read_text())
    raw["annotations"][1]["keypoints"] = raw["annotations"][1]["keypoints"][:-3]
    bad = pose_set.parent / "bad.json"
    bad.write_text(json.dumps(raw))
    aid = raw["annotations"][1]["id"]
    with pytest.raises(UserError, match=rf"bad\.json: annotations\[1\] \(id {aid}\)\.keypoints must be 51 numbers"):
        load_coco(bad)
