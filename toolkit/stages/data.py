"""Data stage: materialise the recipe's dataset as COCO json and read it back through the COCO reader.

Synthetic data is generated into the stage cache (deterministic by seed, so its key is its config; the
shapes generator for ``task: detect``, the mannequin-figures pose generator for ``task: pose``); user
COCO data is read where it lies (the stage table lists it as a data stage that is never cached);
YOLO-format data is converted to COCO json in the cache so that the same reader and pycocotools evaluation
serve all three.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from edgevision.runtime.errors import UserError
from edgevision.runtime.fsutil import sha256_file, sha256_json

from ..cache import Cache
from ..data.coco import CocoDataset, load_coco, write_coco_json
from ..data.synthetic import generate_detection_dataset
from ..data.synthetic_pose import GENERATOR_VERSION as POSE_GENERATOR_VERSION
from ..data.synthetic_pose import generate_pose_dataset
from ..data.yolo import load_yolo
from ..recipe import DatasetConfig


@dataclass
class PreparedData:
    train: CocoDataset
    val: CocoDataset
    digest: str


def _read_in_place(cache: Cache, ann_files: list[Path], seconds: float) -> None:
    """COCO data is read where it lies, through no cache entry; the stage table still lists the data stage
    (keyed by the annotation files' hashes, never cached) so every dataset kind shows the same stages."""
    key = sha256_json([sha256_file(f) for f in ann_files])[:16]
    cache.log(f"[data] read in place ({key})")
    cache.events.append({"stage": "data", "key": key, "cached": False, "seconds": round(seconds, 2)})


def prepare_data(cfg: DatasetConfig, cache: Cache, task: str = "detect") -> PreparedData:
    """The recipe's train/val data; ``task`` (the recipe's) picks the synthetic generator."""
    if cfg.kind == "synthetic":
        generator = generate_pose_dataset if task == "pose" else generate_detection_dataset

        def generate(workdir: Path) -> dict[str, object]:
            paths = generator(
                workdir, num_train=cfg.num_train, num_val=cfg.num_val, image_size=cfg.image_size,
                seed=cfg.seed, max_objects=cfg.max_objects,
            )
            return {"train_json": str(paths.train_json.relative_to(workdir)),
                    "val_json": str(paths.val_json.relative_to(workdir))}

        material: dict[str, object] = {
            "kind": "synthetic", "config": cfg.model_dump(mode="json", exclude={"train", "val", "data_yaml"})}
        if task == "pose":  # the detection material stays as it was, so existing caches stay valid
            material["generator"] = {"name": "pose", "version": POSE_GENERATOR_VERSION}
        art = cache.run("data", material, generate)
        train_json, val_json = art.path(str(art.data["train_json"])), art.path(str(art.data["val_json"]))
        train, val = load_coco(train_json), load_coco(val_json)
    elif cfg.kind == "coco":
        if cfg.train is None or cfg.val is None:  # guaranteed by the recipe schema
            raise UserError("dataset: kind 'coco' needs 'train' and 'val'")
        t0 = time.perf_counter()
        train = load_coco(cfg.train.annotations, cfg.train.images, images_key="dataset.train.images")
        val = load_coco(cfg.val.annotations, cfg.val.images, images_key="dataset.val.images")
        _read_in_place(cache, [train.ann_file, val.ann_file], time.perf_counter() - t0)
    else:
        if cfg.data_yaml is None:
            raise UserError("dataset.data_yaml: required for kind 'yolo'")
        data_yaml = cfg.data_yaml
        ytrain, yval = load_yolo(data_yaml, "train"), load_yolo(data_yaml, "val")

        def convert(workdir: Path) -> dict[str, object]:
            write_coco_json(ytrain, workdir / "train.json")
            write_coco_json(yval, workdir / "val.json")
            return {}

        labels = sha256_json([[str(r.path), r.boxes.tolist(), r.labels.tolist()]
                              + ([r.keypoints.tolist()] if r.keypoints is not None else [])
                              for r in (*ytrain.records, *yval.records)])
        art = cache.run("data", {"kind": "yolo", "data_yaml": sha256_file(data_yaml), "labels": labels}, convert)
        train = load_coco(art.path("train.json"), ytrain.image_dir)
        val = load_coco(art.path("val.json"), yval.image_dir)
        train.flip_idx, val.flip_idx = ytrain.flip_idx, yval.flip_idx  # COCO json has no place for it
    if train.class_names != val.class_names:
        raise UserError(f"{val.ann_file}: categories differ from {train.ann_file}")
    hashes = [sha256_file(train.ann_file), sha256_file(val.ann_file)]
    digest = sha256_json(hashes if train.flip_idx is None else [*hashes, train.flip_idx])  # flips train
    return PreparedData(train, val, digest)
