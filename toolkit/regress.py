"""`edgevision regress`: gate a build (or one bundle) against a baseline on accuracy, latency and size.

Checks, one per variant present on both sides:

- **accuracy**, two-sided per metric of the manifests: a drop beyond ``acc_tol`` points fails; a gain beyond
  it means the baseline is stale (reported; fails only with ``strict``);
- **latency**, relative: both models timed interleaved in this run and judged on a block-bootstrap interval
  of the paired latency ratio (:mod:`.regress_latency`: one thread, sequential, bounded by time), failing only
  when the whole interval lies above ``max_latency_ratio``;
- **size / MACs / params**: growth beyond ``size_tol`` fails;
- **golden tensors**: the bundle's stored inputs through the candidate model against the stored outputs
  (:mod:`.regress_golden`; a candidate bundle without them is a usage error unless ``golden=False``).

A side is a build directory (its ``manifest.json``, every variant) or one bundle directory inside a build
directory (that variant, found by its folder name). Exit status by the CLI: 0 all pass, 1 a regression,
2 a usage error (missing or foreign manifest, no common variant).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgevision.runtime.bundle import load_bundle
from edgevision.runtime.errors import UserError
from edgevision.runtime.fsutil import atomic_dir

from .manifest import MANIFEST_NAME, Manifest, Variant, load_manifest

Status = Literal["pass", "fail", "stale", "skip"]
SIDECAR = "edgevision.json"


@dataclass(frozen=True)
class Tolerances:
    acc_tol: float = 0.5  # metric points (mAP x 100)
    max_latency_ratio: float = 1.10
    size_tol: float = 0.05  # relative growth of ONNX size, MACs, params
    strict: bool = False
    # the headline metrics; the per-size COCO metrics (map_small, ...) move by points on small splits
    metrics: tuple[str, ...] = ("map50_95", "map50", "kp_map50_95", "kp_map50")


@dataclass(frozen=True)
class Check:
    name: str  # e.g. "fp32.accuracy.map50_95"
    kind: str  # accuracy | latency | size
    status: Status
    message: str
    values: dict[str, Any] = field(default_factory=dict)

    def failed(self, strict: bool) -> bool:
        return self.status == "fail" or (strict and self.status == "stale")


@dataclass(frozen=True)
class Side:
    """One side of the comparison: a manifest and the variants taken from it."""

    root: Path  # build directory
    manifest: Manifest
    variants: dict[str, Variant]


def open_side(path: Path, what: str) -> Side:
    """A build directory, or a bundle directory inside one; anything else is a one-line ``UserError``."""
    if not path.exists():
        raise UserError(f"{what}: {path}: no such directory")
    if (path / MANIFEST_NAME).is_file():
        m = load_manifest(path)
        return Side(path, m, dict(m.variants))
    if (path / SIDECAR).is_file() and (path.parent / MANIFEST_NAME).is_file():
        m = load_manifest(path.parent)
        named = {k: v for k, v in m.variants.items() if v.bundle == path.name}
        if not named:
            raise UserError(f"{what}: {path}: bundle not listed in {path.parent / MANIFEST_NAME}")
        return Side(path.parent, m, named)
    raise UserError(f"{what}: {path}: not a build directory (no {MANIFEST_NAME}) nor a bundle inside one")


def _points(v: float) -> float:
    return round(100.0 * v, 3)


def accuracy_checks(name: str, cand: Variant, base: Variant, tol: Tolerances) -> list[Check]:
    out = []
    for metric in sorted(set(cand.metrics) & set(base.metrics) & set(tol.metrics)):
        c, b = cand.metrics[metric], base.metrics[metric]
        delta = _points(c - b)
        vals = {"candidate": c, "baseline": b, "delta_points": delta, "tolerance_points": tol.acc_tol}
        if delta < -tol.acc_tol:
            status: Status = "fail"
            msg = f"{metric} dropped {-delta:.2f} pt ({b:.4f} -> {c:.4f}), beyond {tol.acc_tol} pt"
        elif delta > tol.acc_tol:
            status = "stale"
            msg = f"{metric} gained {delta:.2f} pt ({b:.4f} -> {c:.4f}): the baseline is stale (--update-baseline)"
        else:
            status = "pass"
            msg = f"{metric} {b:.4f} -> {c:.4f} ({delta:+.2f} pt, within {tol.acc_tol})"
        out.append(Check(f"{name}.accuracy.{metric}", "accuracy", status, msg, vals))
    return out


def size_checks(name: str, cand: Variant, base: Variant, tol: Tolerances) -> list[Check]:
    out = []
    for key in ("size_bytes", "macs", "params"):
        c, b = getattr(cand, key), getattr(base, key)
        if c is None or b is None or b == 0:
            continue
        growth = c / b - 1.0
        status: Status = "fail" if growth > tol.size_tol else "pass"
        msg = f"{key} {b} -> {c} ({growth:+.1%}; allowed +{tol.size_tol:.0%})"
        out.append(Check(f"{name}.size.{key}", "size", status, msg,
                         {"candidate": c, "baseline": b, "growth": round(growth, 4)}))
    return out


def latency_check(name: str, cand_dir: Path, base_dir: Path, tol: Tolerances, *, rounds: int,
                  threads: int = 1, seconds: float = 20.0) -> Check:
    """Time both bundles side by side (:func:`.regress_latency.compare_latency`: at most ``rounds`` rounds or
    ``seconds``, fewer when the answer is clear)."""
    from .regress_latency import compare_latency

    if not (cand_dir / SIDECAR).is_file() or not (base_dir / SIDECAR).is_file():
        missing = cand_dir if not (cand_dir / SIDECAR).is_file() else base_dir
        return Check(f"{name}.latency", "latency", "skip", f"bundle {missing} is not at hand; not timed")
    r = compare_latency(load_bundle(cand_dir), load_bundle(base_dir), allowed=tol.max_latency_ratio,
                        max_rounds=rounds, seconds=seconds, threads=threads)
    interval = f"[{r.ci_low:.3f}, {r.ci_high:.3f}] over {r.rounds} rounds"
    if r.ci_low > tol.max_latency_ratio:
        status: Status = "fail"
        msg = (f"{r.ratio:.3f}x the baseline ({r.candidate_ms:.2f} vs {r.baseline_ms:.2f} ms median); "
               f"{r.confidence:.0%} interval {interval} lies above the allowed {tol.max_latency_ratio}x")
    else:
        status = "pass"
        msg = (f"{r.ratio:.3f}x the baseline ({r.candidate_ms:.2f} vs {r.baseline_ms:.2f} ms median), "
               f"{r.confidence:.0%} interval {interval}; allowed {tol.max_latency_ratio}x")
    return Check(f"{name}.latency", "latency", status, msg, r.to_dict())


def run_regress(candidate: Path, baseline: Path, tol: Tolerances, *, latency: bool = True, rounds: int = 2000,
                threads: int = 1, seconds: float = 30.0, device: str | None = None, reeval: bool = False,
                log: Callable[[str], None] = lambda _s: None, golden: bool = True) -> list[Check]:
    """Every check of ``candidate`` against ``baseline``; raises ``UserError`` on unusable input."""
    cand, base = open_side(candidate, "candidate"), open_side(baseline, "--baseline")
    if reeval:  # the candidate's accuracy measured again here, not read from its manifest
        from .regress_reeval import reevaluate

        cand = Side(cand.root, cand.manifest, reevaluate(cand.root, cand.manifest, cand.variants, log=log))
    if cand.manifest.task != base.manifest.task:
        raise UserError(f"--baseline: {baseline} is a {base.manifest.task} build but the candidate is "
                        f"{cand.manifest.task}")
    common = [v for v in cand.variants if v in base.variants]
    if not common:
        raise UserError(f"--baseline: {baseline} has none of the candidate's variants "
                        f"({', '.join(cand.variants)}; baseline: {', '.join(base.variants)})")
    checks: list[Check] = []
    if device is not None:  # absolute p50/p99 budgets of the candidate's recipe, timed here (toolkit/gates.py)
        from .gates import device_budget_checks

        checks += device_budget_checks(cand.root, cand.manifest, cand.variants, str(cand.root / MANIFEST_NAME),
                                       device, log=log)
    per_variant = seconds / len(common)  # ``seconds`` bounds the whole run's timing
    for name in common:
        cv, bv = cand.variants[name], base.variants[name]
        checks += accuracy_checks(name, cv, bv, tol)
        checks += size_checks(name, cv, bv, tol)
        if golden:  # golden tensors through the candidate model (.regress_golden)
            from .regress_golden import golden_checks

            checks += golden_checks(name, cand.root / cv.bundle, base.root / bv.bundle)
        if latency:
            log(f"[regress] timing {name}: candidate vs baseline, interleaved, at most {rounds} rounds / "
                f"{per_variant:g} s, {threads or 'all'} thread(s)")
            checks.append(latency_check(name, cand.root / cv.bundle, base.root / bv.bundle, tol,
                                        rounds=rounds, threads=threads, seconds=per_variant))
    for name in (v for v in base.variants if v not in cand.variants):
        checks.append(Check(f"{name}.present", "presence", "fail", f"variant {name!r} of the baseline is missing"))
    return checks


def update_baseline(candidate: Path, baseline: Path) -> None:
    """Make the candidate build the new baseline: its manifest and bundles, replacing ``baseline`` atomically."""
    side = open_side(candidate, "candidate")
    if baseline.exists() and not (baseline / MANIFEST_NAME).is_file():
        raise UserError(f"--baseline: {baseline} exists and is not a build directory; not replacing it")
    with atomic_dir(baseline) as tmp:
        shutil.copy2(side.root / MANIFEST_NAME, tmp / MANIFEST_NAME)
        for v in side.manifest.variants.values():
            src = side.root / v.bundle
            if src.is_dir():
                shutil.copytree(src, tmp / v.bundle)


def summary(checks: list[Check], strict: bool) -> dict[str, Any]:
    failed = [c for c in checks if c.failed(strict)]
    return {"passed": not failed, "failed": len(failed), "checks": [asdict(c) for c in checks]}
