"""COCO reader: box conversion, category mapping, image folder resolution, keypoints, error messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edgevision.runtime.errors import UserError
from edgevision.toolkit.data.coco import load_coco, write_coco_json


def _coco(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "images": [{"id": 5, "file_name": "a.png", "width": 40, "height": 30},
                   {"id": 9, "file_name": "b.png", "width": 40, "height": 30}],
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 7, "bbox": [1, 2, 10, 5], "iscrowd": 0},
            {"id": 2, "image_id": 5, "category_id": 3, "bbox": [30, 20, 20, 20], "iscrowd": 1},
            {"id": 3, "image_id": 9, "category_id": 3, "bbox": [4, 4, 0, 3]},  # zero area: dropped
        ],
        "categories": [{"id": 7, "name": "seven"}, {"id": 3, "name": "three"}],
    }
    data.update(over)
    return data


def _write(folder: Path, data: Any, images_sub: str = "", name: str = "ann.json") -> Path:
    img_dir = folder / images_sub
    img_dir.mkdir(parents=True, exist_ok=True)
    for f in ("a.png", "b.png"):
        cv2.imwrite(str(img_dir / f), np.zeros((30, 40, 3), np.uint8))
    path = folder / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_reads_boxes_categories_crowd(tmp_path: Path) -> None:
    ds = load_coco(_write(tmp_path, _coco()))
    assert ds.class_names == ["three", "seven"] and ds.cat_ids == [3, 7]  # category-id order
    a, b = ds.records
    assert (a.image_id, a.path, a.width, a.height) == (5, tmp_path / "a.png", 40, 30)
    np.testing.assert_allclose(a.boxes, [[1, 2, 11, 7], [30, 20, 40, 30]])  # xywh -> xyxy, clipped
    assert a.boxes.dtype == np.float32 and a.labels.dtype == np.int64
    assert a.labels.tolist() == [1, 0] and a.iscrowd.tolist() == [False, True]
    assert b.boxes.shape == (0, 4) and a.keypoints is None and ds.keypoint_names == []


def test_finds_images_folder(tmp_path: Path) -> None:
    ds = load_coco(_write(tmp_path, _coco(), images_sub="images"))
    assert ds.image_dir == tmp_path / "images" and ds.records[0].path.is_file()
    split = tmp_path / "coco"
    (split / "annotations").mkdir(parents=True)
    _write(split, _coco(), images_sub="images/val2017", name="annotations/instances_val2017.json")
    assert load_coco(split / "annotations" / "instances_val2017.json").image_dir == split / "images" / "val2017"


def test_finds_images_split_folder_beside_split_json(tmp_path: Path) -> None:
    """``val.json`` with ``images/val/`` beside it (the layout `edgevision dataset synthetic` and many
    exporters write): found without ``images:``."""
    _write(tmp_path, _coco(), images_sub="images/val", name="val.json")
    assert load_coco(tmp_path / "val.json").image_dir == tmp_path / "images" / "val"


def test_explicit_image_dir_and_missing_images(tmp_path: Path) -> None:
    ann = _write(tmp_path, _coco(), images_sub="pics")
    assert load_coco(ann, tmp_path / "pics").image_dir == tmp_path / "pics"
    with pytest.raises(UserError, match=r"'a.png' not found \(looked in .*images/ann.*\); set images to the image "
                                        r"folder$"):
        load_coco(ann)
    with pytest.raises(UserError, match=r"set dataset.val.images to"):  # the recipe's key path, when given
        load_coco(ann, images_key="dataset.val.images")
    with pytest.raises(UserError, match="not found in images folder"):
        load_coco(ann, tmp_path)


def test_keypoints(tmp_path: Path) -> None:
    cats = [{"id": 1, "name": "person", "keypoints": ["l", "r", "nose"], "skeleton": [[1, 2], [2, 3]]}]
    anns = [{"id": 1, "image_id": 5, "category_id": 1, "bbox": [0, 0, 4, 4],
             "keypoints": [1, 2, 2, 3, 4, 1, 0, 0, 0]}]
    ds = load_coco(_write(tmp_path, _coco(categories=cats, annotations=anns)))
    assert ds.keypoint_names == ["l", "r", "nose"] and ds.skeleton == [(0, 1), (1, 2)]
    kp = ds.records[0].keypoints
    assert kp is not None and kp.shape == (1, 3, 3)
    np.testing.assert_allclose(kp[0], [[1, 2, 2], [3, 4, 1], [0, 0, 0]])
    assert ds.records[1].keypoints is not None and ds.records[1].keypoints.shape == (0, 3, 3)
    back = load_coco(write_coco_json(ds, tmp_path / "out.json"), tmp_path)
    assert back.skeleton == ds.skeleton
    np.testing.assert_allclose(back.records[0].keypoints, kp)


def test_write_round_trip(tmp_path: Path) -> None:
    ds = load_coco(_write(tmp_path, _coco()))
    back = load_coco(write_coco_json(ds, tmp_path / "sub" / "copy.json"), tmp_path)
    assert back.cat_ids == ds.cat_ids and back.class_names == ds.class_names
    for r1, r2 in zip(ds.records, back.records, strict=True):
        np.testing.assert_allclose(r1.boxes, r2.boxes)
        assert r1.labels.tolist() == r2.labels.tolist() and r1.iscrowd.tolist() == r2.iscrowd.tolist()


@pytest.mark.parametrize(("data", "pattern"), [
    ("{not json", r"invalid JSON at line 1"),
    ([1, 2], r"top level must be a JSON object"),
    (_coco(annotations=3), r"top level.annotations must be list"),
    ({"images": [], "annotations": []}, r"top level has no 'categories' key"),
    (_coco(images=[{"id": 5, "file_name": "a.png", "width": 40}]), r"images\[0\] has no 'height' key"),
    (_coco(annotations=[{"id": 4, "image_id": 99, "category_id": 3, "bbox": [0, 0, 1, 1]}]),
     r"annotations\[0\] \(id 4\) refers to unknown image_id 99"),
    (_coco(annotations=[{"id": 4, "image_id": 5, "category_id": 8, "bbox": [0, 0, 1, 1]}]),
     r"unknown category_id 8"),
    (_coco(annotations=[{"id": 4, "image_id": 5, "category_id": 3, "bbox": [0, 0, -1, 1]}]),
     r"annotations\[0\] \(id 4\) has a negative box size"),
    (_coco(annotations=[{"id": 4, "image_id": 5, "category_id": 3, "bbox": [0, 0, 1]}]),
     r"annotations\[0\].bbox must be 4 numbers"),
    (_coco(categories=[{"id": 3}]), r"categories\[0\] has no 'name' key"),
])
def test_errors_name_file_and_key(tmp_path: Path, data: Any, pattern: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(UserError, match=pattern) as err:
        load_coco(path)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"annotation file not found: .*nope\.json"):
        load_coco(tmp_path / "nope.json")
