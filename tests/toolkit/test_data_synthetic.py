"""Synthetic detection dataset: determinism, reuse, exact (tight) boxes, COCO round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgevision.runtime.errors import UserError
from edgevision.toolkit.data.coco import load_coco
from edgevision.toolkit.data.synthetic import (
    CLASS_NAMES,
    contour_area,
    generate_detection_dataset,
    make_shape_contours,
    rasterize,
    render_scene,
)


def _gen(root: Path, seed: int) -> dict[str, bytes]:
    generate_detection_dataset(root, num_train=3, num_val=2, image_size=64, seed=seed)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_different_seed_differs(tmp_path: Path) -> None:
    a, b, c = _gen(tmp_path / "a", 1), _gen(tmp_path / "b", 1), _gen(tmp_path / "c", 2)
    assert a == b
    assert "train.json" in a and "images/val/000001.jpg" in a
    assert a["train.json"] != c["train.json"]
    assert a["images/train/000000.jpg"] != c["images/train/000000.jpg"]


def test_rerun_reuses_complete_output_and_regenerates_on_new_args(tmp_path: Path) -> None:
    paths = generate_detection_dataset(tmp_path, num_train=2, num_val=1, image_size=64, seed=0)
    stamp = paths.train_json.stat().st_mtime_ns
    again = generate_detection_dataset(tmp_path, num_train=2, num_val=1, image_size=64, seed=0)
    assert again == paths and paths.train_json.stat().st_mtime_ns == stamp
    generate_detection_dataset(tmp_path, num_train=4, num_val=1, image_size=64, seed=0)
    assert len(json.loads(paths.train_json.read_text())["images"]) == 4
    assert not list(tmp_path.glob(".*.tmp"))


def test_bad_arguments_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="image_size"):
        generate_detection_dataset(tmp_path, num_train=1, num_val=1, image_size=8, seed=0)
    with pytest.raises(UserError, match="num_train"):
        generate_detection_dataset(tmp_path, num_train=-1, num_val=1, image_size=64, seed=0)


def test_axis_aligned_square_rasterises_exactly() -> None:
    # rectangle template spans +-size/(2 sqrt 2): size 20 sqrt 2 gives a 20 px square from 22 to 42
    contours = make_shape_contours(CLASS_NAMES.index("rectangle"), 32.0, 32.0, 20 * np.sqrt(2))
    raster = rasterize(contours, 64, 64)
    assert raster is not None
    alpha, x0, y0, box = raster
    np.testing.assert_allclose(box, [22, 22, 42, 42], atol=1e-9)
    full = np.zeros((64, 64), np.uint8)
    full[y0:y0 + alpha.shape[0], x0:x0 + alpha.shape[1]] = alpha
    assert (full[22:42, 22:42] == 255).all()
    assert full.sum() == 255 * 400  # nothing drawn outside the box


@pytest.mark.parametrize("label", range(len(CLASS_NAMES)))
def test_rotated_shape_box_is_tight_around_coverage(label: int) -> None:
    rng = np.random.default_rng(label)
    contours = make_shape_contours(label, 30.3, 27.8, 23.7, angle=0.7, aspect=0.85, rng=rng)
    raster = rasterize(contours, 64, 64)
    assert raster is not None
    alpha, x0, y0, box = raster
    cols, rows = np.flatnonzero(alpha.any(0)) + x0, np.flatnonzero(alpha.any(1)) + y0
    # the first/last covered pixel columns are the ones the box edges fall in
    assert cols[0] == int(np.floor(box[0])) and cols[-1] == int(np.ceil(box[2])) - 1
    assert rows[0] == int(np.floor(box[1])) and rows[-1] == int(np.ceil(box[3])) - 1
    # coverage equals the geometric area up to the rasteriser's ~1/8 px inclusive edge
    perimeter = sum(float(np.linalg.norm(np.diff(c, axis=0, append=c[:1]), axis=1).sum()) for c in contours)
    area = contour_area(contours)
    assert area - 1 <= alpha.sum() / 255 <= area + 0.25 * perimeter


def test_ring_has_a_hole() -> None:
    contours = make_shape_contours(CLASS_NAMES.index("ring"), 32.0, 32.0, 40.0)
    raster = rasterize(contours, 64, 64)
    assert raster is not None
    alpha, x0, y0, _ = raster
    assert alpha[32 - y0, 32 - x0] == 0 and alpha[32 - y0, 13 - x0] == 255


def test_shape_cut_by_border_gets_the_visible_box() -> None:
    contours = make_shape_contours(CLASS_NAMES.index("circle"), 60.0, 32.0, 20.0)
    raster = rasterize(contours, 64, 64)
    assert raster is not None
    np.testing.assert_allclose(raster[3], [50, 22, 64, 42], atol=0.3)


def test_render_scene_outputs() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        img, boxes, labels = render_scene(rng, 96, 80, max_objects=6)
        assert img.shape == (80, 96, 3) and img.dtype == np.uint8
        assert boxes.shape == (len(labels), 4) and boxes.dtype == np.float32
        assert len(labels) <= 6
        assert ((boxes[:, :2] >= 0) & (boxes[:, 2:] <= (96, 80)) & (boxes[:, 2:] > boxes[:, :2])).all()
        assert ((labels >= 0) & (labels < len(CLASS_NAMES))).all()


def test_coco_round_trip_matches_render(tmp_path: Path) -> None:
    paths = generate_detection_dataset(tmp_path, num_train=2, num_val=2, image_size=64, seed=3)
    ds = load_coco(paths.val_json)
    assert ds.class_names == CLASS_NAMES and ds.cat_ids == list(range(1, len(CLASS_NAMES) + 1))
    assert ds.image_dir == paths.image_dir
    raw = json.loads(paths.val_json.read_text())
    assert {"images", "annotations", "categories"} <= raw.keys()
    assert all(a["iscrowd"] == 0 and a["area"] > 0 for a in raw["annotations"])
    for idx, rec in enumerate(ds.records):
        assert rec.path.is_file() and (rec.width, rec.height) == (64, 64)
        _, boxes, labels = render_scene(np.random.default_rng(np.random.SeedSequence([3, 1, idx])), 64, 64, 8)
        np.testing.assert_allclose(rec.boxes, boxes, atol=2e-3)
        np.testing.assert_array_equal(rec.labels, labels)
