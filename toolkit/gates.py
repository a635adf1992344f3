"""Declared gates (the recipe's ``gates:``, :mod:`.gates_config`) evaluated into the same :class:`Check` records
`edgevision regress` prints: at the end of `edgevision build`, and for `regress --device PROFILE`'s absolute
latency budgets.

Absolute budgets are only meaningful on the device they name. `regress --device PROFILE` says "this machine is
PROFILE": each budgeted variant is timed here with the profile's backend (all cores, the runtime's
``bench_bundle``: the numbers `edgevision bench` prints) and its p50 / p99 compared with the budget. At the
end of a build, the bench stage's ONNX Runtime CPU numbers stand for profiles of kind ``cpu`` (the build
machine is such a CPU); a GPU profile's budget is reported as skipped, with the command that checks it there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgevision.runtime.errors import UserError
from edgevision.runtime.validation import validation_line

from .devices import DeviceProfile, load_profile
from .gates_config import GatesConfig, LatencyBudget
from .manifest import GateCheck, GatesRecord, Manifest, Variant
from .regress import Check, Status, Tolerances, accuracy_checks, latency_check, open_side

BUDGETS_KEY = "gates.latency.budgets"
Measure = Callable[[Path, str], tuple[float, float]]  # bundle dir, backend -> (p50 ms, p99 ms)


def gates_of(manifest: Manifest, source: str) -> GatesConfig:
    """The ``gates`` section of the recipe recorded in a manifest (empty when the recipe declared none)."""
    try:
        return GatesConfig.model_validate(manifest.recipe.get("gates") or {})
    except ValidationError as exc:
        raise UserError(validation_line(f"{source}: recipe.gates", exc, schema=GatesConfig)) from None


def check_gate_names(gates: GatesConfig, task: str, prefix: str) -> None:
    """Device profiles and metrics the gates name exist (and suit the task): checked before any work. Errors
    name the key after ``prefix`` (e.g. ``"recipe.yaml: "``)."""
    for device in gates.latency.budgets:
        try:
            load_profile(device)
        except UserError as exc:
            raise UserError(f"{prefix}{BUDGETS_KEY}.{device}: {exc}") from None
    if task != "pose":
        for metric in gates.accuracy.min:
            if metric.startswith("kp_"):
                raise UserError(f"{prefix}gates.accuracy.min.{metric}: a {task} model has no keypoint metric")


def budget_checks(variant: str, device: str, backend: str, budget: LatencyBudget, p50: float,
                  p99: float) -> list[Check]:
    out = []
    for key, measured in (("p50", p50), ("p99", p99)):
        limit = getattr(budget, key)
        if limit is None:
            continue
        status: Status = "fail" if measured > limit else "pass"
        verb = "over" if status == "fail" else "within"
        out.append(Check(f"{variant}.budget.{device}.{key}", "budget", status,
                         f"{key} {measured:.2f} ms on {device} ({backend}), {verb} the budget {limit:g} ms",
                         {"measured_ms": round(measured, 4), "budget_ms": limit, "device": device,
                          "backend": backend}))
    return out


def _bench(bundle: Path, backend: str) -> tuple[float, float]:
    from edgevision.runtime.bench import bench_bundle

    lat = bench_bundle(bundle, backend=backend, iters=100)["latency_ms"]
    return float(lat["median"]), float(lat["p99"])


def device_budget_checks(root: Path, manifest: Manifest, variants: dict[str, Variant], source: str,
                         device: str, *, measure: Measure = _bench,
                         log: Callable[[str], None] = lambda _s: None) -> list[Check]:
    """`regress --device`: time each budgeted variant here with ``device``'s backend against its budget."""
    try:
        profile = load_profile(device)
    except UserError as exc:
        raise UserError(f"--device: {exc}") from None
    gates = gates_of(manifest, source)
    check_gate_names(gates, manifest.task, f"{source}: recipe.")
    budgets = gates.latency.budgets.get(profile.name)
    if not budgets:
        declared = ", ".join(gates.latency.budgets) or "none"
        raise UserError(f"{source}: recipe.{BUDGETS_KEY}.{profile.name}: no latency budget for this device "
                        f"(budgets declared for: {declared})")
    out: list[Check] = []
    for name, budget in budgets.items():
        if name not in manifest.variants:
            raise UserError(f"{source}: recipe.{BUDGETS_KEY}.{profile.name}.{name}: no such variant "
                            f"(built: {', '.join(manifest.variants)})")
        if name in variants:
            log(f"[regress] timing {name} against its {profile.name} budget ({profile.backend}, all cores)")
            p50, p99 = measure(root / variants[name].bundle, profile.backend)
            out += budget_checks(name, profile.name, profile.backend, budget, p50, p99)
    return out


def _build_budgets(name: str, v: Variant, gates: GatesConfig, profiles: dict[str, DeviceProfile],
                   out: Path) -> list[Check]:
    checks: list[Check] = []
    for device, per_variant in gates.latency.budgets.items():
        if name not in per_variant:
            continue
        profile = profiles[device]
        ort = v.latency_ms.get("onnxruntime-cpu")
        if profile.kind != "cpu" or ort is None:
            why = "not a CPU profile" if profile.kind != "cpu" else "no ONNX Runtime CPU timing in this build"
            checks.append(Check(f"{name}.budget.{device}", "budget", "skip",
                                f"{why}; on the device run `edgevision regress {out} --baseline BASELINE "
                                f"--device {device}`"))
            continue
        checks += budget_checks(name, device, "onnxruntime-cpu (bench stage)", per_variant[name], ort.median,
                                ort.p99)
    return checks


def _floors_and_sizes(name: str, v: Variant, gates: GatesConfig) -> list[Check]:
    checks: list[Check] = []
    for metric, floor in gates.accuracy.min.items():
        got = v.metrics.get(metric)
        status: Status = "pass" if got is not None and got >= floor else "fail"
        shown = "not measured" if got is None else f"{got:.4f}"
        checks.append(Check(f"{name}.accuracy_min.{metric}", "accuracy", status,
                            f"{metric} {shown}, floor {floor:.4f}", {"measured": got, "min": floor}))
    sz = gates.size
    for key, limit, got in (("size_bytes", sz.max_bytes, v.size_bytes), ("macs", sz.max_macs, v.macs),
                            ("params", sz.max_params, v.params)):
        if limit is None:
            continue
        status = "fail" if got is None or got > limit else "pass"
        checks.append(Check(f"{name}.size_max.{key}", "size", status, f"{key} {got} (budget {limit:g})",
                            {"measured": got, "max": limit}))
    return checks


def evaluate_build_gates(gates: GatesConfig, manifest: Manifest, out: Path, *, latency_seconds: float = 30.0,
                         log: Callable[[str], None] = lambda _s: None) -> list[Check]:
    """Every declared gate of a finished build (``out``) as checks (see the module docstring)."""
    names = gates.variants if gates.variants is not None else list(manifest.variants)
    profiles = {d: load_profile(d) for d in gates.latency.budgets}
    checks: list[Check] = []
    for name in names:
        v = manifest.variants.get(name)
        if v is None:
            checks.append(Check(f"{name}.present", "presence", "fail",
                                f"gates.variants names {name!r}, which this build did not produce"))
            continue
        checks += _floors_and_sizes(name, v, gates) + _build_budgets(name, v, gates, profiles, out)
    acc = gates.accuracy
    if acc.baseline is not None and (acc.max_drop_points is not None or gates.latency.max_ratio is not None):
        base = open_side(acc.baseline, "gates.accuracy.baseline")
        if base.manifest.task != manifest.task:
            raise UserError(f"gates.accuracy.baseline: {acc.baseline} is a {base.manifest.task} build, this is "
                            f"{manifest.task}")
        tol = Tolerances(acc_tol=acc.max_drop_points if acc.max_drop_points is not None else 100.0,
                         max_latency_ratio=gates.latency.max_ratio or 1.10)
        common = [n for n in names if n in manifest.variants and n in base.variants]
        for name in common:
            cv, bv = manifest.variants[name], base.variants[name]
            if acc.max_drop_points is not None:
                checks += accuracy_checks(name, cv, bv, tol)
            if gates.latency.max_ratio is not None:
                log(f"gates: timing {name} against {acc.baseline}")
                checks.append(latency_check(name, out / cv.bundle, base.root / bv.bundle, tol, rounds=2000,
                                            seconds=latency_seconds / max(1, len(common))))
    return checks


def gates_record(checks: list[Check]) -> GatesRecord:
    """The manifest's ``gates`` record: every check, and whether the build passed them (a stale baseline is
    reported, not failed)."""
    return GatesRecord(passed=not any(c.failed(False) for c in checks),
                       checks=[GateCheck.model_validate(asdict(c)) for c in checks])


def gates_section(m: dict[str, Any]) -> list[str]:
    """report.md's Gates section (empty when the recipe declared none)."""
    g = m.get("gates")
    if not g:
        return []
    lines = ["", "## Gates", "", f"**{'passed' if g['passed'] else 'FAILED'}**: "
             f"{sum(c['status'] == 'fail' for c in g['checks'])} of {len(g['checks'])} checks failed.", "",
             "| check | result | detail |", "|---|---|---|"]
    icon = {"pass": "pass", "fail": "**FAIL**", "stale": "stale baseline", "skip": "skipped"}
    lines += [f"| `{c['name']}` | {icon.get(c['status'], c['status'])} | {c['message']} |" for c in g["checks"]]
    return lines
