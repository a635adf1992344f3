"""`edgevision dataset ...`: write edgevision's built-in datasets to a folder, in COCO or YOLO format.

``edgevision dataset synthetic --out DIR --format yolo [--task pose]`` writes the same images and labels a
``kind: synthetic`` recipe trains on, plus YOLO labels and a ``data.yaml``, so that Ultralytics can train
on them (``yolo train data=DIR/data.yaml``) and a recipe can read them with ``dataset: {kind: yolo}``.
"""

from __future__ import annotations

from pathlib import Path

import click

_PATH = click.Path(path_type=Path)


@click.group()
def dataset() -> None:
    """Write datasets to disk (COCO json or YOLO txt + data.yaml)."""


@dataset.command()
@click.option("--out", type=_PATH, required=True, help="Folder to write (new, empty, or an earlier output).")
@click.option("--task", type=click.Choice(["detect", "pose"]), default="detect", show_default=True,
              help="detect: rotated shapes, 6 classes; pose: mannequin figures with the 17 COCO keypoints.")
@click.option("--format", "fmt", type=click.Choice(["coco", "yolo"]), default="yolo", show_default=True,
              help="coco: train.json/val.json; yolo: also labels/<split>/*.txt and data.yaml.")
@click.option("--num-train", type=click.IntRange(1), default=2000, show_default=True)
@click.option("--num-val", type=click.IntRange(1), default=300, show_default=True)
@click.option("--image-size", type=click.IntRange(32, 4096), default=256, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-objects", type=click.IntRange(1, 100), default=None,
              help="Objects per image at most (default: 8 detect, 4 pose).")
def synthetic(out: Path, task: str, fmt: str, num_train: int, num_val: int, image_size: int, seed: int,
              max_objects: int | None) -> None:
    """The synthetic set a `kind: synthetic` recipe uses (same seed, same images), written to OUT.

    Images go to OUT/images/{train,val}/, COCO annotations to OUT/{train,val}.json; with --format yolo also
    OUT/labels/{train,val}/*.txt and OUT/data.yaml. The folder appears whole or not at all.
    """
    from edgevision.runtime.errors import UserError
    from edgevision.runtime.fsutil import atomic_dir

    from .data.coco import load_coco
    from .data.synthetic import generate_detection_dataset
    from .data.synthetic_pose import generate_pose_dataset
    from .data.yolo_write import write_yolo

    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "dataset_info.json").is_file())):
        raise UserError(f"--out {out}: exists and is not an earlier `edgevision dataset` output; "
                        "choose a new or empty folder")
    generate = generate_pose_dataset if task == "pose" else generate_detection_dataset
    with atomic_dir(out) as tmp:
        paths = generate(tmp, num_train=num_train, num_val=num_val, image_size=image_size, seed=seed,
                         max_objects=max_objects or (4 if task == "pose" else 8))
        if fmt == "yolo":
            write_yolo(tmp, {"train": load_coco(paths.train_json), "val": load_coco(paths.val_json)})
    what = f"{out / 'data.yaml'} (YOLO)" if fmt == "yolo" else f"{out / 'train.json'}, {out / 'val.json'} (COCO)"
    click.echo(f"wrote {num_train} + {num_val} {task} images to {out}: {what}")
