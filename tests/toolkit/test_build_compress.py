"""`edgevision build` with a compress chain: each step is a manifest variant with a loadable bundle,
timed against the original, and the INT8 bundle is a TensorRT-style Q/DQ model with its calibration hash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_build import TINY

from edgevision.runtime.bundle import load_bundle
from edgevision.toolkit.build import build
from edgevision.toolkit.compress.qdq_check import require_tensorrt_qdq

CHAIN = """\
compress:
  - prune: {macs_reduction: 1.5, calib_batches: 1}
  - distill: {epochs: 1, compare_finetune: true}
  - quantize: {method: minmax, calib_images: 8, max_drop: 100, sensitivity_images: 4, max_float_layers: 1, fp16: true,
               qat: {epochs: 1}}
"""


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("chain")
    recipe = root / "tiny.yaml"
    recipe.write_text(TINY.format(epochs=1, conf=0.001) + CHAIN)
    out = root / "out"
    return out, build(recipe, out, log=lambda m: None).manifest


def test_every_step_is_a_variant_with_a_bundle(chain: tuple[Path, dict]) -> None:
    out, manifest = chain
    variants = manifest["variants"]
    assert list(variants) == ["fp32", "pruned", "distilled", "finetuned", "int8", "fp16", "qat"]
    for name, v in variants.items():
        b = load_bundle(out / name)
        assert b.sidecar.precision == v["precision"]
        if name != "fp32":
            ort = v["latency_ms"]["onnxruntime-cpu"]
            assert ort["vs_original"] == pytest.approx(
                ort["median"] / v["latency_ms"]["onnxruntime-cpu-original"]["median"], rel=1e-3)
    assert variants["pruned"]["macs"] < variants["fp32"]["macs"] / 1.4
    assert variants["distilled"]["compress"]["teacher"] and not variants["finetuned"]["compress"]["teacher"]
    # quantize and fp16 start from the distilled model, not the original
    assert variants["int8"]["macs"] == variants["distilled"]["macs"]


def test_int8_bundle_is_tensorrt_style_and_traceable(chain: tuple[Path, dict]) -> None:
    out, manifest = chain
    int8 = load_bundle(out / "int8")
    assert int8.sidecar.precision == "int8" and require_tensorrt_qdq(int8.model_path).ok
    info = manifest["variants"]["int8"]["compress"]
    assert int8.sidecar.provenance.calibration_hash == info["calibration_hash"]
    assert info["qdq_check"]["ok"] and info["budget_met"]
    assert all("protect_head" in why or "sensitivity" in why for why in info["float_layers"].values())
    report = (out / "report.md").read_text()
    assert "## Compression" in report and "TensorRT Q/DQ check passed" in report
    # the literal Q/DQ graph (TensorRT's math) is scored too, on the same val split
    literal = manifest["variants"]["int8"]["metrics_tensorrt_qdq"]
    assert set(literal) == set(manifest["variants"]["int8"]["metrics"])
    assert "as a TensorRT engine computes it" in report
    assert "metrics_tensorrt_qdq" not in manifest["variants"]["fp16"]
    qat = load_bundle(out / "qat")
    assert qat.sidecar.precision == "int8" and require_tensorrt_qdq(qat.model_path).ok
    assert manifest["variants"]["qat"]["compress"]["qat"]["fake_quantized_convs"] > 0
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["variants"]["fp16"]["precision"] == "fp16"


def test_tuning_kd_weights_reruns_only_the_distilled_student(tmp_path: Path) -> None:
    """A plain fine-tune ignores the KD settings, so changing them must not redo it (nor anything before)."""
    chain = "compress:\n  - prune: {macs_reduction: 1.5}\n  - distill: {epochs: 1, compare_finetune: true%s}\n"
    cache = tmp_path / "cache"
    stages = []
    for extra in ("", ", cls_weight: 0.5, kpt_weight: 0.0, temperature: 2.0"):
        recipe = tmp_path / "tiny.yaml"
        recipe.write_text(TINY.format(epochs=1, conf=0.001) + chain % extra)
        stages.append(build(recipe, tmp_path / "out", cache_dir=cache, log=lambda m: None).manifest["stages"])
    distill = [[s for s in run if s["stage"] == "distill"] for run in stages]
    assert [s["cached"] for s in distill[0]] == [False, False]
    distilled, finetuned = distill[1]
    assert not distilled["cached"] and distilled["key"] != distill[0][0]["key"]
    assert finetuned["cached"] and finetuned["key"] == distill[0][1]["key"]
