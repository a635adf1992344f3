"""`edgevision build` with a recipe ``gates:`` section, end to end on the tiny recipe of test_build: a failing gate
exits 1 after writing everything (manifest with its typed gates record, report.md with a Gates section, the
bundle); the same build with a gate it meets exits 0 from the cache; a gate naming an unknown device stops the
build before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_main
from test_build import write_recipe

from edgevision.toolkit.manifest import load_manifest

GATES = """\
gates:
  accuracy: {{min: {{map50_95: {floor}}}}}
  latency: {{budgets: {{x86-cpu: {{fp32: {{p50: 100000}}}}, jetson-orin-nano-8gb: {{fp32: {{p50: 5}}}}}}}}
  size: {{max_params: 1.0e8}}
"""


def test_a_failing_gate_exits_1_after_writing_everything_and_a_met_one_exits_0(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_recipe(tmp_path / "tiny.yaml")
    base_text = recipe.read_text()
    recipe.write_text(base_text + GATES.format(floor=0.99))  # one epoch on 24 images: far below 0.99
    out = tmp_path / "out"
    code, _, err = run_main(["build", str(recipe), "--out", str(out)], capsys)
    assert code == 1, err
    m = load_manifest(out)
    assert m.gates is not None and m.gates.passed is False
    status = {c.name: c.status for c in m.gates.checks}
    assert status == {"fp32.accuracy_min.map50_95": "fail", "fp32.size_max.params": "pass",
                      "fp32.budget.x86-cpu.p50": "pass", "fp32.budget.jetson-orin-nano-8gb": "skip"}
    assert (out / "fp32" / "model.onnx").is_file()
    report = (out / "report.md").read_text()
    assert "## Gates" in report and "fp32.accuracy_min.map50_95" in report and "**FAILED**" in report
    assert "gate FAIL: fp32.accuracy_min.map50_95" in err

    recipe.write_text(base_text + GATES.format(floor=0.0))
    code, _, err = run_main(["build", str(recipe), "--out", str(out)], capsys)
    assert code == 0, err
    gates = json.loads((out / "manifest.json").read_text())["gates"]
    assert gates["passed"] is True


def test_a_budget_for_an_unknown_device_stops_the_build_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_recipe(tmp_path / "tiny.yaml")
    recipe.write_text(recipe.read_text() + "gates: {latency: {budgets: {toaster: {fp32: {p50: 5}}}}}\n")
    code, _, err = run_main(["build", str(recipe), "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "gates.latency.budgets.toaster" in err
    assert not (tmp_path / "out").exists()
