"""``model: {module: "pkg.mod:factory"}``: a custom detector (tests/toolkit/sources_custom_detector.py, not a
built-in, no head protocol) through prune + INT8 quantize + export + evaluate, and the module source's
bad inputs: each one line, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_main
from sources_custom_detector import TinyDetector

from edgevision.runtime.backends.onnxruntime import OrtBackend
from edgevision.runtime.bundle import load_bundle
from edgevision.toolkit.build import build
from edgevision.toolkit.checkpoint import load_checkpoint
from edgevision.toolkit.compress.prune import output_convs
from edgevision.toolkit.compress.qdq_check import require_tensorrt_qdq
from edgevision.toolkit.models.registry import build_model

RECIPE = """\
name: custom
model: {{module: "sources_custom_detector:{factory}"{extra}}}
input_size: 64
dataset: {{kind: synthetic, seed: 3, num_train: 24, num_val: 8, image_size: 64, max_objects: 3}}
train: {{epochs: 1, batch: 8, num_threads: 2}}
bench: {{warmup: 1, iters: 3, threads: 2}}
"""
CHAIN = """\
compress:
  - prune: {macs_reduction: 1.5}
  - quantize: {method: minmax, calib_images: 8}
"""


def write(tmp: Path, factory: str = "tiny_detector", extra: str = "", tail: str = "") -> Path:
    path = tmp / "recipe.yaml"
    path.write_text(RECIPE.format(factory=factory, extra=extra) + tail)
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("module")
    out = root / "out"
    return out, build(write(root, tail=CHAIN), out, log=lambda m: None).manifest


def test_custom_module_is_pruned_quantized_exported_and_evaluated(built: tuple[Path, dict]) -> None:
    out, manifest = built
    variants = manifest["variants"]
    assert list(variants) == ["fp32", "pruned", "int8"]
    assert variants["pruned"]["macs"] < variants["fp32"]["macs"] / 1.4
    assert variants["int8"]["macs"] == variants["pruned"]["macs"]  # quantize continues from the pruned model
    for name, v in variants.items():
        bundle = load_bundle(out / name)
        assert bundle.sidecar.output.layout == "yolo" and bundle.sidecar.output.num_classes == 6
        assert 0.0 <= v["metrics"]["map50_95"] <= 1.0
    assert variants["fp32"]["parity"]["max_abs_err"] < 1e-3  # torch module vs its ONNX export
    assert require_tensorrt_qdq(out / "int8" / "model.onnx").ok
    # the convs that emit the layout stay float, found from the ONNX graph (the module declares nothing)
    float_layers = variants["int8"]["compress"]["float_layers"]
    assert len(float_layers) == 3 and all("protect_head" in why for why in float_layers.values())
    # pruning protected the layout convs it derived from the autograd graph: outputs keep 4 + C channels
    assert sorted(variants["pruned"]["compress"]["protected"]) == ["preds.0", "preds.1", "preds.2"]


def test_pruned_module_checkpoint_reloads_weights_only_and_matches_its_bundle(built: tuple[Path, dict]) -> None:
    """The pruned checkpoint rebuilds through the recorded factory (no pickled code) and computes what the
    deployed FP32 ONNX of that step computes."""
    out, _ = built
    ckpts = sorted((out / "cache" / "prune").glob("*/checkpoint.pt"))
    assert len(ckpts) == 1
    model, meta = load_checkpoint(ckpts[0])
    assert meta.extra["source"]["kind"] == "module"
    assert meta.extra["source"]["factory"] == "sources_custom_detector:tiny_detector"
    assert isinstance(model, TinyDetector) and model.p4[0][0].out_channels < 128
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    with OrtBackend(out / "pruned" / "model.onnx") as ort:
        got = ort.infer({"images": x})["output0"]
    assert got.shape == ref.shape == (1, 10, 84)
    np.testing.assert_allclose(got, ref, atol=1e-3)


def test_output_convs_match_the_builtin_heads_declared_outputs() -> None:
    """The derived protection finds exactly what built-in heads declare with head_outputs()."""
    for name, nk in (("edgedet", 0), ("edgepose", 3)):
        model = build_model(name, "p", 3, nk)
        assert {id(m) for m in output_convs(model, 64)} == {id(m) for m in model.head_outputs()}


def test_module_with_loss_fine_tunes(tmp_path: Path) -> None:
    """With `loss:` a module model can be fine-tuned (plain fine-tune, no teacher) like a built-in."""
    recipe = write(tmp_path, extra=', loss: "sources_custom_detector:centre_loss"',
                   tail="compress:\n  - distill: {mode: finetune, epochs: 1}\n")
    manifest = build(recipe, tmp_path / "out", log=lambda m: None).manifest
    info = manifest["variants"]["finetuned"]["compress"]
    assert info["mode"] == "finetune" and len(info["epoch_losses"]) == 1 and np.isfinite(info["epoch_losses"][0])


@pytest.mark.parametrize(("factory", "extra", "tail", "expected"), [
    ("tiny_detector", "", "", None),  # control: this recipe is fine (checked up to the first stage below)
    ("no_such_factory", "", "", "has no attribute 'no_such_factory'"),
    ("not_a_module", "", "", "returned a dict, not a torch.nn.Module"),
    ("wrong_layout", "", "", "expects [1, 4 + C (+3K), 84], got [1, 84, 10]"),
    ("tiny_detector", ", strides: [8, 16]", "", "expects [1, 4 + C (+3K), 80], got [1, 10, 84]"),
    ("tiny_detector", "", "compress:\n  - distill: {mode: finetune}\n",
     "compress[0].distill: mode: finetune needs a task loss"),
    ("tiny_detector", "", "compress:\n  - distill: {gt_weight: 0}\n",
     "compress[0].distill: distillation reads raw DFL head maps"),
    ("tiny_detector", "", "compress:\n  - quantize: {qat: {epochs: 1}}\n",
     "compress[0].quantize.qat: needs a task loss"),
    ("tiny_detector", "", "compress:\n  - prune: {ratio: 0.3, importance: taylor}\n",
     "compress[0].prune.importance: 'taylor' needs a task loss"),
])
def test_bad_module_inputs_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], factory: str,
                                        extra: str, tail: str, expected: str | None) -> None:
    recipe = write(tmp_path, factory=factory, extra=extra, tail=tail)
    out = tmp_path / "out"
    if expected is None:
        from edgevision.toolkit.models.sources import prepare
        from edgevision.toolkit.recipe import load_recipe

        prepared, _, info = prepare(load_recipe(recipe))
        assert info.kind == "module" and prepared.input_size == 64 and not info.has_loss
        return
    code, _, err = run_main(["build", str(recipe), "--out", str(out)], capsys)
    assert code == 2, err
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() or (not any(out.rglob("*.pt")) and not any(out.rglob("*.onnx")))


def test_module_that_does_not_import_and_two_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text('name: x\nmodel: {module: "no_such_pkg.sub:build"}\n')
    code, _, err = run_main(["build", str(recipe), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "model.module: 'no_such_pkg.sub:build': module 'no_such_pkg.sub' does not import" in err
    recipe.write_text('name: x\nmodel: {name: edgedet, module: "a.b:c"}\n')
    code, _, err = run_main(["build", str(recipe), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "model: name and module are two model sources" in err and len(err.strip().splitlines()) == 1
    recipe.write_text('name: x\nmodel: {checkpoint: a.pt, weights: w.pt}\n')
    code, _, err = run_main(["build", str(recipe), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "checkpoint and weights" not in err and "weights: only for a 'module' model source" in err
    weights = tmp_path / "w.pt"
    torch.save({"stem.0.0.weight": torch.zeros(1)}, weights)
    (tmp_path / "r.yaml").write_text(RECIPE.format(factory="tiny_detector", extra=f", weights: {weights}"))
    code, _, err = run_main(["build", str(recipe), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and f"model.weights: {weights}: does not fit" in err and len(err.strip().splitlines()) == 1
