"""Recipe schema of the ``quantize`` stage (torch-free)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class QatConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    epochs: int = Field(default=1, ge=1, le=1000)
    lr: float = Field(default=0.0001, gt=0, le=10)
    distill: bool = Field(default=True, description="distil from the float model while fine-tuning")


class QuantizeConfig(BaseModel):
    """INT8 post-training quantization to an explicit Q/DQ ONNX (+ optional QAT and FP16 variants).

    ``max_drop`` (metric points, e.g. 0.5 = half a mAP50-95 point) turns on the sensitivity fallback:
    the most sensitive layers stay in float until the drop measured on ``sensitivity_images`` is within it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    version: Literal[1] = 1
    method: Literal["minmax", "entropy", "percentile"] = "percentile"
    percentile: float = Field(default=99.999, gt=90, le=100, description="kept range for 'percentile'")
    calib_images: int = Field(default=128, ge=1, le=100_000)
    per_channel: bool = True
    protect_head: bool = Field(default=True, description="keep the yolo box/keypoint decode in float")
    exclude: list[str] = Field(default=[], description="ONNX node names kept in float")
    max_drop: float | None = Field(default=None, ge=0, le=100)
    sensitivity_images: int = Field(default=100, ge=1, le=100_000)
    max_float_layers: int = Field(default=8, ge=0, le=10_000, description="fallback keeps at most this many in float")
    fp16: bool = Field(default=False, description="also write an FP16 ONNX variant")
    qat: QatConfig | None = None
