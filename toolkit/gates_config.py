"""The recipe's ``gates:`` section: the checks of `edgevision regress`, declared once and evaluated at the end of
`edgevision build` (and by `regress --device` for the absolute latency budgets).

Where the absolute latency budgets live: in the recipe, keyed by device profile and variant, not in the device
profile. A profile (``devices/*.yaml``) describes hardware shared by every model; a millisecond budget belongs
to one model on one device, so it sits with the recipe that makes that model::

    gates:
      accuracy:
        min: {map50_95: 0.40}          # absolute floors (COCO AP, 0..1)
        max_drop_points: 0.5           # vs the baseline build, in points (AP x 100)
        baseline: baselines/quickstart
      latency:
        max_ratio: 1.10                # vs accuracy.baseline, timed side by side at the end of the build
        budgets:
          x86-cpu: {fp32: {p50: 25, p99: 40}}
      size: {max_bytes: 8000000, max_macs: 2.0e9, max_params: 3000000}

Unknown keys, metric names outside :data:`METRICS` and out-of-range values fail when the recipe loads, as one
line naming the key; device names are checked against the profiles when a build or `regress --device` uses them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

# What the evaluate stage writes (toolkit/stages/evaluate.py); a gate naming another key is a typo.
METRICS: tuple[str, ...] = ("map50_95", "map50", "map75", "map_small", "map_medium", "map_large",
                            "kp_map50_95", "kp_map50", "kp_map75", "kp_map_medium", "kp_map_large")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _known_metrics(names: dict[str, float]) -> dict[str, float]:
    bad = [k for k in names if k not in METRICS]
    if bad:
        raise ValueError(f"unknown metric {bad[0]!r}; known: {', '.join(METRICS)}")
    return names


class AccuracyGates(_Strict):
    min: dict[str, float] = Field(default_factory=dict, description="absolute floor per metric (0..1)")
    max_drop_points: float | None = Field(default=None, ge=0, le=100,
                                             description="allowed drop vs the baseline, in points")
    baseline: Path | None = Field(default=None, description="baseline build directory (relative to the recipe)")

    @field_validator("min")
    @classmethod
    def _known(cls, v: dict[str, float]) -> dict[str, float]:
        for k, x in _known_metrics(v).items():
            if not 0.0 <= x <= 1.0:
                raise ValueError(f"{k}: {x} is not an AP in 0..1")
        return v


class LatencyBudget(_Strict):
    p50: float | None = Field(default=None, gt=0, description="median latency budget, ms")
    p99: float | None = Field(default=None, gt=0, description="99th-percentile latency budget, ms")


class LatencyGates(_Strict):
    max_ratio: float | None = Field(default=None, ge=1.0, le=100.0,
                                    description="candidate/baseline median latency, timed side by side with "
                                                "accuracy.baseline")
    budgets: dict[str, dict[str, LatencyBudget]] = Field(
        default_factory=dict, description="device profile -> variant -> absolute p50/p99 ms")


class SizeGates(_Strict):
    max_bytes: int | None = Field(default=None, ge=1)
    max_macs: float | None = Field(default=None, gt=0)
    max_params: float | None = Field(default=None, gt=0)


class GatesConfig(_Strict):
    variants: list[str] | None = Field(default=None, description="variants gated (default: all)")
    accuracy: AccuracyGates = AccuracyGates()
    latency: LatencyGates = LatencyGates()
    size: SizeGates = SizeGates()

    def declared(self) -> bool:
        """Whether the recipe declares any gate (an empty section gates nothing)."""
        return self != GatesConfig()
