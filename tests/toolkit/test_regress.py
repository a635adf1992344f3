"""`edgevision regress`: accuracy two-sided, latency on a bootstrap interval, size budgets, outputs, bad input."""

from __future__ import annotations

import copy
import io
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import run_main

from edgevision.runtime.bundle import load_bundle
from edgevision.runtime.golden import make_golden, write_golden
from edgevision.toolkit.manifest import SCHEMA_VERSION, load_manifest
from edgevision.toolkit.regress_latency import compare_latency, ratio_interval
from edgevision.toolkit.stages.bundle import golden_tensors

sys.path.insert(0, str(Path(__file__).parents[1] / "runtime"))
from stream_fixtures import make_bundle, make_onnx  # the runtime tests' tiny ONNX bundle


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Any:
    return lambda args: Result(*run_main(args, capsys))


def _manifest(metrics: dict[str, float], size: int = 1000, macs: int = 10_000) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION, "name": "tiny", "task": "detect", "created": "2026-12-03T00:00:00+00:00",
        "recipe": {}, "recipe_hash": "r", "dataset": {"hash": "d", "train_images": 4, "val_images": 2,
                                                      "classes": ["a", "b", "c"]},
        "variants": {"fp32": {"bundle": "fp32", "precision": "fp32", "metrics": metrics,
                              "latency_ms": {"onnxruntime-cpu": {"median": 1.0, "p90": 1.1, "p99": 1.2}},
                              "macs": macs, "params": 100, "size_bytes": size}},
    }


def make_build(root: Path, metrics: dict[str, float] | None = None, *, size: int = 1000,
               image_side: int = 32, golden: bool = True) -> Path:
    """A build directory: manifest + one bundle whose model's cost grows with ``image_side``."""
    bundle = make_bundle(root / "fp32")
    if image_side != 32:
        make_onnx(bundle / "model.onnx", size=image_side)
        side = json.loads((bundle / "edgevision.json").read_text())
        side["input"]["shape"] = [1, 3, image_side, image_side]
        (bundle / "edgevision.json").write_text(json.dumps(side))
    if golden:
        add_golden(bundle)
    m = _manifest(metrics if metrics is not None else {"map50_95": 0.60, "map50": 0.80}, size=size)
    (root / "manifest.json").write_text(json.dumps(m))
    return root


def add_golden(bundle: Path, checkpoint_hash: str | None = None) -> None:
    """golden/ as a build writes it (the bundle stage's writer), and optionally the weights' provenance hash."""
    if checkpoint_hash is not None:
        side = json.loads((bundle / "edgevision.json").read_text())
        side["provenance"] = {"checkpoint_hash": checkpoint_hash}
        (bundle / "edgevision.json").write_text(json.dumps(side))
    sidecar = load_bundle(bundle).sidecar
    feeds, source = golden_tensors(sidecar)
    write_golden(bundle, make_golden(bundle / "model.onnx", "fp32", feeds, source=source))


def nudge_stored_output(bundle: Path, delta: float = 1.0) -> None:
    path = bundle / "golden" / "outputs.npz"
    with np.load(path) as data:
        out = {k: data[k].copy() for k in data.files}
    out["output0"][0, 0, 0, 0] += delta
    buf = io.BytesIO()
    np.savez_compressed(buf, **out)
    path.write_bytes(buf.getvalue())


def test_bootstrap_interval_brackets_a_tie_and_excludes_a_real_slowdown() -> None:
    rng = np.random.default_rng(0)
    shared = rng.lognormal(0.0, 0.25, 300)  # machine noise that hits both candidates of a round alike
    base = 10.0 * shared * rng.lognormal(0.0, 0.05, 300)
    same = 10.0 * shared * rng.lognormal(0.0, 0.05, 300)
    slower = 11.5 * shared * rng.lognormal(0.0, 0.05, 300)
    ratio, lo, hi = ratio_interval(same, base)
    assert lo < 1.0 < hi and abs(ratio - 1.0) < 0.05
    ratio, lo, hi = ratio_interval(slower, base)
    assert 1.10 < lo < ratio < hi and abs(ratio - 1.15) < 0.05


def test_same_build_passes_every_check_and_writes_junit_and_markdown(tmp_path: Path, run_cli: Any) -> None:
    base = make_build(tmp_path / "base")
    cand = make_build(tmp_path / "cand")
    r = run_cli(["regress", str(cand), "--baseline", str(base), "--rounds", "30",
                 "--junit", str(tmp_path / "j.xml"), "--markdown", str(tmp_path / "r.md")])
    assert r.code == 0, r.err
    suite = ET.parse(tmp_path / "j.xml").getroot()
    names = {c.get("name") for c in suite.iter("testcase")}
    assert {"fp32.accuracy.map50_95", "fp32.accuracy.map50", "fp32.latency", "fp32.size.size_bytes",
            "fp32.golden.output0", "fp32.golden_baseline.output0"} <= names
    assert suite.get("failures") == "0"
    assert "passed" in (tmp_path / "r.md").read_text()


def test_accuracy_drop_fails_gain_is_stale_and_fails_only_when_strict(tmp_path: Path, run_cli: Any) -> None:
    base = make_build(tmp_path / "base", {"map50_95": 0.600})
    drop = make_build(tmp_path / "drop", {"map50_95": 0.590})  # -1.0 pt
    gain = make_build(tmp_path / "gain", {"map50_95": 0.610})  # +1.0 pt
    r = run_cli(["regress", str(drop), "--baseline", str(base), "--no-latency", "--json"])
    assert r.code == 1
    checks = {c["name"]: c for c in json.loads(r.out)["checks"]}
    assert checks["fp32.accuracy.map50_95"]["status"] == "fail"
    assert checks["fp32.accuracy.map50_95"]["values"]["delta_points"] == pytest.approx(-1.0)
    r = run_cli(["regress", str(gain), "--baseline", str(base), "--no-latency", "--json"])
    assert r.code == 0
    assert {c["name"]: c for c in json.loads(r.out)["checks"]}["fp32.accuracy.map50_95"]["status"] == "stale"
    assert run_cli(["regress", str(gain), "--baseline", str(base), "--no-latency", "--strict"]).code == 1
    assert run_cli(["regress", str(drop), "--baseline", str(base), "--no-latency", "--acc-tol", "1.5"]).code == 0


def test_golden_checks_gate_the_candidate_and_the_baselines_outputs(tmp_path: Path, run_cli: Any) -> None:
    base, cand = make_build(tmp_path / "base"), make_build(tmp_path / "cand")
    for b in (base, cand):
        add_golden(b / "fp32", checkpoint_hash="same-weights")

    def golden_cases() -> dict[str, dict[str, Any]]:
        r = run_cli(["regress", str(cand), "--baseline", str(base), "--no-latency", "--json"])
        cases = {c["name"]: c for c in json.loads(r.out)["checks"] if c["kind"] == "golden"}
        return {"code": r.code, **cases}

    got = golden_cases()
    assert got["code"] == 0
    assert got["fp32.golden.output0"]["status"] == got["fp32.golden_baseline.output0"]["status"] == "pass"
    nudge_stored_output(base / "fp32")  # the baseline computed something else than the candidate now does
    got = golden_cases()
    assert got["code"] == 1 and got["fp32.golden_baseline.output0"]["status"] == "fail"
    assert got["fp32.golden_baseline.output0"]["values"]["worst_index"] == [0, 0, 0, 0]
    add_golden(cand / "fp32", checkpoint_hash="retrained")  # other weights: reported, not gated
    got = golden_cases()
    assert got["code"] == 0 and got["fp32.golden_baseline.output0"]["status"] == "skip"
    assert "other weights" in got["fp32.golden_baseline.output0"]["message"]
    nudge_stored_output(cand / "fp32")  # the candidate bundle no longer reproduces its own outputs
    got = golden_cases()
    assert got["code"] == 1 and got["fp32.golden.output0"]["status"] == "fail"


def test_a_candidate_without_golden_is_a_usage_error_unless_no_golden(tmp_path: Path, run_cli: Any) -> None:
    base = make_build(tmp_path / "base", golden=False)
    cand = make_build(tmp_path / "cand", golden=False)
    r = run_cli(["regress", str(cand), "--baseline", str(base), "--no-latency"])
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    assert "no golden tensors" in r.err and str(cand / "fp32") in r.err and "--no-golden" in r.err
    r = run_cli(["regress", str(cand), "--baseline", str(base), "--no-latency", "--no-golden", "--json"])
    assert r.code == 0 and not [c for c in json.loads(r.out)["checks"] if c["kind"] == "golden"]
    add_golden(cand / "fp32")  # a baseline from before golden tensors: only the candidate's own check runs
    r = run_cli(["regress", str(cand), "--baseline", str(base), "--no-latency", "--json"])
    cases = {c["name"]: c["status"] for c in json.loads(r.out)["checks"] if c["kind"] == "golden"}
    assert r.code == 0 and cases == {"fp32.golden.output0": "pass", "fp32.golden_baseline": "skip"}


def test_a_much_slower_model_fails_the_latency_gate(tmp_path: Path, run_cli: Any) -> None:
    base = make_build(tmp_path / "base")
    slow = make_build(tmp_path / "slow", image_side=640)  # 400x the pixels to average
    r = run_cli(["regress", str(slow), "--baseline", str(base), "--rounds", "40", "--json"])
    assert r.code == 1
    checks = {c["name"]: c for c in json.loads(r.out)["checks"]}
    lat = checks["fp32.latency"]
    assert lat["status"] == "fail" and lat["values"]["ci_low"] > 1.10
    # another input size: the baseline's golden inputs do not fit the candidate, said and skipped
    cross = checks["fp32.golden_baseline"]
    assert cross["status"] == "skip" and "do not fit" in cross["message"]


def test_size_growth_beyond_tolerance_fails(tmp_path: Path, run_cli: Any) -> None:
    base = make_build(tmp_path / "base", size=1000)
    big = make_build(tmp_path / "big", size=1100)
    assert run_cli(["regress", str(big), "--baseline", str(base), "--no-latency"]).code == 1
    assert run_cli(["regress", str(big), "--baseline", str(base), "--no-latency", "--size-tol", "0.2"]).code == 0


def test_a_bundle_inside_a_build_is_a_side(tmp_path: Path, run_cli: Any) -> None:
    base = make_build(tmp_path / "base")
    cand = make_build(tmp_path / "cand")
    assert run_cli(["regress", str(cand / "fp32"), "--baseline", str(base / "fp32"), "--no-latency"]).code == 0


def test_update_baseline_replaces_it_atomically(tmp_path: Path, run_cli: Any) -> None:
    base = make_build(tmp_path / "base", {"map50_95": 0.600})
    gain = make_build(tmp_path / "gain", {"map50_95": 0.650})
    r = run_cli(["regress", str(gain), "--baseline", str(base), "--no-latency", "--update-baseline"])
    assert r.code == 0, r.err
    assert load_manifest(base).variants["fp32"].metrics["map50_95"] == pytest.approx(0.650)
    assert (base / "fp32" / "model.onnx").is_file()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def _foreign(path: Path) -> None:
    path.mkdir()
    (path / "manifest.json").write_text(json.dumps({"hello": 1}))


def _old(path: Path) -> None:
    make_build(path)
    m = json.loads((path / "manifest.json").read_text())
    m["schema_version"] = 0
    (path / "manifest.json").write_text(json.dumps(m))


def _corrupt(path: Path) -> None:
    make_build(path)
    (path / "manifest.json").write_text("{not json")


def _bad_field(path: Path) -> None:
    make_build(path)
    m = json.loads((path / "manifest.json").read_text())
    m["variants"]["fp32"]["metrics"] = {"map50_95": "high"}
    (path / "manifest.json").write_text(json.dumps(m))


def _other_task(path: Path) -> None:
    make_build(path)
    m = json.loads((path / "manifest.json").read_text())
    m["task"] = "pose"
    (path / "manifest.json").write_text(json.dumps(m))


def _other_variants(path: Path) -> None:
    make_build(path)
    m = json.loads((path / "manifest.json").read_text())
    m["variants"] = {"int8": copy.deepcopy(m["variants"]["fp32"])}
    (path / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize("spoil", [_foreign, _old, _corrupt, _bad_field, _other_task, _other_variants,
                                   lambda p: None, lambda p: p.mkdir()])
def test_bad_baselines_are_one_line_usage_errors(tmp_path: Path, spoil: Any, run_cli: Any) -> None:
    cand = make_build(tmp_path / "cand")
    base = tmp_path / "base"
    spoil(base)
    r = run_cli(["regress", str(cand), "--baseline", str(base), "--no-latency"])
    assert r.code == 2
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    assert "base" in r.err


@pytest.mark.parametrize("spoil", [_foreign, _old, _corrupt, lambda p: None, lambda p: p.mkdir()])
def test_bad_candidates_are_one_line_usage_errors(tmp_path: Path, spoil: Any, run_cli: Any) -> None:
    base = make_build(tmp_path / "base")
    cand = tmp_path / "cand"
    spoil(cand)
    r = run_cli(["regress", str(cand), "--baseline", str(base), "--no-latency"])
    assert r.code == 2
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    assert "cand" in r.err


def test_same_model_stops_timing_early_and_a_time_bound_holds(tmp_path: Path, run_cli: Any) -> None:
    """The sequential rule: a clear tie needs no more than the first checks' rounds; --latency-seconds caps it."""
    base = make_build(tmp_path / "base")
    cand = make_build(tmp_path / "cand")
    r = run_cli(["regress", str(cand), "--baseline", str(base), "--json"])
    lat = {c["name"]: c for c in json.loads(r.out)["checks"]}["fp32.latency"]["values"]
    assert r.code == 0 and lat["stopped"] == "decided" and lat["rounds"] < 2000 and lat["threads"] == 1
    # without an allowed ratio nothing is ever clear: only the time bound stops it
    r2 = compare_latency(load_bundle(cand / "fp32"), load_bundle(base / "fp32"), max_rounds=10**6, seconds=0.5)
    assert r2.stopped == "seconds" and 0.5 <= r2.seconds < 2.0 and r2.rounds >= 10
