"""COCO-format annotation reader (detection and keypoints) into one small typed structure.

Plain ``json`` rather than ``pycocotools.coco.COCO``: that class prints to stdout, fails with bare
``KeyError``/``AssertionError`` on malformed files, and indexes more than a training loader needs. Here
every problem becomes a ``UserError`` naming the file and the offending key or annotation. pycocotools
is still what evaluates (it reads the same json).

Conventions: boxes are xyxy float32 in continuous pixel coordinates (COCO ``bbox`` is x, y, w, h);
categories are mapped to contiguous indices ``0..C-1`` in category-id order (``cat_ids[i]`` is the COCO
id of index ``i``); zero-area boxes are dropped, boxes are clipped to the image; the skeleton is stored
0-based (COCO files store it 1-based).

Keypoint conventions (shared by the synthetic pose generator, the pose loss, flip augmentation and the
sidecar): ``COCO_KEYPOINT_NAMES`` / ``COCO_SKELETON`` / ``COCO_SIGMAS`` are the COCO person keypoints and
their OKS sigmas (from pycocotools' ``Params.kpt_oks_sigmas``; defined in ``edgevision.runtime.keypoints``,
which bare-ONNX sidecars also read); other keypoint sets get uniform sigmas
``1/K`` like Ultralytics (:func:`keypoint_sigmas`); :func:`flip_index` pairs ``left*``/``right*`` names.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevision.runtime.errors import UserError
from edgevision.runtime.keypoints import COCO_KEYPOINT_NAMES, COCO_SIGMAS, COCO_SKELETON

__all__ = ["COCO_KEYPOINT_NAMES", "COCO_SIGMAS", "COCO_SKELETON", "CocoDataset", "ImageRecord", "flip_index",
           "keypoint_sigmas", "load_coco", "write_coco_json"]


def keypoint_sigmas(names: list[str]) -> list[float]:
    """OKS sigmas for a keypoint set: COCO's for the 17 COCO person keypoints, else ``1/K`` each."""
    if list(names) == COCO_KEYPOINT_NAMES:
        return list(COCO_SIGMAS)
    return [1.0 / len(names)] * len(names) if names else []


def flip_index(names: list[str]) -> list[int]:
    """For a horizontal flip: index of each keypoint's mirror twin (``left_x`` <-> ``right_x``, also
    ``l_``/``r_`` and ``Left``/``Right`` spellings); unpaired keypoints map to themselves."""
    swaps = (("left", "right"), ("Left", "Right"), ("l_", "r_"), ("L_", "R_"))
    index = {n: i for i, n in enumerate(names)}
    out = []
    for i, name in enumerate(names):
        twin = i
        for a, b in swaps:
            for x, y in ((a, b), (b, a)):
                if name.startswith(x) and y + name[len(x):] in index:
                    twin = index[y + name[len(x):]]
        out.append(twin)
    return out


@dataclass
class ImageRecord:
    """One image and its annotations (``keypoints`` is [N, K, 3] x, y, visibility, or None)."""

    image_id: int
    path: Path
    width: int
    height: int
    boxes: np.ndarray  # [N, 4] float32 xyxy pixels
    labels: np.ndarray  # [N] int64 contiguous class index
    iscrowd: np.ndarray  # [N] bool
    keypoints: np.ndarray | None = None


@dataclass
class CocoDataset:
    """Images with boxes (and optionally keypoints), classes mapped to contiguous indices."""

    class_names: list[str]
    cat_ids: list[int]
    records: list[ImageRecord]
    ann_file: Path
    image_dir: Path
    keypoint_names: list[str] = field(default_factory=list)
    skeleton: list[tuple[int, int]] = field(default_factory=list)  # 0-based keypoint index pairs
    flip_idx: list[int] | None = None  # mirror twin of each keypoint, when the source names it (YOLO flip_idx)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    def __len__(self) -> int:
        return len(self.records)


def _need(obj: Any, key: str, where: str, path: Path, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise UserError(f"{path}: {where} has no '{key}' key")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise UserError(f"{path}: {where}.{key} must be {names}, got {type(value).__name__}")
    return value


def _image_root(path: Path, first_file: str | None, image_dir: Path | None, images_key: str) -> Path:
    """The folder that ``file_name`` is relative to: the given one, or the first common layout that
    holds the first image (json folder, its ``images/``, ``images/<split>/`` beside ``<split>.json``, the
    parent, ``../images/<split>`` ...). ``images_key`` is how the user names that folder (recipe key or
    flag), so the error says what to set."""
    if image_dir is not None:
        root = Path(image_dir)
        if first_file is not None and not (root / first_file).is_file():
            raise UserError(f"{path}: image '{first_file}' not found in {images_key} folder {root}")
        return root
    here = path.parent
    stem = path.stem
    splits = [stem] + [stem[len(p):] for p in ("instances_", "person_keypoints_") if stem.startswith(p)]
    candidates = [here, here / "images", *(here / "images" / s for s in splits), here.parent, here.parent / "images"]
    for split in splits[1:]:
        candidates += [here.parent / split, here.parent / "images" / split]
    if first_file is None:
        return here
    for root in candidates:
        if (root / first_file).is_file():
            return root
    tried = ", ".join(str(c) for c in candidates)
    raise UserError(f"{path}: image '{first_file}' not found (looked in {tried}); set {images_key} to the "
                    "image folder")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"annotation file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read annotation file ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: top level must be a JSON object with images/annotations/categories")
    for key in ("images", "annotations", "categories"):
        _need(data, key, "top level", path, list)
    return data


def _categories(data: dict[str, Any], path: Path
                ) -> tuple[list[int], list[str], list[str], list[tuple[int, int]]]:
    cats = []
    kpt_names: list[str] = []
    skeleton: list[tuple[int, int]] = []
    for i, cat in enumerate(data["categories"]):
        where = f"categories[{i}]"
        cid, name = _need(cat, "id", where, path, int), _need(cat, "name", where, path, str)
        cats.append((cid, name))
        names = cat.get("keypoints")
        if names:
            if kpt_names and list(names) != kpt_names:
                raise UserError(f"{path}: {where}.keypoints differ from an earlier category's keypoints")
            kpt_names = [str(n) for n in names]
            try:
                skeleton = [(int(a) - 1, int(b) - 1) for a, b in cat.get("skeleton", [])]
            except (TypeError, ValueError):
                raise UserError(f"{path}: {where}.skeleton must be a list of [a, b] pairs") from None
            bad = [p for p in skeleton if not (0 <= p[0] < len(names) and 0 <= p[1] < len(names))]
            if bad:
                raise UserError(f"{path}: {where}.skeleton refers to keypoints outside 1..{len(names)}")
    ids = [c[0] for c in cats]
    if len(set(ids)) != len(ids):
        raise UserError(f"{path}: duplicate category ids in 'categories'")
    cats.sort()
    return [c[0] for c in cats], [c[1] for c in cats], kpt_names, skeleton


def load_coco(ann_file: Path, image_dir: Path | None = None, images_key: str = "images") -> CocoDataset:
    """Read a COCO instances / person-keypoints json. ``image_dir`` defaults to the first common layout
    (next to the json, ``images/``, ``images/<split>/``, the parent folder, ``../images/<split>``) that
    holds the images; ``images_key`` names the setting in errors (``dataset.val.images``, ``--images``)."""
    path = Path(ann_file)
    data = _read_json(path)
    cat_ids, class_names, kpt_names, skeleton = _categories(data, path)
    cat_index = {cid: i for i, cid in enumerate(cat_ids)}
    num_k = len(kpt_names)

    images: dict[int, dict[str, Any]] = {}
    for i, img in enumerate(data["images"]):
        where = f"images[{i}]"
        image_id = _need(img, "id", where, path, int)
        if image_id in images:
            raise UserError(f"{path}: {where}: duplicate image id {image_id}")
        _need(img, "file_name", where, path, str)
        for key in ("width", "height"):
            if _need(img, key, where, path, (int, float)) <= 0:
                raise UserError(f"{path}: {where}.{key} must be positive")
        images[image_id] = img

    per_image: dict[int, list[tuple[list[float], int, bool, Any]]] = {k: [] for k in images}
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        image_id = _need(ann, "image_id", where, path, int)
        cid = _need(ann, "category_id", where, path, int)
        if image_id not in images:
            raise UserError(f"{path}: {where} (id {ann.get('id')}) refers to unknown image_id {image_id}")
        if cid not in cat_index:
            raise UserError(f"{path}: {where} (id {ann.get('id')}) refers to unknown category_id {cid}")
        bbox = _need(ann, "bbox", where, path, list)
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
            raise UserError(f"{path}: {where}.bbox must be 4 numbers [x, y, w, h], got {bbox}")
        if bbox[2] < 0 or bbox[3] < 0:
            raise UserError(f"{path}: {where} (id {ann.get('id')}) has a negative box size {bbox}")
        kpts = ann.get("keypoints")
        if num_k and kpts is not None and (not isinstance(kpts, list) or len(kpts) != 3 * num_k
                                           or not all(isinstance(v, (int, float)) for v in kpts)):
            got = f"{len(kpts)} values" if isinstance(kpts, list) else type(kpts).__name__
            raise UserError(f"{path}: {where} (id {ann.get('id')}).keypoints must be {3 * num_k} numbers "
                            f"(x, y, v for each of the {num_k} keypoints in 'categories'), got {got}")
        per_image[image_id].append((bbox, cat_index[cid], bool(ann.get("iscrowd", 0)), kpts))

    first = data["images"][0]["file_name"] if data["images"] else None
    root = _image_root(path, first, image_dir, images_key)
    records = []
    for image_id, img in images.items():
        w, h = int(img["width"]), int(img["height"])
        boxes, labels, crowd, kpts_all = [], [], [], []
        for (x, y, bw, bh), label, is_crowd, kpts in per_image[image_id]:
            x1, y1 = min(max(x, 0.0), w), min(max(y, 0.0), h)
            x2, y2 = min(max(x + bw, 0.0), w), min(max(y + bh, 0.0), h)
            if x2 <= x1 or y2 <= y1:
                continue  # zero area (possibly after clipping): nothing to learn or match
            boxes.append((x1, y1, x2, y2))
            labels.append(label)
            crowd.append(is_crowd)
            if num_k:
                kpts_all.append(np.zeros((num_k, 3)) if kpts is None else np.reshape(kpts, (num_k, 3)))
        keypoints = np.array(kpts_all, np.float32).reshape(-1, num_k, 3) if num_k else None
        records.append(ImageRecord(image_id, root / img["file_name"], w, h,
                                   np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64),
                                   np.array(crowd, bool), keypoints))
    return CocoDataset(class_names, cat_ids, records, path, root, kpt_names, skeleton)


def write_coco_json(ds: CocoDataset, path: Path) -> Path:
    """Write ``ds`` as a COCO json (atomically) so pycocotools can evaluate against it."""
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for rec in ds.records:
        try:
            file_name = str(rec.path.relative_to(ds.image_dir))
        except ValueError:
            file_name = str(rec.path)
        images.append({"id": rec.image_id, "file_name": file_name, "width": rec.width, "height": rec.height})
        for j, (box, label) in enumerate(zip(rec.boxes.tolist(), rec.labels.tolist(), strict=True)):
            x1, y1, x2, y2 = box
            ann: dict[str, Any] = {"id": len(anns) + 1, "image_id": rec.image_id,
                                   "category_id": ds.cat_ids[label],
                                   "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                   "iscrowd": int(rec.iscrowd[j]) if len(rec.iscrowd) else 0}
            if rec.keypoints is not None:
                kp = rec.keypoints[j]
                ann["keypoints"] = kp.reshape(-1).tolist()
                ann["num_keypoints"] = int((kp[:, 2] > 0).sum())
            anns.append(ann)
    cats = []
    for cid, name in zip(ds.cat_ids, ds.class_names, strict=True):
        cat: dict[str, Any] = {"id": cid, "name": name}
        if ds.keypoint_names:
            cat["keypoints"] = list(ds.keypoint_names)
            cat["skeleton"] = [[a + 1, b + 1] for a, b in ds.skeleton]
        cats.append(cat)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}), encoding="utf-8")
    os.replace(tmp, out)
    return out
