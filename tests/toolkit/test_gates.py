"""Declared gates: the recipe's ``gates:`` section, `regress --device` absolute budgets, the build-end evaluation
stored in the manifest and shown in report.md, and each bad input as one line with exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run_main
from test_regress import make_build

from edgevision.runtime.errors import UserError
from edgevision.toolkit.gates import evaluate_build_gates, gates_record, gates_section
from edgevision.toolkit.gates_config import GatesConfig
from edgevision.toolkit.manifest import check_manifest, load_manifest
from edgevision.toolkit.recipe import load_recipe


def with_gates(build: Path, gates: dict[str, Any]) -> Path:
    """Record ``gates`` as the build's recipe section (what `edgevision build` stores in the manifest)."""
    m = json.loads((build / "manifest.json").read_text())
    m["recipe"] = {**m["recipe"], "gates": gates}
    (build / "manifest.json").write_text(json.dumps(m))
    return build


def _regress(capsys: pytest.CaptureFixture[str], cand: Path, base: Path, *extra: str) -> tuple[int, str, str]:
    return run_main(["regress", str(cand), "--baseline", str(base), "--no-latency", *extra], capsys)


def test_device_budgets_are_timed_here_and_fail_when_exceeded(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    base = make_build(tmp_path / "base")
    roomy = with_gates(make_build(tmp_path / "roomy"), {"latency": {"budgets": {"x86-cpu": {"fp32": {
        "p50": 10_000, "p99": 10_000}}}}})
    code, out, err = _regress(capsys, roomy, base, "--device", "x86-cpu", "--json")
    assert code == 0, err
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    p50 = checks["fp32.budget.x86-cpu.p50"]
    assert p50["status"] == "pass" and 0 < p50["values"]["measured_ms"] < 10_000
    assert p50["values"]["backend"] == "onnxruntime"
    # a budget no model meets (one nanosecond) must fail, on p50 and on p99
    tight = with_gates(make_build(tmp_path / "tight"), {"latency": {"budgets": {"x86-cpu": {"fp32": {
        "p50": 1e-6, "p99": 1e-6}}}}})
    code, out, _ = _regress(capsys, tight, base, "--device", "x86-cpu", "--json")
    assert code == 1
    statuses = {c["name"]: c["status"] for c in json.loads(out)["checks"]}
    assert statuses["fp32.budget.x86-cpu.p50"] == statuses["fp32.budget.x86-cpu.p99"] == "fail"
    assert statuses["fp32.accuracy.map50_95"] == "pass"


@pytest.mark.parametrize(("gates", "device", "names"), [
    ({"latency": {"budgets": {"x86-cpu": {"fp32": {"p50": 5}}}}}, "no-such-board", ["--device", "no-such-board"]),
    ({"latency": {"budgets": {"x86-cpu": {"fp32": {"p95": 5}}}}}, "x86-cpu",
     ["recipe.gates", "latency.budgets.x86-cpu.fp32.p95", "unknown key"]),
    ({"latency": {"budgets": {"x86-cpu": {"fp32": {"p50": 5}}}}}, "jetson-nano",
     ["gates.latency.budgets.jetson-nano", "x86-cpu"]),
    ({"latency": {"budgets": {"x86-cpu": {"int8": {"p50": 5}}}}}, "x86-cpu",
     ["gates.latency.budgets.x86-cpu.int8", "no such variant"]),
    ({}, "x86-cpu", ["gates.latency.budgets.x86-cpu", "none"]),
    ({"latency": {"budgets": {"x86-cpu": {"fp32": {"p50": 5}}, "toaster": {"fp32": {"p50": 5}}}}}, "x86-cpu",
     ["recipe.gates.latency.budgets.toaster", "unknown device profile"]),
    ({"accuracy": {"min": {"kp_map50": 0.5}}}, "x86-cpu", ["recipe.gates.accuracy.min.kp_map50", "detect"]),
    ({"accuracy": {"min": {"mAP": 0.5}}}, "x86-cpu", ["recipe.gates", "accuracy.min", "'mAP'"]),
])
def test_bad_budgets_are_one_line_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               gates: dict[str, Any], device: str, names: list[str]) -> None:
    base = make_build(tmp_path / "base")
    cand = with_gates(make_build(tmp_path / "cand"), gates)
    code, _, err = _regress(capsys, cand, base, "--device", device)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for name in names:
        assert name in err


def _manifest(tmp_path: Path, **variant: Any) -> Any:
    build = make_build(tmp_path / "b", {"map50_95": 0.40, "map50": 0.70})
    m = json.loads((build / "manifest.json").read_text())
    m["variants"]["fp32"].update(variant)
    return check_manifest(m, "m"), build


def test_build_gates_floor_size_and_budgets(tmp_path: Path) -> None:
    manifest, out = _manifest(tmp_path, size_bytes=2000,
                              latency_ms={"onnxruntime-cpu": {"median": 12.0, "p90": 14.0, "p99": 20.0}})
    gates = GatesConfig.model_validate({
        "accuracy": {"min": {"map50_95": 0.45, "map50": 0.5}},
        "size": {"max_bytes": 1500, "max_macs": 1e9},
        "latency": {"budgets": {"x86-cpu": {"fp32": {"p50": 15, "p99": 18}},
                                "jetson-orin-nano-8gb": {"fp32": {"p50": 5}}}},
    })
    checks = {c.name: c for c in evaluate_build_gates(gates, manifest, out)}
    status = {n: c.status for n, c in checks.items()}
    assert status == {
        "fp32.accuracy_min.map50_95": "fail",  # 0.40 < 0.45
        "fp32.accuracy_min.map50": "pass",
        "fp32.size_max.size_bytes": "fail",  # 2000 > 1500
        "fp32.size_max.macs": "pass",  # 10_000 MACs
        "fp32.budget.x86-cpu.p50": "pass",  # the bench stage's 12 ms median
        "fp32.budget.x86-cpu.p99": "fail",  # 20 > 18
        "fp32.budget.jetson-orin-nano-8gb": "skip",  # timed on the device, not here
    }
    assert "--device jetson-orin-nano-8gb" in checks["fp32.budget.jetson-orin-nano-8gb"].message
    record = gates_record(list(checks.values()))
    assert record.passed is False
    # the record is part of the typed manifest, and report.md's section lists every check
    stored = check_manifest({**json.loads((out / "manifest.json").read_text()),
                             "gates": record.model_dump(mode="json")}, "m")
    assert stored.gates is not None and len(stored.gates.checks) == 7
    section = "\n".join(gates_section(stored.model_dump(mode="json")))
    assert "## Gates" in section and "**FAILED**: 3 of 7" in section and "fp32.size_max.size_bytes" in section


def test_build_gates_against_a_baseline_fail_a_drop_and_name_a_missing_variant(tmp_path: Path) -> None:
    manifest, out = _manifest(tmp_path)
    base = make_build(tmp_path / "base", {"map50_95": 0.42, "map50": 0.70})  # candidate: 2 pt below
    gates = GatesConfig.model_validate({"variants": ["fp32", "int8"],
                                        "accuracy": {"max_drop_points": 1.0, "baseline": str(base)}})
    status = {c.name: c.status for c in evaluate_build_gates(gates, manifest, out)}
    assert status["fp32.accuracy.map50_95"] == "fail" and status["fp32.accuracy.map50"] == "pass"
    assert status["int8.present"] == "fail"


def test_recipe_gates_section_validates_and_resolves_the_baseline(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ngates:\n  accuracy: {min: {map50_95: 0.3}, baseline: base}\n"
                      "  latency: {budgets: {x86-cpu: {fp32: {p50: 20}}}}\n")
    r = load_recipe(recipe)
    assert r.gates.accuracy.baseline == (tmp_path / "base").resolve()
    assert r.gates.declared()
    recipe.write_text("name: r\ngates: {size: {max_flops: 3}}\n")
    with pytest.raises(UserError, match=r"gates\.size\.max_flops: unknown key"):
        load_recipe(recipe)


def test_a_recipe_without_gates_keeps_its_hash() -> None:
    r = load_recipe(Path(__file__).parents[2] / "recipes" / "quickstart-detect.yaml")
    assert not r.gates.declared()
    assert "gates" not in r._hash_dump()


def test_manifest_without_gates_still_loads(tmp_path: Path) -> None:
    assert load_manifest(make_build(tmp_path / "b")).gates is None
