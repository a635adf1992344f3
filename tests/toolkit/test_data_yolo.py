"""YOLO-format reader: hand-computed boxes, layouts, pose labels, COCO export, errors naming file:line."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgevision.runtime.errors import UserError
from edgevision.toolkit.data.coco import load_coco
from edgevision.toolkit.data.yolo import image_size, load_yolo, write_coco_json


def _dataset(root: Path, labels: dict[str, str], yaml_extra: str = "") -> Path:
    """Images 100x50 (png) in images/val, label files in labels/val."""
    for name in ("a", "b", "c"):
        (root / "images" / "val").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "images" / "val" / f"{name}.png"), np.zeros((50, 100, 3), np.uint8))
    (root / "labels" / "val").mkdir(parents=True, exist_ok=True)
    for name, text in labels.items():
        (root / "labels" / "val" / f"{name}.txt").write_text(text)
    data = root / "data.yaml"
    data.write_text(f"path: .\ntrain: images/val\nval: images/val\nnames:\n  0: cat\n  1: dog\n{yaml_extra}")
    return data


def test_boxes_match_hand_computed(tmp_path: Path) -> None:
    data = _dataset(tmp_path, {"a": "0 0.5 0.5 0.2 0.4\n\n1 0.1 0.1 0.2 0.2\n",
                               "b": "1 0.25 0.5 0.1 0.0\n"})  # zero height: dropped; c: no label file
    ds = load_yolo(data, "val")
    assert ds.class_names == ["cat", "dog"] and ds.cat_ids == [1, 2]
    assert [r.path.name for r in ds.records] == ["a.png", "b.png", "c.png"]
    a, b, c = ds.records
    assert (a.width, a.height, a.image_id) == (100, 50, 1)
    # cx 0.5*100=50, w 0.2*100=20 -> x 40..60; cy 0.5*50=25, h 0.4*50=20 -> y 15..35
    np.testing.assert_allclose(a.boxes, [[40, 15, 60, 35], [0, 0, 20, 10]], atol=1e-4)
    assert a.labels.tolist() == [0, 1] and a.iscrowd.tolist() == [False, False]
    assert b.boxes.shape == (0, 4) and c.boxes.shape == (0, 4)


def test_polygon_line_gives_its_extent(tmp_path: Path) -> None:
    ds = load_yolo(_dataset(tmp_path, {"a": "1 0.1 0.2 0.5 0.2 0.3 0.8\n"}))
    np.testing.assert_allclose(ds.records[0].boxes, [[10, 10, 50, 40]], atol=1e-4)


def test_pose_labels(tmp_path: Path) -> None:
    line = "0 0.5 0.5 0.4 0.4 0.5 0.4 2 0.6 0.6 1\n"
    ds = load_yolo(_dataset(tmp_path, {"a": line}, "kpt_shape: [2, 3]\n"))
    kp = ds.records[0].keypoints
    assert ds.num_keypoints == 2 and kp is not None and kp.shape == (1, 2, 3)
    np.testing.assert_allclose(kp[0], [[50, 20, 2], [60, 30, 1]], atol=1e-4)
    assert ds.records[1].keypoints is not None and ds.records[1].keypoints.shape == (0, 2, 3)


def test_txt_list_and_coco_export(tmp_path: Path) -> None:
    data = _dataset(tmp_path, {"a": "0 0.5 0.5 0.2 0.4\n"})
    (tmp_path / "val.txt").write_text("images/val/a.png\n./images/val/b.png\n")
    data.write_text(data.read_text().replace("val: images/val", "val: val.txt"))
    ds = load_yolo(data, "val")
    assert [r.path.name for r in ds.records] == ["a.png", "b.png"]
    coco = load_coco(write_coco_json(ds, tmp_path / "out" / "val.json"), ds.image_dir)
    assert coco.class_names == ["cat", "dog"]
    for r1, r2 in zip(ds.records, coco.records, strict=True):
        assert r2.path.resolve() == r1.path.resolve()
        np.testing.assert_allclose(r1.boxes, r2.boxes, atol=1e-4)


def test_image_size_from_headers(tmp_path: Path) -> None:
    for ext in (".png", ".jpg", ".bmp"):
        p = tmp_path / f"x{ext}"
        cv2.imwrite(str(p), np.zeros((23, 37, 3), np.uint8))
        assert image_size(p) == (37, 23)


@pytest.mark.parametrize(("text", "pattern"), [
    ("0 0.5 0.5 0.2 0.4\n0 0.5 0.5\n", r"a.txt:2: expected 'cls cx cy w h'"),
    ("2 0.5 0.5 0.2 0.2\n", r"a.txt:1: class 2 is not an integer in 0..1"),
    ("0.5 0.5 0.5 0.2 0.2\n", r"a.txt:1: class 0.5"),
    ("0 0.5 x 0.2 0.2\n", r"a.txt:1: non-numeric value"),
    ("0 50 25 20 20\n", r"a.txt:1: coordinates must be normalised"),
])
def test_bad_label_lines_name_file_and_line(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(UserError, match=pattern):
        load_yolo(_dataset(tmp_path, {"a": text}))


def test_bad_yaml(tmp_path: Path) -> None:
    data = _dataset(tmp_path, {})
    with pytest.raises(UserError, match="no 'test' key"):
        load_yolo(data, "test")
    data.write_text("val: images/val\nnames: []\n")
    with pytest.raises(UserError, match=r"data.yaml: 'names' must be"):
        load_yolo(data)
    data.write_text("val: nowhere\nnames: [a]\n")
    with pytest.raises(UserError, match="'val' entry 'nowhere' is not an image folder"):
        load_yolo(data)
    with pytest.raises(UserError, match="YOLO data file not found"):
        load_yolo(tmp_path / "missing.yaml")


def test_flip_idx_pairs_unnamed_keypoints(tmp_path: Path) -> None:
    """A custom keypoint set without names: the yaml's flip_idx (Ultralytics' key) tells the flip which
    keypoints swap; without it, unnamed keypoints could not be paired and a flip would mislabel them."""
    from edgevision.toolkit.data.dataset import DetectionDataset

    line = "0 0.5 0.5 0.4 0.4 0.4 0.4 2 0.6 0.4 2 0.4 0.6 2 0.5 0.6 2\n"
    data = _dataset(tmp_path, {"a": line}, "kpt_shape: [4, 3]\nflip_idx: [1, 0, 2, 3]\n")
    ds = load_yolo(data, "val")
    assert ds.flip_idx == [1, 0, 2, 3] and ds.keypoint_names == ["kp0", "kp1", "kp2", "kp3"]
    assert DetectionDataset(ds, 64).flip_idx == [1, 0, 2, 3]
    for bad in ("[1, 0, 2]", "[1, 2, 0, 3]", "[a, 0, 2, 3]"):
        data.write_text(data.read_text().rsplit("flip_idx", 1)[0] + f"flip_idx: {bad}\n")
        with pytest.raises(UserError, match=r"data.yaml: flip_idx must pair the 4 keypoints"):
            load_yolo(data, "val")


def test_17_unnamed_keypoints_are_cocos_unless_flip_idx_says_otherwise(tmp_path: Path) -> None:
    from edgevision.toolkit.data.coco import COCO_KEYPOINT_NAMES, COCO_SKELETON

    kp = " ".join(["0.5 0.5 2"] * 17)
    data = _dataset(tmp_path, {"a": f"0 0.5 0.5 0.4 0.4 {kp}\n"}, "kpt_shape: [17, 3]\n")
    ds = load_yolo(data, "val")
    assert ds.keypoint_names == COCO_KEYPOINT_NAMES and ds.skeleton == COCO_SKELETON
    data.write_text(data.read_text() + f"flip_idx: {list(range(17))}\n")  # no left/right twins: not COCO's
    ds = load_yolo(data, "val")
    assert ds.keypoint_names == [f"kp{i}" for i in range(17)] and ds.skeleton == [] and ds.flip_idx == list(range(17))
