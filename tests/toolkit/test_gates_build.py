"""`edgevision build` with a recipe ``gates:`` section, end to end on the tiny recipe of test_build: a failing gate
exits 1 after writing everything (manifest with its typed gates record, report.md with a Gates section, the
bundle); the same build with a gate it meets exits 0 from the cache; a gate naming an unknown device stops the
build before any work."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
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


@pytest.fixture(scope="module")
def failed_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str, int, str]:
    """The tiny recipe with a floor it cannot meet, built through the CLI: (recipe, out, recipe text, exit, err)."""
    root = tmp_path_factory.mktemp("gates")
    recipe = write_recipe(root / "tiny.yaml")
    base_text = recipe.read_text()
    recipe.write_text(base_text + GATES.format(floor=0.99))  # one epoch on 24 images: far below 0.99
    code, err = _cli(["build", str(recipe), "--out", str(root / "out")])
    return recipe, root / "out", base_text, code, err


def _cli(args: list[str]) -> tuple[int, str]:
    """(exit status, stderr) of ``edgevision ARGS`` in a child process (a module fixture has no capsys)."""
    r = subprocess.run([sys.executable, "-m", "edgevision.toolkit", *args], capture_output=True, text=True,
                       timeout=900)
    return r.returncode, r.stderr


def test_a_failing_gate_exits_1_after_writing_everything(failed_build: tuple[Path, Path, str, int, str]) -> None:
    _, out, _, code, err = failed_build
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


def test_the_same_build_meeting_its_gates_exits_0(failed_build: tuple[Path, Path, str, int, str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    recipe, out, base_text, _, _ = failed_build
    recipe.write_text(base_text + GATES.format(floor=0.0))
    code, _, err = run_main(["build", str(recipe), "--out", str(out)], capsys)
    assert code == 0, err
    gates = json.loads((out / "manifest.json").read_text())["gates"]
    assert gates["passed"] is True


def test_reeval_scores_the_bundle_again_instead_of_trusting_the_manifest(
        failed_build: tuple[Path, Path, str, int, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _, _, _ = failed_build
    measured = load_manifest(out).variants["fp32"].metrics["map50_95"]
    lying = tmp_path / "lying"
    shutil.copytree(out, lying)
    m = json.loads((lying / "manifest.json").read_text())
    m["variants"]["fp32"]["metrics"]["map50_95"] = measured + 0.2  # a manifest claiming 20 pt more
    (lying / "manifest.json").write_text(json.dumps(m))
    args = ["regress", str(lying), "--baseline", str(out), "--no-latency", "--json", "--strict"]
    code, stdout, _ = run_main(args, capsys)
    assert code == 1  # taken at its word: a 20 pt gain, a stale baseline under --strict
    code, stdout, err = run_main([*args, "--reeval"], capsys)
    assert code == 0, err
    acc = {c["name"]: c for c in json.loads(stdout)["checks"]}["fp32.accuracy.map50_95"]
    assert acc["status"] == "pass" and acc["values"]["candidate"] == pytest.approx(measured, abs=1e-6)


def test_a_budget_for_an_unknown_device_stops_the_build_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_recipe(tmp_path / "tiny.yaml")
    recipe.write_text(recipe.read_text() + "gates: {latency: {budgets: {toaster: {fp32: {p50: 5}}}}}\n")
    code, _, err = run_main(["build", str(recipe), "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "gates.latency.budgets.toaster" in err
    assert not (tmp_path / "out").exists()
