"""Train stage: build the registry model and fit it on the prepared data, or adopt a given checkpoint."""

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
from .data import PreparedData

CHECKPOINT = "checkpoint.pt"


def train_stage(recipe: Recipe, data: PreparedData, cache: Cache) -> Artifact:
    """Returns an artifact holding ``checkpoint.pt``; cached on dataset digest + model + train config."""
    if recipe.model.checkpoint is not None:
        ckpt = recipe.model.checkpoint
        if not ckpt.is_file():
            raise UserError(f"model.checkpoint: {ckpt}: file not found")
        _, meta = load_checkpoint(ckpt)
        if meta.class_names != data.train.class_names:
            raise UserError(f"model.checkpoint: {ckpt}: classes {meta.class_names} differ from the dataset's "
                            f"{data.train.class_names}")

        def adopt(workdir: Path) -> dict[str, Any]:
            (workdir / CHECKPOINT).write_bytes(ckpt.read_bytes())
            return {"source": str(ckpt), "trained": False}

        return cache.run("train", {"checkpoint": sha256_file(ckpt)}, adopt)

    get_model_spec(recipe.model.name)  # unknown model -> UserError before any work
    material = {"data": data.digest, "model": recipe.model.model_dump(mode="json"),
                "input_size": recipe.input_size, "train": recipe.train.model_dump(mode="json"),
                "task": recipe.task}

    def fit_model(workdir: Path) -> dict[str, Any]:
        from ..train import TrainConfig as FitConfig
        from ..train import fit

        t = recipe.train
        model = build_model(recipe.model.name, recipe.model.size, num_classes=len(data.train.class_names))
        aug = AugmentConfig(**t.augment.model_dump())
        ds = DetectionDataset(data.train, recipe.input_size, augment=True, aug=aug)
        cfg = FitConfig(epochs=t.epochs, batch=t.batch, lr=t.lr, weight_decay=t.weight_decay,
                        warmup_epochs=t.warmup_epochs, optimizer=t.optimizer, ema=t.ema, seed=t.seed,
                        num_threads=t.num_threads or (os.cpu_count() or 1))
        on_epoch = None if sys.stderr.isatty() else (  # the bar shows progress on a terminal; logs get lines
            lambda i, loss, _m: cache.log(f"[train] epoch {i + 1}/{t.epochs} loss {loss:.3f}"))
        result = fit(model, ds, cfg, on_epoch=on_epoch)
        trained = result.model if result.model is not None else model
        meta = CheckpointMeta(model=recipe.model.name, size=recipe.model.size, task=recipe.task,
                              class_names=list(data.train.class_names), input_size=recipe.input_size)
        save_checkpoint(workdir / CHECKPOINT, trained, meta)
        return {"trained": True, "epoch_losses": [float(x) for x in result.epoch_losses],
                "train_seconds": float(result.seconds)}

    return cache.run("train", material, fit_model)
