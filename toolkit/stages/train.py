"""Train stage: build the registry model and fit it on the prepared data, or adopt a model that arrives
trained (a checkpoint, an Ultralytics or ``module:`` model, written as an edgevision checkpoint; an ONNX
file, copied as the base model).

``task: pose`` builds the model with the dataset's keypoint count (its loss is then the pose loss, chosen
by ``models.loss.make_loss``) and needs a dataset with keypoint annotations.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from edgevision.runtime.errors import UserError

from ..cache import Artifact, Cache
from ..checkpoint import CheckpointMeta, save_checkpoint
from ..data.augment import AugmentConfig
from ..data.dataset import DetectionDataset
from ..models.registry import build_model
from ..models.sources.base import ModelSource, SourceInfo
from ..recipe import Recipe
from .bundle import keypoint_spec
from .data import PreparedData

CHECKPOINT = "checkpoint.pt"
ONNX_MODEL = "model.onnx"  # the base model of an ONNX source (no checkpoint)


def task_keypoints(recipe: Recipe, data: PreparedData) -> int:
    """Keypoints the model must predict: the dataset's for ``task: pose`` (UserError when it has none),
    0 for detection."""
    if recipe.task != "pose":
        return 0
    k = data.train.num_keypoints
    if k == 0:
        raise UserError(f"task 'pose': {data.train.ann_file} has no keypoints in its categories "
                        "(a COCO person-keypoints file, a YOLO data.yaml with kpt_shape, or kind: synthetic)")
    if data.val.keypoint_names != data.train.keypoint_names:
        raise UserError(f"{data.val.ann_file}: keypoint names differ from {data.train.ann_file}")
    return k


def train_stage(recipe: Recipe, data: PreparedData, cache: Cache, source: ModelSource | None = None) -> Artifact:
    """Returns an artifact holding the model every variant starts from: ``checkpoint.pt``, or ``model.onnx``
    for an ONNX source (``data["model_file"]``). A built-in model is trained (cached on dataset digest +
    model + train config); any other source is adopted as it is (cached on its fingerprint)."""
    from ..models.sources import open_source

    num_keypoints = task_keypoints(recipe, data)
    source = source if source is not None else open_source(recipe)
    info = source.describe()
    if not info.extra.get("needs_training"):
        return _adopt(recipe, data, cache, source, info, num_keypoints)

    material = {"data": data.digest, "model": recipe.model.model_dump(mode="json"),
                "input_size": recipe.input_size, "train": recipe.train.cache_material(),
                "task": recipe.task}

    def fit_model(workdir: Path) -> dict[str, Any]:
        import torch

        from ..train import TrainConfig as FitConfig
        from ..train import fit

        t = recipe.train
        torch.manual_seed(t.seed)  # weight init is part of the run: same recipe, same model
        model = build_model(recipe.model.name, recipe.model.size, num_classes=len(data.train.class_names),
                            num_keypoints=num_keypoints)
        aug = AugmentConfig(**t.augment.model_dump())
        ds = DetectionDataset(data.train, recipe.input_size, augment=True, aug=aug)
        cfg = FitConfig(epochs=t.epochs, batch=t.batch, lr=t.lr, weight_decay=t.weight_decay,
                        warmup_epochs=t.warmup_epochs, optimizer=t.optimizer, ema=t.ema, seed=t.seed,
                        num_threads=t.num_threads or (os.cpu_count() or 1), device=t.device,
                        time_budget_s=None if t.time is None else t.time * 3600)
        of = "" if t.time else f"/{t.epochs}"  # a time budget has no fixed epoch count
        on_epoch = None if sys.stderr.isatty() else (  # the bar shows progress on a terminal; logs get lines
            lambda i, loss, _m: cache.log(f"[train] epoch {i + 1}{of} loss {loss:.3f}"))
        result = fit(model, ds, cfg, on_epoch=on_epoch)
        trained = result.model if result.model is not None else model
        kpts = keypoint_spec(data.train) if num_keypoints else None  # lets `edgevision export` write a pose sidecar
        meta = CheckpointMeta(model=recipe.model.name, size=recipe.model.size, task=recipe.task,
                              class_names=list(data.train.class_names), input_size=recipe.input_size,
                              num_keypoints=num_keypoints,
                              extra={"keypoints": kpts.model_dump(mode="json")} if kpts is not None else {})
        save_checkpoint(workdir / CHECKPOINT, trained, meta)
        return {"trained": True, "epoch_losses": [float(x) for x in result.epoch_losses],
                "train_seconds": float(result.seconds)}

    return cache.run("train", material, fit_model)


def _adopt(recipe: Recipe, data: PreparedData, cache: Cache, source: ModelSource, info: SourceInfo,
           num_keypoints: int) -> Artifact:
    """A model that arrives trained: check it against the dataset, then store it as the build's base model."""
    key = f"model.{recipe.model.kind}"
    what = info.extra.get("path") or info.extra.get("module") or getattr(recipe.model, recipe.model.kind, "")
    where = f"{key}: {what}"
    names = list(data.train.class_names)
    if info.class_names is not None and len(info.class_names) != len(names):
        raise UserError(f"{where}: predicts {len(info.class_names)} classes but the dataset has {len(names)}")
    if info.class_names is not None and info.class_names != names:
        if recipe.model.kind == "checkpoint":
            raise UserError(f"{where}: classes {info.class_names} differ from the dataset's {names}")
        cache.log(f"[train] {key}: class names {info.class_names} differ from the dataset's; scoring by class index")
    if info.num_keypoints is not None and info.num_keypoints != num_keypoints:
        raise UserError(f"{where}: predicts {info.num_keypoints} keypoints but task {recipe.task!r} on this dataset "
                        f"needs {num_keypoints}")
    onnx_src = source.onnx_file()
    if onnx_src is not None:
        from ..models.sources.onnx import adopt_onnx, check_channels

        check_channels(info, onnx_src, len(names), num_keypoints)
        return cache.run("train", {"onnx": info.fingerprint, "classes": len(names), "keypoints": num_keypoints},
                         lambda d: {**adopt_onnx(onnx_src, d / ONNX_MODEL), "model_file": ONNX_MODEL,
                                    "trained": False})
    kpts = keypoint_spec(data.train) if num_keypoints else None
    material: dict[str, Any] = {"checkpoint": info.fingerprint}  # the checkpoint source's key, as before sources
    if recipe.model.kind != "checkpoint":
        material = {"source": recipe.model.kind, "fingerprint": info.fingerprint, "classes": names,
                    "keypoints": kpts.model_dump(mode="json") if kpts is not None else None,
                    "input_size": recipe.input_size}
    return cache.run("train", material, lambda d: source.to_checkpoint(
        d / CHECKPOINT, class_names=names, num_keypoints=num_keypoints,
        keypoints=kpts.model_dump(mode="json") if kpts is not None else None))
