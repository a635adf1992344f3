"""Ultralytics-compatible ONNX metadata, so a bundle's ``model.onnx`` also opens with ``YOLO("model.onnx")``.

Ultralytics' exporter (``engine/exporter.py``, 8.4) writes ``metadata_props`` as ``str(value)`` of:
description, author, date, version, license, docs, stride (int), task, head, batch, imgsz (``[h, w]``),
names (a dict literal ``{0: 'cat'}``), args (export arguments), channels, end2end and, for pose, kpt_shape;
its loader (``nn/backends/base.py``) reads them back with ``int`` / ``ast.literal_eval``. The same keys
are written here with the same value formats (author ``edgevision``: the file was written by us, from an
Ultralytics model); edgevision's own runtime reads names / imgsz / task / kpt_shape the same way
(``runtime/onnx_meta.py``). Metadata only: the graph and its ``images`` -> ``output0`` yolo layout are
unchanged. Written into the existing file atomically (``edgevision.runtime.fsutil``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import onnx

from edgevision.runtime.fsutil import atomic_write_bytes


def ultralytics_metadata(*, task: str, class_names: list[str], imgsz: int, strides: tuple[int, ...],
                         kpt_shape: tuple[int, int] | None = None, batch: int = 1,
                         dynamic: bool = False, half: bool = False, int8: bool = False) -> dict[str, str]:
    """The ``metadata_props`` Ultralytics writes for a detect/pose ONNX export, as strings."""
    import ultralytics

    meta: dict[str, Any] = {
        "description": f"edgevision export of an Ultralytics YOLO {task} model",
        "author": "edgevision",
        "date": datetime.now().astimezone().isoformat(),
        "version": ultralytics.__version__,
        "license": "AGPL-3.0 License (https://ultralytics.com/license)",
        "docs": "https://docs.ultralytics.com",
        "stride": int(max(strides)),
        "task": task,
        "head": "Pose" if task == "pose" else "Detect",
        "batch": int(batch),
        "imgsz": [int(imgsz), int(imgsz)],
        "names": dict(enumerate(class_names)),
        "args": {"batch": int(batch), "half": half, "int8": int8, "dynamic": dynamic, "nms": False},
        "channels": 3,
        "end2end": False,
    }
    if task == "pose" and kpt_shape is not None:
        meta["kpt_shape"] = [int(kpt_shape[0]), int(kpt_shape[1])]
    return {k: str(v) for k, v in meta.items()}


def write_metadata(path: Path, props: dict[str, str]) -> None:
    """Set ``props`` in ``path``'s ``metadata_props`` (replacing keys already there), atomically."""
    model = onnx.load(str(path))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    for key, value in [*kept, *props.items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    atomic_write_bytes(path, model.SerializeToString())


def metadata_for_checkpoint(meta: Any, *, batch: int = 1, dynamic: bool = False, half: bool = False,
                            int8: bool = False) -> dict[str, str]:
    """:func:`ultralytics_metadata` of an edgevision checkpoint's ``CheckpointMeta`` (source ultralytics)."""
    src = meta.extra.get("source", {})
    kpt = src.get("kpt_shape")
    return ultralytics_metadata(task=meta.task, class_names=list(meta.class_names), imgsz=int(meta.input_size),
                                strides=tuple(src.get("strides") or (8, 16, 32)),
                                kpt_shape=(int(kpt[0]), int(kpt[1])) if kpt else None, batch=batch,
                                dynamic=dynamic, half=half, int8=int8)
