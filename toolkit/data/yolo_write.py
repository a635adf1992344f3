"""YOLO-format (Ultralytics layout) writer: label files and ``data.yaml`` for a dataset edgevision can read.

Used by ``edgevision dataset synthetic --format yolo`` so that Ultralytics can train on the synthetic
shapes / mannequin sets (``yolo train data=DIR/data.yaml``) and ``dataset: {kind: yolo, data_yaml: ...}``
reads the same files back. The images stay where they are (``root/images/<split>/``); each gets
``root/labels/<split>/<stem>.txt`` by the reader's own rule (``yolo._label_path``), so writer and reader
cannot disagree on where labels live. One object per line: ``cls cx cy w h`` normalised to 0..1 with six
decimals (0.0006 px at 640, well inside pixel rounding), then for pose ``x y v`` per keypoint (COCO
visibility 0/1/2; an unlabelled keypoint is ``0 0 0``). Crowd annotations have no YOLO form and are left out.

``data.yaml`` has no ``path`` key: Ultralytics then takes the yaml's own folder as the dataset root (a
relative ``path`` would be resolved against the working directory or its datasets folder instead), and so
does edgevision's reader. Pose sets also get ``kpt_shape``, ``flip_idx`` (left/right twins by name) and
``kpt_names`` in Ultralytics' per-class form ``{0: [...]}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from edgevision.runtime.errors import UserError
from edgevision.runtime.fsutil import atomic_write_text

from .coco import CocoDataset, flip_index
from .yolo import _label_path

__all__ = ["label_lines", "write_yolo"]


def label_lines(ds: CocoDataset, index: int) -> list[str]:
    """The YOLO label lines of record ``index`` (non-crowd objects, coordinates normalised)."""
    rec = ds.records[index]
    w, h = float(rec.width), float(rec.height)
    lines = []
    for j, ((x1, y1, x2, y2), cls) in enumerate(zip(rec.boxes.tolist(), rec.labels.tolist(), strict=True)):
        if len(rec.iscrowd) and rec.iscrowd[j]:
            continue
        vals = [(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h]
        fields = [str(int(cls))] + [f"{v:.6f}" for v in vals]
        if ds.num_keypoints and rec.keypoints is not None:
            for x, y, v in rec.keypoints[j].tolist():
                fields += ["0", "0", "0"] if v <= 0 else [f"{x / w:.6f}", f"{y / h:.6f}", str(int(v))]
        lines.append(" ".join(fields))
    return lines


def _relative_images(ds: CocoDataset, root: Path, split: str) -> str:
    folders = {rec.path.parent for rec in ds.records}
    if len(folders) != 1:
        raise UserError(f"{ds.ann_file}: the {split} images lie in {len(folders)} folders; YOLO format wants one")
    (folder,) = folders
    try:
        return folder.relative_to(root).as_posix()
    except ValueError:
        raise UserError(f"{ds.ann_file}: {split} images in {folder} are not under {root}") from None


def write_yolo(root: Path, splits: dict[str, CocoDataset]) -> Path:
    """Write ``labels/<split>/*.txt`` for every split's images (which must lie under ``root/.../images/``)
    and ``root/data.yaml`` (last, atomically: it marks complete output); returns the yaml's path."""
    root = Path(root)
    first = next(iter(splits.values()))
    for ds in splits.values():
        if ds.class_names != first.class_names or ds.keypoint_names != first.keypoint_names:
            raise UserError(f"{ds.ann_file}: classes/keypoints differ from {first.ann_file}")
        for i, rec in enumerate(ds.records):
            label = _label_path(rec.path)
            if label == rec.path.with_suffix(".txt"):
                raise UserError(f"{rec.path}: not under an 'images' folder, so YOLO has no labels folder for it")
            label.parent.mkdir(parents=True, exist_ok=True)
            lines = label_lines(ds, i)
            atomic_write_text(label, "\n".join(lines) + ("\n" if lines else ""))
    cfg: dict[str, Any] = {split: _relative_images(ds, root, split) for split, ds in splits.items()}
    cfg["names"] = dict(enumerate(first.class_names))
    if first.num_keypoints:
        cfg["kpt_shape"] = [first.num_keypoints, 3]
        cfg["flip_idx"] = first.flip_idx if first.flip_idx is not None else flip_index(first.keypoint_names)
        cfg["kpt_names"] = {0: list(first.keypoint_names)}
    out = root / "data.yaml"
    atomic_write_text(out, "# written by edgevision (toolkit/data/yolo_write.py)\n"
                      + yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None))
    return out
