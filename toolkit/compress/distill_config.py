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

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    mode: Literal["distill", "finetune"] = "distill"
    teacher: Path | None = None
    student: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_]+-[A-Za-z0-9]+$",
                                description="built-in model 'name-size' to train instead of the current one")
    epochs: int = Field(default=3, ge=1)
    lr: float = Field(default=0.001, gt=0)
    batch: int | None = Field(default=None, ge=1, description="default: train.batch")
    gt_weight: float = Field(default=1.0, ge=0, description="weight of the ordinary task loss")
    cls_weight: float = Field(default=1.0, ge=0, description="class-score distillation")
    box_weight: float = Field(default=1.0, ge=0, description="box (DFL distribution) distillation")
    kpt_weight: float = Field(default=1.0, ge=0, description="keypoint distillation (pose)")
    feature_weight: float = Field(default=0.0, ge=0, description="neck feature imitation through adapters")
    temperature: float = Field(default=1.0, gt=0)
    compare_finetune: bool = Field(default=False, description="also fine-tune without the teacher, same epochs")
