"""Train stage: build the registry model and fit it on the prepared data, or adopt a given checkpoint.

``task: pose`` builds the model with the dataset's keypoint count (its loss is then the pose loss, chosen
by ``models.loss.make_loss``) and needs a dataset with keypoint annotations.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from edgevision.runtime.errors import UserError
from edgevision.runtime.fsutil import sha256_file

from ..cache import Artifact, Cache
from ..checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from ..data.augment import AugmentConfig
from ..data.dataset import DetectionDataset
from ..models.registry import build_model, get_model_spec
from ..recipe import Recipe
from .bundle import keypoint_spec
from .data import PreparedData

CHECKPOINT = "checkpoint.pt"


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


def train_stage(recipe: Recipe, data: PreparedData, cache: Cache) -> Artifact:
    """Returns an artifact holding ``checkpoint.pt``; cached on dataset digest + model + train config."""
    num_keypoints = task_keypoints(recipe, data)
    if recipe.model.checkpoint is not None:
        ckpt = recipe.model.checkpoint
        if not ckpt.is_file():
            raise UserError(f"model.checkpoint: {ckpt}: file not found")
        _, meta = load_checkpoint(ckpt)
        if meta.class_names != data.train.class_names:
            raise UserError(f"model.checkpoint: {ckpt}: classes {meta.class_names} differ from the dataset's "
                            f"{data.train.class_names}")
        if meta.num_keypoints != num_keypoints:
            raise UserError(f"model.checkpoint: {ckpt}: predicts {meta.num_keypoints} keypoints but task "
                            f"{recipe.task!r} on this dataset needs {num_keypoints}")

        def adopt(workdir: Path) -> dict[str, Any]:
            (workdir / CHECKPOINT).write_bytes(ckpt.read_bytes())
            return {"source": str(ckpt), "trained": False}

        return cache.run("train", {"checkpoint": sha256_file(ckpt)}, adopt)

    spec = get_model_spec(recipe.model.name)  # unknown model -> UserError before any work
    if spec.task != recipe.task:
        hint = {"pose": "edgepose", "detect": "edgedet"}.get(recipe.task, "")
        raise UserError(f"model.name: {spec.name!r} is a {spec.task} model but the recipe's task is "
                        f"{recipe.task!r}" + (f"; use {hint!r}" if hint else ""))
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
