"""Built-in synthetic detection dataset: rotated shapes on cluttered backgrounds, written in COCO format.

The scenes come from ``edgevision.runtime.synthetic`` (the same renderer feeds the torch-free
``synthetic://`` camera, so the demo stream looks like the training data); its docstring says what makes
the data a real learning problem and why boxes are exact. This module only splits, seeds and writes:
one seed per (seed, split, index), so val images do not change when ``num_train`` does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgevision.runtime.errors import UserError
from edgevision.runtime.synthetic import (  # the scene renderer lives in the runtime (synthetic:// source)
    CLASS_NAMES,
    contour_area,
    make_shape_contours,
    rasterize,
    render_scene,
)
from edgevision.runtime.synthetic import scene_with_areas as _scene

__all__ = ["CLASS_NAMES", "GENERATOR_VERSION", "SyntheticPaths", "contour_area", "generate_detection_dataset",
           "make_shape_contours", "rasterize", "render_scene"]

GENERATOR_VERSION = 1


@dataclass(frozen=True)
class SyntheticPaths:
    """Where a generated dataset lives. ``file_name`` in the jsons is relative to ``image_dir``."""

    root: Path
    train_json: Path
    val_json: Path
    image_dir: Path

    @property
    def train_images(self) -> Path:
        return self.image_dir / "train"

    @property
    def val_images(self) -> Path:
        return self.image_dir / "val"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_jpeg(image_dir: Path, split: str, idx: int, img: np.ndarray) -> dict[str, Any]:
    """Write image ``idx`` of a split as ``NNNNNN.jpg`` (quality 95); returns its COCO ``images`` entry."""
    name = f"{idx:06d}.jpg"
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise OSError(f"could not encode synthetic image {name}")
    buf.tofile(str(image_dir / name))
    h, w = img.shape[:2]
    return {"id": idx + 1, "file_name": f"{split}/{name}", "width": w, "height": h}


def check_sizes(where: str, num_train: int, num_val: int, max_objects: int, image_size: int, *,
                min_size: int) -> None:
    """Split sizes >= 0, at least one object per image, images at least ``min_size`` pixels."""
    for name, value in (("num_train", num_train), ("num_val", num_val), ("max_objects", max_objects)):
        if value < 0 or (name == "max_objects" and value == 0):
            raise UserError(f"{where}: {name} must be positive, got {value}")
    if image_size < min_size:
        raise UserError(f"{where}: image_size must be >= {min_size}, got {image_size}")


def write_once(root: Path, args: dict[str, Any], write_split: Callable[[str, int], Path]) -> SyntheticPaths:
    """Reuse a complete dataset under ``root`` made with the same ``args``, else write both splits
    (``write_split(split, code)``) and then ``dataset_info.json``, the marker of complete output."""
    paths = SyntheticPaths(root, root / "train.json", root / "val.json", root / "images")
    marker = root / "dataset_info.json"
    try:
        if json.loads(marker.read_text(encoding="utf-8")) == args and paths.train_json.is_file() \
                and paths.val_json.is_file():
            return paths
    except (OSError, ValueError):
        pass
    root.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    write_split("train", 0)
    write_split("val", 1)
    _atomic_write_text(marker, json.dumps(args, indent=1))
    return paths


#: One image of a synthetic split: (image, annotations without their "id"/"image_id").
Scene = Callable[[int], tuple[np.ndarray, list[dict[str, Any]]]]


def write_coco_split(root: Path, split: str, n: int, scene: Scene, description: str, version: int,
                     categories: list[dict[str, Any]]) -> Path:
    """Render images ``0..n-1`` with ``scene(idx)`` into ``root/images/split`` and write ``root/split.json``
    (COCO, ids from 1) atomically. Both synthetic generators (detection, pose) write their splits this way."""
    image_dir = root / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for idx in range(n):
        img, objects = scene(idx)
        images.append(write_jpeg(image_dir, split, idx, img))
        anns += [{"id": len(anns) + k + 1, "image_id": idx + 1, **obj} for k, obj in enumerate(objects)]
    coco = {"info": {"description": description, "version": version}, "images": images,
            "annotations": anns, "categories": categories}
    out = root / f"{split}.json"
    _atomic_write_text(out, json.dumps(coco, separators=(",", ":")))
    return out


def _write_split(root: Path, split: str, code: int, n: int, size: int, seed: int, max_objects: int) -> Path:
    def scene(idx: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
        # One generator per image, keyed by (seed, split, index): images do not depend on split sizes.
        rng = np.random.default_rng(np.random.SeedSequence([seed, code, idx]))
        img, boxes, labels, areas = _scene(rng, size, size, max_objects)
        objects = []
        for box, label, area in zip(boxes.tolist(), labels.tolist(), areas.tolist(), strict=True):
            x1, y1, x2, y2 = (round(v, 3) for v in box)
            objects.append({"category_id": label + 1, "bbox": [x1, y1, round(x2 - x1, 3), round(y2 - y1, 3)],
                            "area": area, "iscrowd": 0})
        return img, objects

    categories = [{"id": i + 1, "name": c, "supercategory": "shape"} for i, c in enumerate(CLASS_NAMES)]
    return write_coco_split(root, split, n, scene, f"edgevision synthetic shapes ({split})", GENERATOR_VERSION,
                            categories)


def generate_detection_dataset(out_dir: Path, *, num_train: int, num_val: int, image_size: int, seed: int,
                               max_objects: int = 8) -> SyntheticPaths:
    """Write (or reuse) the synthetic dataset under ``out_dir``: ``train.json``, ``val.json`` and
    ``images/{train,val}/NNNNNN.jpg``. ``dataset_info.json`` is written last and marks complete output;
    a rerun with the same arguments that finds it returns at once."""
    root = Path(out_dir)
    args = {"generator": "edgevision.synthetic.detection", "version": GENERATOR_VERSION,
            "num_train": num_train, "num_val": num_val, "image_size": image_size, "seed": seed,
            "max_objects": max_objects, "class_names": CLASS_NAMES}
    check_sizes("generate_detection_dataset", num_train, num_val, max_objects, image_size, min_size=32)
    sizes = {"train": num_train, "val": num_val}
    return write_once(root, args, lambda split, code: _write_split(root, split, code, sizes[split], image_size, seed,
                                                                   max_objects))
