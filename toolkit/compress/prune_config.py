"""Recipe schema of the ``prune`` stage (torch-free, so a recipe validates without the toolkit's heavy deps)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class PruneConfig(BaseModel):
    """Structured channel pruning with Torch-Pruning (and/or 2:4 semi-structured sparsity).

    Exactly one target: ``ratio`` (fraction of channels removed per prunable layer, or globally) or
    ``macs_reduction`` (e.g. 2.0 = at most half the MACs). ``sparsity: "2:4"`` alone (no target) only masks
    weights to the 2:4 pattern.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    version: Literal[1] = 1
    importance: Literal["l1", "l2", "bn_scale", "taylor"] = "l2"
    ratio: float | None = Field(default=None, gt=0, lt=1, description="channel pruning ratio")
    macs_reduction: float | None = Field(default=None, gt=1, le=32, description="MACs divisor, e.g. 2.0")
    global_pruning: bool = False
    steps: int = Field(default=1, ge=1, le=100, description="iterative pruning steps")
    round_to: int = Field(default=8, ge=1, le=256, description="keep channel counts multiples of this")
    protect: list[str] = Field(default=[], description="module names (model.named_modules) never pruned")
    protect_head: bool = True
    calib_batches: int = Field(default=4, ge=1, le=10_000, description="batches for gradient-based importance (taylor)")
    sparsity: Literal["none", "2:4"] = "none"
    sparse_layers: list[str] = Field(default=[], description="convs to make 2:4 sparse; empty = all eligible")

    @model_validator(mode="after")
    def _one_target(self) -> PruneConfig:
        if self.ratio is not None and self.macs_reduction is not None:
            raise ValueError("give either 'ratio' or 'macs_reduction', not both")
        if self.ratio is None and self.macs_reduction is None and self.sparsity == "none":
            raise ValueError("needs a target: 'ratio', 'macs_reduction' or 'sparsity: \"2:4\"'")
        return self
