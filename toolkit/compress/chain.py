"""The ``compress:`` chain of a build: prune -> distill -> quantize, each step a cached stage and a variant.

Every step takes the model the previous step left (a checkpoint; quantize takes its FP32 export) and adds
a variant to the manifest, exported, bundled, evaluated on the runtime and timed side by side with the
original FP32 model (``latency_ms.onnxruntime-cpu.vs_original``), so the report shows what each step bought.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgevision.runtime.bundle import load_bundle
from edgevision.runtime.fsutil import sha256_file

from ..cache import Artifact, Cache
from ..recipe import Recipe
from ..stages.bundle import keypoint_spec, make_sidecar, write_bundle
from ..stages.data import PreparedData
from ..stages.evaluate import evaluate_bundle
from ..stages.train import CHECKPOINT
from ..stages.variant import ONNX_NAME, VariantModel, build_variant, export_stage, variant_contract
from .distill_config import DistillConfig
from .prune_config import PruneConfig
from .quantize_config import QuantizeConfig

INT8_NAME = "model.int8.onnx"
QUANTIZE_ALGORITHM = 4  # bump when the quantizer's output changes for the same inputs (invalidates cached stages)
FP16_NAME = "model.fp16.onnx"


def metric_key(recipe: Recipe) -> str:
    return "kp_map50_95" if recipe.task == "pose" else "map50_95"


def _unique(name: str, taken: dict[str, Any]) -> str:
    if name not in taken:
        return name
    i = 2
    while f"{name}{i}" in taken:
        i += 1
    return f"{name}{i}"


def make_scorer(recipe: Recipe, data: PreparedData, offset: int, count: int, base: Path) -> Callable[[Path], float]:
    """Task metric of an ONNX model on train images ``[offset, offset + count)`` (disjoint from calibration
    and from the val split the report uses), through the runtime like every other evaluation."""
    subset = dataclasses.replace(data.train, records=data.train.records[offset : offset + count])
    sidecar = make_sidecar(recipe, variant_contract(recipe, base), list(data.train.class_names), provenance={},
                           keypoints=keypoint_spec(data.train))
    key = metric_key(recipe)

    def score(onnx_path: Path) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            write_bundle(Path(tmp), onnx_path, sidecar, golden=False)
            ev = recipe.eval
            result = evaluate_bundle(load_bundle(Path(tmp)), subset, conf=ev.conf, iou=ev.iou, max_det=ev.max_det)
        return float(result.get(key, 0.0))

    return score


def _qat(recipe: Recipe, cfg: QuantizeConfig, data: PreparedData, ckpt: Path, cache: Cache, where: str
         ) -> tuple[Path, VariantModel, dict[str, Any]]:
    """QAT fine-tune ``ckpt``, then the PTQ path on the QAT weights (no fallback search: QAT is the fix)."""
    from .qat import qat_finetune

    if cfg.qat is None:
        raise ValueError("no qat section")
    qcfg = cfg.qat
    material = {"checkpoint": sha256_file(ckpt), "qat": qcfg.model_dump(mode="json"), "data": data.digest,
                "train": recipe.train.cache_material(), "input_size": recipe.input_size}
    art = cache.run("qat", material, lambda d: qat_finetune(
        ckpt, d / CHECKPOINT, qcfg, train=data.train, input_size=recipe.input_size, train_cfg=recipe.train,
        log=cache.log))
    qat_ckpt = art.path(CHECKPOINT)
    ptq_cfg = cfg.model_copy(update={"max_drop": None, "qat": None, "fp16": False})
    model, _, info = _quantize(recipe, ptq_cfg, data, qat_ckpt, cache, where)
    return qat_ckpt, model, {**info, "qat": art.data}


def _quantize(recipe: Recipe, cfg: QuantizeConfig, data: PreparedData, ckpt: Path, cache: Cache, where: str
              ) -> tuple[VariantModel, VariantModel | None, dict[str, Any]]:
    from .calibration import ImageReader, images_hash, pick_images
    from .fp16 import convert_fp16, output_parity
    from .qdq_check import require_tensorrt_qdq
    from .quantize import quantize_model

    exported = export_stage(recipe, ckpt, cache)
    fp32 = exported.path(ONNX_NAME)
    calib = pick_images(data.train.records, cfg.calib_images, f"{where}.calib_images")
    sens: list[Path] = []
    if cfg.max_drop is not None:
        sens = pick_images(data.train.records, cfg.sensitivity_images, f"{where}.sensitivity_images",
                           offset=cfg.calib_images)
    calib_hash = images_hash(calib)
    input_spec = make_sidecar(recipe, variant_contract(recipe, ckpt), list(data.train.class_names), provenance={},
                              keypoints=keypoint_spec(data.train)).input
    material = {"algorithm": QUANTIZE_ALGORITHM, "onnx": exported.data["onnx_sha256"],
                "config": cfg.model_dump(mode="json", exclude={"fp16", "qat"}),
                "calibration": calib_hash, "sensitivity": images_hash(sens) if sens else None,
                "eval": recipe.eval.model_dump(mode="json", exclude={"limit"})}

    def run(workdir: Path) -> dict[str, Any]:
        scorer = make_scorer(recipe, data, cfg.calib_images, cfg.sensitivity_images, ckpt) if sens else None
        report = quantize_model(fp32, workdir / INT8_NAME, cfg, spec=input_spec, calib=calib,
                                sensitivity_images=sens, score=scorer, where=where, log=cache.log)
        check = require_tensorrt_qdq(workdir / INT8_NAME)
        feeds = ImageReader(calib[:8], input_spec).batches()
        parity = output_parity(fp32, workdir / INT8_NAME, feeds, input_spec.name)
        return {**report, "qdq_check": {"q_nodes": check.q_nodes, "dq_nodes": check.dq_nodes,
                                        "per_channel_weights": check.per_channel_weights, "ok": True},
                "parity": parity, "calibration_hash": calib_hash, "onnx_sha256": sha256_file(workdir / INT8_NAME)}

    art = cache.run("quantize", material, run)
    int8 = VariantModel(art.path(INT8_NAME), str(art.data["onnx_sha256"]), "int8", calib_hash, art.data)
    half = None
    if cfg.fp16:
        def run_fp16(workdir: Path) -> dict[str, Any]:
            info = convert_fp16(fp32, workdir / FP16_NAME)
            feeds = ImageReader(calib[:8], input_spec).batches()
            return {**info, "parity": output_parity(fp32, workdir / FP16_NAME, feeds, input_spec.name),
                    "onnx_sha256": sha256_file(workdir / FP16_NAME)}

        fart = cache.run("fp16", {"onnx": exported.data["onnx_sha256"]}, run_fp16)
        half = VariantModel(fart.path(FP16_NAME), str(fart.data["onnx_sha256"]), "fp16", None, fart.data)
    return int8, half, art.data


def run_compress(recipe: Recipe, data: PreparedData, trained: Path, cache: Cache, out: Path, *,
                 log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    variants: dict[str, dict[str, Any]] = {}
    original = export_stage(recipe, trained, cache).path(ONNX_NAME)
    current = trained
    common = {"data": data.digest, "input_size": recipe.input_size, "task": recipe.task}

    def add(name: str, ckpt: Path, info: dict[str, Any], model: VariantModel | None = None) -> None:
        name = _unique(name, variants)
        variants[name] = build_variant(name, recipe, data, ckpt, cache, out, model=model, reference_onnx=original,
                                       compress=info)
        m = variants[name]["metrics"].get(metric_key(recipe))
        ort = variants[name]["latency_ms"]["onnxruntime-cpu"]
        log(f"{name}: {metric_key(recipe)} {m}, ONNX Runtime {ort['median']:.2f} ms "
            f"({ort.get('vs_original', 1.0):.2f} x the original)")

    for i, (stage, cfg) in enumerate(recipe.compress_steps()):
        where = f"compress[{i}].{stage}"
        if isinstance(cfg, PruneConfig):
            art = _prune_step(cfg, current, recipe, data, cache, common, where)
            current = art.path(CHECKPOINT)
            add("pruned", current, {"stage": "prune", "step": i, **art.data})
        elif isinstance(cfg, DistillConfig):
            teacher = None if cfg.mode == "finetune" else (cfg.teacher or trained)
            runs = [(teacher, "distilled" if teacher is not None else "finetuned")]
            if cfg.compare_finetune and teacher is not None:
                runs.append((None, "finetuned"))
            students = []
            for t, label in runs:
                art = _distill_step(cfg, current, t, recipe, data, cache, common, where)
                add(label, art.path(CHECKPOINT), {"stage": "distill", "step": i, "teacher": t is not None, **art.data})
                students.append(art.path(CHECKPOINT))
            current = students[0]  # the chain goes on from the distilled model
        elif isinstance(cfg, QuantizeConfig):
            int8, half, info = _quantize(recipe, cfg, data, current, cache, where)
            add("int8", current, {"stage": "quantize", "step": i, **{k: v for k, v in info.items() if k != "parity"}},
                model=int8)
            if half is not None:
                add("fp16", current, {"stage": "quantize", "step": i, "fp16": True}, model=half)
            if cfg.qat is not None:
                qat_ckpt, qat_model, qinfo = _qat(recipe, cfg, data, current, cache, where)
                add("qat", qat_ckpt, {"stage": "quantize", "step": i,
                                      **{k: v for k, v in qinfo.items() if k != "parity"}}, model=qat_model)
    return variants


def _prune_step(cfg: PruneConfig, src: Path, recipe: Recipe, data: PreparedData, cache: Cache,
                common: dict[str, Any], where: str) -> Artifact:
    from .prune import prune_checkpoint

    material = {**common, "checkpoint": sha256_file(src), "config": cfg.model_dump(mode="json")}
    return cache.run("prune", material, lambda d: prune_checkpoint(
        src, d / CHECKPOINT, cfg, train=data.train, input_size=recipe.input_size, where=where, log=cache.log))


#: Distillation settings a plain fine-tune ignores: left out of its cache key, so tuning the KD weights
#: re-runs only the distilled student, and ``mode: finetune`` shares its result with ``compare_finetune``.
KD_ONLY_FIELDS = {"mode", "cls_weight", "box_weight", "kpt_weight", "feature_weight", "kd_decay", "kd_end", "region",
                  "feature_bg_weight", "temperature"}


def _distill_step(cfg: DistillConfig, student: Path, teacher: Path | None, recipe: Recipe, data: PreparedData,
                  cache: Cache, common: dict[str, Any], where: str) -> Artifact:
    from .distill import distill_checkpoint

    unused = {"compare_finetune", "teacher"} | (set() if teacher else KD_ONLY_FIELDS)
    material = {**common, "student": sha256_file(student), "teacher": sha256_file(teacher) if teacher else None,
                "config": cfg.model_dump(mode="json", exclude=unused),
                "train": recipe.train.cache_material()}
    return cache.run("distill", material, lambda d: distill_checkpoint(
        student, teacher, d / CHECKPOINT, cfg, train=data.train, input_size=recipe.input_size,
        train_cfg=recipe.train, where=where, log=cache.log))
