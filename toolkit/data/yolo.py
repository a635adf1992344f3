"""YOLO-format (Ultralytics layout) dataset reader, and a COCO json writer for pycocotools evaluation.

Layout: a ``data.yaml`` with ``path`` (dataset root, relative to the yaml's folder), ``train``/``val``/
``test`` (an image folder, a ``.txt`` list of images, or a list of either, relative to ``path``),
``names`` (list or ``{index: name}``) and optionally ``kpt_shape: [K, 2|3]`` for pose, with ``kpt_names``
(a list, or Ultralytics' per-class ``{0: [...]}``); 17 unnamed keypoints are COCO's (names, skeleton). Each image
``.../images/x.jpg`` has its labels in ``.../labels/x.txt``: one object per line, ``cls cx cy w h``
normalised to 0..1, followed by K keypoints for pose, or a polygon ``cls x1 y1 x2 y2 ...`` (box = its
extent). A missing label file means an image without objects, as in Ultralytics.

Why hand-written: Ultralytics' loader is tied to its trainer and pulls in its whole package (AGPL);
the format is simple. Image sizes come from the PNG/JPEG header (no Pillow dependency, no full decode);
other formats fall back to ``cv2.imread``.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from edgevision.runtime.errors import UserError
from edgevision.runtime.validation import parse_yaml

from .coco import COCO_KEYPOINT_NAMES, COCO_SKELETON, CocoDataset, ImageRecord, flip_index, load_coco, write_coco_json

__all__ = ["IMAGE_EXTS", "image_size", "load_eval_split", "load_yolo", "write_coco_json"]

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image, read from the PNG / JPEG header when possible."""
    with open(path, "rb") as f:
        head = f.read(26)
        if head[:8] == b"\x89PNG\r\n\x1a\n":
            w, h = struct.unpack(">II", head[16:24])
            return int(w), int(h)
        if head[:2] == b"\xff\xd8":
            f.seek(2)
            while True:
                marker = f.read(2)
                if len(marker) < 2 or marker[0] != 0xFF:
                    break
                if marker[1] in (0xD8, 0x01) or 0xD0 <= marker[1] <= 0xD7:
                    continue
                seg = f.read(2)
                if len(seg) < 2:
                    break
                (length,) = struct.unpack(">H", seg)
                if 0xC0 <= marker[1] <= 0xCF and marker[1] not in (0xC4, 0xC8, 0xCC):
                    h, w = struct.unpack(">xHH", f.read(5))
                    return int(w), int(h)
                f.seek(length - 2, os.SEEK_CUR)
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise UserError(f"cannot read image {path}")
    return int(img.shape[1]), int(img.shape[0])


def _label_path(img: Path) -> Path:
    """Ultralytics' rule: the last ``/images/`` path component becomes ``/labels/``, extension ``.txt``."""
    parts = list(img.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _list_images(entry: str, root: Path, yaml_path: Path, split: str) -> list[Path]:
    p = Path(entry)
    p = p if p.is_absolute() else root / p
    if p.is_dir():
        return sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_EXTS)
    if p.is_file() and p.suffix == ".txt":
        out = []
        for line in p.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line:
                q = Path(line)
                out.append(q if q.is_absolute() else (p.parent / q).resolve())
        return out
    raise UserError(f"{yaml_path}: '{split}' entry {entry!r} is not an image folder or .txt list ({p})")


def _parse_labels(path: Path, w: int, h: int, nc: int, kpt_shape: tuple[int, int] | None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    boxes, labels, kpts = [], [], []
    k, d = kpt_shape or (0, 0)
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{n}"
        try:
            vals = [float(v) for v in fields]
        except ValueError:
            raise UserError(f"{where}: non-numeric value in label line {line.strip()!r}") from None
        cls = vals[0]
        if cls != int(cls) or not 0 <= cls < nc:
            raise UserError(f"{where}: class {fields[0]} is not an integer in 0..{nc - 1}")
        coords = np.array(vals[1:], np.float64)
        if kpt_shape is not None:
            if len(coords) != 4 + k * d:
                raise UserError(f"{where}: expected {5 + k * d} values (cls cx cy w h + {k}x{d} keypoints), "
                                f"got {len(fields)}")
        elif len(coords) != 4 and (len(coords) < 6 or len(coords) % 2):
            raise UserError(f"{where}: expected 'cls cx cy w h' (5 values) or a polygon 'cls x1 y1 x2 y2 "
                            f"x3 y3 ...', got {len(fields)} values")
        xy = coords if kpt_shape is None else np.concatenate([coords[:4], coords[4:].reshape(k, d)[:, :2].ravel()])
        if (xy < -0.01).any() or (xy > 1.01).any():
            raise UserError(f"{where}: coordinates must be normalised to 0..1, got {line.strip()!r}")
        if kpt_shape is None and len(coords) > 4:  # polygon: box = extent
            xy = coords.reshape(-1, 2)
            x1, y1 = xy.min(0)
            x2, y2 = xy.max(0)
        else:
            cx, cy, bw, bh = coords[:4]
            if bw < 0 or bh < 0:
                raise UserError(f"{where}: negative box width/height {bw}, {bh}")
            x1, y1, x2, y2 = cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2
        box = np.clip([x1 * w, y1 * h, x2 * w, y2 * h], 0, [w, h, w, h])
        if box[2] <= box[0] or box[3] <= box[1]:
            continue  # zero area
        boxes.append(box)
        labels.append(int(cls))
        if kpt_shape is not None:
            pts = coords[4:].reshape(k, d)
            kp = np.zeros((k, 3))
            kp[:, 0], kp[:, 1] = pts[:, 0] * w, pts[:, 1] * h
            kp[:, 2] = pts[:, 2] if d == 3 else np.where((pts[:, :2] > 0).any(1), 2.0, 0.0)
            kp[kp[:, 2] == 0, :2] = 0.0
            kpts.append(kp)
    b = np.array(boxes, np.float32).reshape(-1, 4)
    kp_arr = np.array(kpts, np.float32).reshape(-1, k, 3) if kpt_shape is not None else None
    return b, np.array(labels, np.int64), kp_arr


def _names(cfg: dict[str, Any], path: Path) -> list[str]:
    names = cfg.get("names")
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    if isinstance(names, dict) and names:
        keys = sorted(names)
        if keys != list(range(len(keys))):
            raise UserError(f"{path}: 'names' keys must be the class indices 0..{len(keys) - 1}")
        return [str(names[i]) for i in keys]
    raise UserError(f"{path}: 'names' must be a non-empty list or {{index: name}} mapping")


def load_yolo(data_yaml: Path, split: str = "val") -> CocoDataset:
    """Read one split of a YOLO-format dataset into a ``CocoDataset`` (category ids = index + 1)."""
    path = Path(data_yaml)
    if not path.is_file():
        raise UserError(f"YOLO data file not found: {path}")
    cfg = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    if not isinstance(cfg, dict):
        raise UserError(f"{path}: expected a mapping with path/train/val/names")
    names = _names(cfg, path)
    if split not in cfg or not cfg[split]:
        raise UserError(f"{path}: no '{split}' key (the image folder or list of the {split} split)")
    root = Path(cfg.get("path") or ".")
    root = root if root.is_absolute() else path.parent / root
    kpt_shape = None
    if cfg.get("kpt_shape") is not None:
        ks = cfg["kpt_shape"]
        if not (isinstance(ks, list) and len(ks) == 2 and ks[1] in (2, 3) and int(ks[0]) > 0):
            raise UserError(f"{path}: kpt_shape must be [num_keypoints, 2 or 3], got {ks!r}")
        kpt_shape = (int(ks[0]), int(ks[1]))
    entries = cfg[split] if isinstance(cfg[split], list) else [cfg[split]]
    images = [img for e in entries for img in _list_images(str(e), root, path, split)]
    records = []
    for i, img in enumerate(images):
        if not img.is_file():
            raise UserError(f"{path}: image listed for '{split}' not found: {img}")
        w, h = image_size(img)
        boxes, labels, kpts = _parse_labels(_label_path(img), w, h, len(names), kpt_shape)
        records.append(ImageRecord(i + 1, img, w, h, boxes, labels, np.zeros(len(labels), bool), kpts))
    first = Path(str(entries[0]))
    image_dir = first if first.is_absolute() else root / first
    kpt_names, skeleton = _keypoint_names(cfg, kpt_shape[0]) if kpt_shape else ([], [])
    return CocoDataset(names, list(range(1, len(names) + 1)), records, path,
                       image_dir if image_dir.is_dir() else root, kpt_names, skeleton,
                       _flip_idx(cfg, kpt_shape[0], path) if kpt_shape else None)


def _flip_idx(cfg: dict[str, Any], k: int, path: Path) -> list[int] | None:
    """The yaml's ``flip_idx`` (each keypoint's mirror twin, as Ultralytics uses it for flips), checked."""
    fi = cfg.get("flip_idx")
    if fi is None:
        return None
    ok = isinstance(fi, list) and all(isinstance(j, int) and not isinstance(j, bool) for j in fi)
    if not (ok and sorted(fi) == list(range(k)) and all(fi[j] == i for i, j in enumerate(fi))):
        raise UserError(f"{path}: flip_idx must pair the {k} keypoints (a list of 0..{k - 1} where "
                        f"flip_idx[flip_idx[i]] == i), got {fi!r}")
    return [int(j) for j in fi]


def _keypoint_names(cfg: dict[str, Any], k: int) -> tuple[list[str], list[tuple[int, int]]]:
    """Keypoint names (and skeleton) of a pose data.yaml: its ``kpt_names`` (Ultralytics >= 8.3; a list,
    or per class ``{0: [...]}`` as in its coco-pose.yaml), else COCO's for 17 keypoints whose ``flip_idx``
    (if any) is COCO's, else ``kp0..``. COCO's names bring COCO's skeleton (and, downstream, its sigmas)."""
    kn = cfg.get("kpt_names")
    if isinstance(kn, dict) and kn and all(isinstance(v, list) for v in kn.values()):
        kn = kn[sorted(kn)[0]]  # per class: the first class's (edgevision has one keypoint set)
    names = [f"kp{i}" for i in range(k)]
    if isinstance(kn, list | dict) and len(kn) == k:
        names = [str(v) for v in (kn if isinstance(kn, list) else kn.values())]
    elif k == len(COCO_KEYPOINT_NAMES) and cfg.get("flip_idx") in (None, flip_index(COCO_KEYPOINT_NAMES)):
        names = list(COCO_KEYPOINT_NAMES)
    return names, (list(COCO_SKELETON) if names == COCO_KEYPOINT_NAMES else [])


def load_eval_split(data: Path, split: str, images: Path | None, workdir: Path) -> CocoDataset:
    """An evaluation split from a COCO json (``images``: its image folder, else found beside it) or a YOLO
    ``data.yaml`` (its ``split``), as a ``CocoDataset`` whose ``ann_file`` pycocotools can read: a YOLO
    split is written as COCO json under ``workdir``."""
    path = Path(data)
    if path.suffix.lower() not in (".yaml", ".yml"):
        return load_coco(path, images, "--images")
    if images is not None:
        raise UserError(f"--images {images}: a YOLO data.yaml names its own image folders ('{split}:' in {path})")
    ds = load_yolo(path, split)
    return load_coco(write_coco_json(ds, Path(workdir) / f"{split}.json"), ds.image_dir)
