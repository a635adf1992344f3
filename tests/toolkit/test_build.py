"""End-to-end `edgevision build` on a tiny recipe: manifest contract, bundle, caching, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgevision.runtime.bundle import load_bundle
from edgevision.runtime.golden import TOLERANCES, check_lines, load_golden
from edgevision.toolkit.build import build
from edgevision.toolkit.stages import variant as variant_stages

TINY = """\
name: tiny
model: {{name: edgedet, size: n}}
input_size: 64
dataset: {{kind: synthetic, seed: 3, num_train: 24, num_val: 8, image_size: 64, max_objects: 3}}
train: {{epochs: {epochs}, batch: 8, lr: 0.002, num_threads: 2}}
export: {{opset: 17, dynamic_batch: true}}
eval: {{conf: {conf}}}
bench: {{warmup: 1, iters: 3, threads: 2}}
targets: [x86-cpu, jetson-orin-nano-8gb]
"""


def write_recipe(path: Path, epochs: int = 1, conf: float = 0.001) -> Path:
    path.write_text(TINY.format(epochs=epochs, conf=conf))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("build")
    recipe = write_recipe(root / "tiny.yaml")
    out = root / "out"
    result = build(recipe, out, log=lambda m: None)
    return recipe, out, result.manifest


def test_manifest_contract(built: tuple[Path, Path, dict]) -> None:
    _, out, manifest = built
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["variants"].keys() == manifest["variants"].keys() == {"fp32"}
    v = on_disk["variants"]["fp32"]
    assert 0.0 <= v["metrics"]["map50_95"] <= v["metrics"]["map50"] <= 1.0
    for backend in ("torch-cpu", "onnxruntime-cpu"):
        lat = v["latency_ms"][backend]
        assert 0 < lat["median"] <= lat["p90"] <= lat["p99"]
    assert v["parity"]["max_abs_err"] < 1e-2 and v["parity"]["max_rel_err"] >= 0
    assert v["macs"] > 0 and v["params"] > 0 and v["size_bytes"] == (out / "fp32" / "model.onnx").stat().st_size
    assert on_disk["recipe"]["name"] == "tiny"
    hashed = {a["path"] for a in on_disk["artifacts"]}
    assert {"fp32/model.onnx", "fp32/edgevision.json"} <= hashed
    assert (out / "report.md").read_text().startswith("# edgevision build report: tiny")
    # report.html beside it, from per-class results the evaluate stage kept and a recorded timing method
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert set(v["ap_per_class"]) == set(on_disk["dataset"]["classes"])
    assert json.loads((out / v["eval_curves"]).read_text())["bbox"]["classes"]
    assert v["latency_ms"]["onnxruntime-cpu"]["timing"] == {**v["latency_ms"]["torch-cpu"]["timing"], "threads": 2,
                                                            "warmup": 1, "iters": 3, "spin": False}


def test_bundle_is_complete(built: tuple[Path, Path, dict]) -> None:
    _, out, manifest = built
    b = load_bundle(out / "fp32")
    s = b.sidecar
    assert s.task == "detect" and s.output.layout == "yolo" and s.input.shape == ["batch", 3, 64, 64]
    assert len(s.class_names) == s.output.num_classes >= 5
    assert s.provenance.recipe_hash == manifest["recipe_artifact_hash"]
    assert s.provenance.dataset_hash == manifest["dataset"]["hash"]
    assert {"torch", "onnx", "onnxruntime"} <= s.provenance.tools.keys()


def test_bundle_carries_golden_tensors_that_its_model_reproduces(built: tuple[Path, Path, dict]) -> None:
    _, out, _ = built
    g = load_golden(out / "fp32")
    assert g is not None and g.index.precision == "fp32" and g.index.samples == 2
    assert g.inputs["images"].shape == (2, 1, 3, 64, 64) and g.inputs["images"].dtype == np.float32
    assert [o.name for o in g.index.outputs] == ["output0"]
    assert (g.index.outputs[0].atol, g.index.outputs[0].rtol) == (TOLERANCES["fp32"].atol, TOLERANCES["fp32"].rtol)
    # the stored outputs are the bundled model's own (recomputed here with a fresh session), on preprocessed
    # pixels (values of k/255)
    assert np.allclose(g.inputs["images"] * 255, np.round(g.inputs["images"] * 255), atol=1e-4)
    status, lines = check_lines(load_bundle(out / "fp32"), "onnxruntime")
    assert status == 0, lines
    size = sum(p.stat().st_size for p in (out / "fp32" / "golden").iterdir())
    assert size < 200_000  # small: two 64 px inputs and their outputs


def test_rerun_is_cached_and_config_change_reruns_only_what_follows(built: tuple[Path, Path, dict]) -> None:
    recipe, out, _ = built
    again = build(recipe, out, log=lambda m: None).manifest
    assert all(s["cached"] for s in again["stages"]), again["stages"]
    write_recipe(recipe, conf=0.01)
    changed = build(recipe, out, log=lambda m: None).manifest
    ran = {s["stage"] for s in changed["stages"] if not s["cached"]}
    assert ran == {"evaluate"}
    write_recipe(recipe)  # restore for other tests


def test_interrupted_build_resumes(built: tuple[Path, Path, dict], monkeypatch: pytest.MonkeyPatch) -> None:
    recipe, out, _ = built
    write_recipe(recipe, epochs=2)  # new training -> export, bundle, evaluate, bench all new

    def killed(*args: object, **kwargs: object) -> dict:
        raise KeyboardInterrupt

    monkeypatch.setattr(variant_stages, "evaluate_bundle", killed)
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(KeyboardInterrupt):
        build(recipe, out, log=lambda m: None)
    assert (out / "manifest.json").read_bytes() == before  # old outputs untouched, nothing half-written
    assert not list(out.rglob("*.tmp-*"))
    monkeypatch.undo()
    resumed = build(recipe, out, log=lambda m: None).manifest
    cached = {s["stage"]: s["cached"] for s in resumed["stages"]}
    assert cached["data"] and cached["train"] and cached["export"] and cached["bundle"]
    assert not cached["evaluate"]
    write_recipe(recipe)


def test_export_nms_bundles_the_same_model_with_nms_in_the_graph(built: tuple[Path, Path, dict],
                                                                   tmp_path: Path) -> None:
    _, out, _ = built
    # eval IoU = postprocess IoU: the nms bundle has it baked into the graph, the yolo one applies it on the CPU
    text = TINY.format(epochs=1, conf=0.001).replace("dynamic_batch: true", "dynamic_batch: false{nms}")
    text = text.replace("eval: {conf: 0.001}", "eval: {conf: 0.001, iou: 0.45}")
    metrics = {}
    for nms in (False, True):
        recipe = tmp_path / f"nms_{nms}" / "tiny.yaml"
        recipe.parent.mkdir()
        recipe.write_text(text.replace("{nms}", ", nms: true" if nms else ""))
        res = build(recipe, recipe.parent / "out", cache_dir=out / "cache", log=lambda m: None).manifest
        assert {s["stage"] for s in res["stages"] if s["cached"]} >= {"data", "train"}  # the `built` checkpoint
        metrics[nms] = res["variants"]["fp32"]["metrics"]
        b = load_bundle(recipe.parent / "out" / "fp32")
        assert b.sidecar.output.layout == ("nms" if nms else "yolo")
    import onnx

    assert "NonMaxSuppression" in {n.op_type for n in onnx.load(str(b.model_path)).graph.node}
    assert b.sidecar.output.names[0] == "num_dets"
    assert metrics[True] == pytest.approx(metrics[False], abs=1e-6)
    # a one-epoch model scores ~0 mAP either way, so compare the detections themselves at a low threshold
    # (the NMS itself is checked on crowded heads in test_nms_graph.py)
    import cv2

    from edgevision.runtime.predictor import Predictor

    preds = [Predictor(load_bundle(tmp_path / f"nms_{nms}" / "out" / "fp32"), conf=0.001, iou=0.45)
             for nms in (False, True)]
    images = sorted((out / "cache" / "data").glob("*/images/val/*.jpg"))[:4]
    assert images
    for path in images:
        want, got = (p.predict(cv2.imread(str(path))) for p in preds)
        assert len(want) >= 1 and len(got) == len(want)
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5)
        np.testing.assert_allclose(got.xyxy, want.xyxy, atol=1e-2)
