"""Shared by the Ultralytics tests: tiny random-weight YOLOv8 / YOLO11 models built from Ultralytics' yamls.

Nothing is downloaded: ``YOLO_OFFLINE=1`` and every model comes from a yaml shipped inside the package.
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any

import pytest
import torch

os.environ.setdefault("YOLO_OFFLINE", "1")
pytest.importorskip("ultralytics", reason="Ultralytics is an optional extra: pip install 'edgevision[ultralytics]'")

IMGSZ = 128


@functools.lru_cache(maxsize=8)
def _built(cfg: str, nc: int, kpt: tuple[int, int] | None, seed: int) -> Any:
    from ultralytics.nn.tasks import DetectionModel, PoseModel

    torch.manual_seed(seed)
    model = (PoseModel(cfg, nc=nc, data_kpt_shape=kpt, verbose=False) if kpt
             else DetectionModel(cfg, nc=nc, verbose=False))
    # random BatchNorm statistics, so the BN folding and splitting are exercised with non-trivial values
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def ul_model(cfg: str = "yolov8n.yaml", nc: int = 3, kpt: tuple[int, int] | None = None, seed: int = 0) -> Any:
    """A fresh copy of an Ultralytics DetectionModel / PoseModel with random weights (eval mode)."""
    return copy.deepcopy(_built(cfg, nc, kpt, seed))


def save_ul_checkpoint(model: Any, path: Path, names: list[str], imgsz: int = IMGSZ) -> Path:
    """Write ``model`` as Ultralytics' trainer writes best.pt (a pickled half-precision ``ema``/``model``,
    ``train_args`` with imgsz, the writing version)."""
    import ultralytics

    m = copy.deepcopy(model).half()
    m.names = dict(enumerate(names))
    task = "pose" if hasattr(m.model[-1], "kpt_shape") else "detect"
    m.task, m.args = task, {"imgsz": imgsz, "task": task}
    torch.save({"model": m, "ema": None, "version": ultralytics.__version__,
                "train_args": {"imgsz": imgsz, "task": task}}, path)
    return path
