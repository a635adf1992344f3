"""Recipe schema of the ``distill`` stage (torch-free)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DistillConfig(BaseModel):
    """Fine-tune the current model (the student) from a teacher, or without one (``mode: finetune``).

    The teacher defaults to the model as it was before the first compression step (the trained model);
    ``teacher`` names another edgevision checkpoint. ``student`` replaces the current model by a fresh
    built-in one (e.g. ``edgedet-p``) trained from the teacher.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    version: Literal[1] = 1
    mode: Literal["distill", "finetune"] = "distill"
    teacher: Path | None = None
    student: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_]+-[A-Za-z0-9]+$",
                                description="built-in model 'name-size' to train instead of the current one")
    epochs: int = Field(default=3, ge=1, le=1000)
    lr: float = Field(default=0.001, gt=0, le=10)
    warmup_epochs: float = Field(default=0.25, ge=0, le=1000, description="linear lr warmup (fraction of epochs)")
    batch: int | None = Field(default=None, ge=1, le=1024, description="default: train.batch")
    gt_weight: float = Field(default=1.0, ge=0, le=1000, description="weight of the ordinary task loss")
    cls_weight: float = Field(default=1.0, ge=0, le=1000, description="class-score distillation")
    box_weight: float = Field(default=1.0, ge=0, le=1000, description="box (DFL distribution) distillation")
    kpt_weight: float = Field(default=1.0, ge=0, le=1000, description="keypoint distillation (pose)")
    feature_weight: float = Field(default=2.0, ge=0, le=1000, description="neck feature imitation through adapters")
    kd_decay: Literal["constant", "linear", "cosine"] = Field(
        default="cosine", description="KD weight schedule: decays from 1 to 0 at kd_end of the schedule")
    kd_end: float = Field(default=1.0, gt=0, le=1, description="fraction of training where KD reaches 0")
    region: Literal["all", "object"] = Field(
        default="object", description="'object': KD only where the teacher is confident or a ground-truth box is")
    feature_bg_weight: float = Field(default=0.1, ge=0, le=1000, description="feature imitation weight off objects "
                                     "(region: object)")
    temperature: float = Field(default=1.0, gt=0, le=100)
    compare_finetune: bool = Field(default=False, description="also fine-tune without the teacher, same epochs")
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1,
                             description="shuffling/augmentation seed; default: the recipe's "
                             "train.seed (vary it to see the run-to-run spread of distill vs fine-tune)")
