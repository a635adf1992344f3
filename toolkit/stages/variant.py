"""Per-variant stages: export (+ parity) -> bundle (+ golden tensors) -> evaluate -> bench -> manifest record.

``edgevision build`` (``toolkit/build.py``) only sequences stages; everything that turns one model into one
deployable, measured variant lives here, so the compression chain, ``regress`` and later features reuse these
stages (each cached by a content hash, see ``toolkit/cache.py``) instead of calling back into the build.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevision.runtime.bundle import Bundle, load_bundle
from edgevision.runtime.errors import UserError
from edgevision.runtime.fsutil import atomic_dir, sha256_file

from ..cache import Artifact, Cache
from ..checkpoint import load_checkpoint
from ..models.sources.base import Contract, contract_from_meta
from ..recipe import Recipe
from .bench import bench_latency
from .bundle import keypoint_spec, make_sidecar, nms_settings, write_bundle
from .data import PreparedData
from .eval_curves import publish_curves
from .evaluate import evaluate_bundle
from .export import check_parity, export_onnx

ONNX_NAME = "model.onnx"
BENCH_METHOD = 3  # 2: rotating order, no ORT spin-waiting; 3: torch timed apart (bump to re-time cached variants)
BUNDLE_METHOD = 2  # 2: bundles carry golden/ tensors (a cache from before serves bundles without them)
EVAL_METHOD = 3  # 2: yolo keeps max_det boxes after NMS (re-scores caches); 3: + per-class PR curves
METRIC_PREFIXES = ("map", "kp_map")


def is_onnx_model(base: Path) -> bool:
    """The build's base model is an ONNX file (``onnx:`` source), not a checkpoint."""
    return base.suffix == ".onnx"


def export_stage(recipe: Recipe, ckpt: Path, cache: Cache) -> Artifact:
    """The FP32 ONNX of a checkpoint (export + parity), or the adopted file itself for an ONNX source."""
    if is_onnx_model(ckpt):
        from ..models.sources.onnx import adopt_onnx

        return cache.run("export", {"onnx": sha256_file(ckpt)}, lambda d: adopt_onnx(ckpt, d / ONNX_NAME))
    material = {"checkpoint": sha256_file(ckpt), "export": recipe.export.model_dump(mode="json"),
                "input_size": recipe.input_size}

    def run(workdir: Path) -> dict[str, Any]:
        model, meta = load_checkpoint(ckpt)
        ex = recipe.export
        info = export_onnx(model, recipe.input_size, workdir / ONNX_NAME, opset=ex.opset,
                           dynamic_batch=ex.dynamic_batch, simplify=ex.simplify)
        if (meta.extra.get("source") or {}).get("kind") == "ultralytics":  # so YOLO("model.onnx") reads it too
            from ..models.ultralytics.onnx_meta import metadata_for_checkpoint, write_metadata

            write_metadata(workdir / ONNX_NAME, metadata_for_checkpoint(meta, dynamic=ex.dynamic_batch))
        parity = check_parity(model, workdir / ONNX_NAME, recipe.input_size, samples=ex.parity.samples,
                              atol=ex.parity.atol, rtol=ex.parity.rtol)
        if not parity.ok:
            raise UserError(
                f"export: torch and ONNX Runtime disagree (max abs err {parity.max_abs_err:.3g}, max rel err "
                f"{parity.max_rel_err:.3g} > atol {ex.parity.atol} / rtol {ex.parity.rtol}); "
                "check export.opset or loosen export.parity"
            )
        from ..compress.prune import count_macs

        macs, params = count_macs(model, recipe.input_size)
        return {**info, "parity": parity.to_dict(), "macs": macs, "params": params,
                "onnx_sha256": sha256_file(workdir / ONNX_NAME)}

    return cache.run("export", material, run)


def variant_contract(recipe: Recipe, base: Path) -> Contract:
    """How to feed the model of checkpoint (or ONNX source file) ``base`` at the recipe's input size."""
    if is_onnx_model(base):
        from ..models.sources.onnx import OnnxSource

        contract = OnnxSource(recipe).describe().contract
    else:
        contract = contract_from_meta(load_checkpoint(base)[1])
    return dataclasses.replace(contract, input_size=recipe.input_size)


@dataclass
class VariantModel:
    """A variant's deployable model when it is not the checkpoint's plain export (INT8 / FP16 ONNX)."""

    onnx: Path
    onnx_sha256: str
    precision: str
    calibration_hash: str | None = None
    info: dict[str, Any] | None = None  # the producing stage's record (quantization report, parity, ...)


@dataclass
class VariantInputs:
    """What the bundle, evaluate and bench stages of one variant share."""

    recipe: Recipe
    data: PreparedData
    ckpt: Path  # the checkpoint (or ONNX source file) the variant comes from
    onnx: Path
    onnx_sha256: str
    precision: str
    calibration_hash: str | None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # sidecar extras (the checkpoint's sparsity)

    @property
    def torch_model(self) -> bool:
        return not is_onnx_model(self.ckpt)

    def checkpoint_hash(self) -> str | None:
        return sha256_file(self.ckpt) if self.torch_model else None


def bundle_stage(v: VariantInputs, cache: Cache) -> Artifact:
    """The variant's bundle (sidecar, model, golden tensors), cached on the model's and recipe's hashes."""
    recipe, data = v.recipe, v.data
    provenance: dict[str, str | None] = {
        "recipe_hash": recipe.artifact_digest(), "dataset_hash": data.digest,
        "checkpoint_hash": v.checkpoint_hash(), "onnx_hash": v.onnx_sha256, "calibration_hash": v.calibration_hash,
    }
    extra = v.extra
    return cache.run(
        "bundle", {"method": BUNDLE_METHOD, "onnx": v.onnx_sha256, "recipe": recipe.artifact_digest(),
                   "precision": v.precision, "extra": extra},
        lambda d: write_bundle(d, v.onnx, make_sidecar(
            recipe, variant_contract(recipe, v.ckpt), list(data.train.class_names), precision=v.precision,
            provenance=provenance, keypoints=keypoint_spec(data.train),
        ).model_copy(update={"extra": extra}), nms=nms_settings(recipe)),
    )


def evaluate_stage(recipe: Recipe, data: PreparedData, bundled: Artifact, cache: Cache, *,
                   literal_qdq: bool = False) -> Artifact:
    """Accuracy of a bundle through the runtime on the val split. ``literal_qdq``: score the Q/DQ graph as
    TensorRT computes it (no ONNX Runtime CPU rewrites)."""
    ev = recipe.eval
    bundle: Bundle = load_bundle(bundled.dir)
    key = {"method": EVAL_METHOD, "bundle": bundled.key, "val": data.digest, "eval": ev.model_dump(mode="json")}
    opts = {"cpu_int8_rewrites": False} if literal_qdq else None
    return cache.run("evaluate", {**key, "qdq": "literal"} if literal_qdq else key,
                     lambda d: evaluate_bundle(bundle, data.val, conf=ev.conf, iou=ev.iou, max_det=ev.max_det,
                                               limit=ev.limit, backend_options=opts, curves_dir=d))


def bench_stage(v: VariantInputs, bundled: Artifact, cache: Cache, reference_onnx: Path | None) -> Artifact:
    """Latency of the variant on the recipe's backends (``reference_onnx`` timed side by side with it)."""
    bn = v.recipe.bench
    backends = bench_backends(v)
    return cache.run(
        "bench", {"method": BENCH_METHOD, "bundle": bundled.key, "checkpoint": v.checkpoint_hash(),
                  "bench": bn.model_dump(mode="json"),
                  "reference": sha256_file(reference_onnx) if reference_onnx is not None else None},
        lambda d: bench_latency(load_checkpoint(v.ckpt)[0] if "torch-cpu" in backends else None, v.onnx,
                                v.recipe.input_size, backends=backends, warmup=bn.warmup, iters=bn.iters,
                                threads=bn.threads, reference_onnx=reference_onnx),
    )


def bench_backends(v: VariantInputs) -> list[str]:
    """The recipe's bench backends this variant can run (no torch-cpu without a torch model)."""
    return [b for b in v.recipe.bench.backends if v.torch_model or b != "torch-cpu"]


def metrics_of(evaluated: Artifact) -> dict[str, Any]:
    return {k: v for k, v in evaluated.data.items() if k.startswith(METRIC_PREFIXES)}


def build_variant(
    name: str,
    recipe: Recipe,
    data: PreparedData,
    ckpt: Path,
    cache: Cache,
    out: Path,
    *,
    model: VariantModel | None = None,
    reference_onnx: Path | None = None,
    compress: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Export (or take ``model``), bundle, evaluate and bench one model; copy its bundle to ``out/name``; return
    the variant's manifest record. ``reference_onnx`` (the original FP32 model) is timed side by side with this
    one, giving ``vs_original``."""
    exported = export_stage(recipe, ckpt, cache)
    meta_extra = load_checkpoint(ckpt)[1].extra if not is_onnx_model(ckpt) else {}
    v = VariantInputs(
        recipe, data, ckpt,
        onnx=model.onnx if model is not None else exported.path(ONNX_NAME),
        onnx_sha256=model.onnx_sha256 if model is not None else exported.data["onnx_sha256"],
        precision=model.precision if model is not None else "fp32",
        calibration_hash=model.calibration_hash if model is not None else None,
        extra={k: meta_extra[k] for k in ("sparsity",) if k in meta_extra},
    )
    bundled = bundle_stage(v, cache)
    evaluated = evaluate_stage(recipe, data, bundled, cache)
    as_tensorrt = evaluate_stage(recipe, data, bundled, cache, literal_qdq=True) if v.precision == "int8" else None
    benched = bench_stage(v, bundled, cache, reference_onnx)
    with atomic_dir(out / name) as tmp:
        shutil.copytree(bundled.dir, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("_stage.json"))
    parity = exported.data["parity"]
    record: dict[str, Any] = {
        "bundle": name,
        "precision": v.precision,
        "metrics": metrics_of(evaluated),
        "latency_ms": benched.data,
        "parity": ({k: parity[k] for k in ("max_abs_err", "max_rel_err") if k in parity} if model is None
                   else (model.info or {}).get("parity", {})),
        "macs": exported.data["macs"],
        "params": exported.data["params"],
        "size_bytes": v.onnx.stat().st_size,
        "onnx_sha256": v.onnx_sha256,
        "export": {k: exported.data[k] for k in ("opset", "dynamic_batch", "simplified", "nodes_before",
                                                 "nodes_after")},
    }
    record.update(publish_curves(evaluated.dir, out, name))  # per-class AP, PR curves (report.html)
    if as_tensorrt is not None:
        record["metrics_tensorrt_qdq"] = metrics_of(as_tensorrt)
    if "torch-cpu" in recipe.bench.backends and "torch-cpu" not in bench_backends(v):
        record["notes"] = ["bench: torch-cpu skipped, the model is an ONNX file (model.onnx) with no torch model"]
    if compress:
        record["compress"] = compress
    if v.extra:
        record["sparsity"] = v.extra.get("sparsity")
    return record
