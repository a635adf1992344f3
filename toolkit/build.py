"""`edgevision build`: run a recipe's stages in order, each cached by a content hash of inputs + config.

data -> train -> export (+ parity) -> bundle -> evaluate (on the runtime) -> bench -> manifest + report.
Every stage's output lives in ``OUT/cache/<stage>/<key>/`` and is written atomically, so a rerun of an
unchanged recipe only re-reads the cache, a config change reruns that stage and what follows, and a killed
build resumes at the first stage it lacks.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevision.runtime.bundle import load_bundle
from edgevision.runtime.errors import UserError
from edgevision.runtime.fsutil import atomic_dir, sha256_file

from .cache import Artifact, Cache
from .checkpoint import load_checkpoint
from .devices import load_profile
from .gates import check_gate_names
from .models.registry import get_model_spec
from .models.sources import prepare
from .models.sources.base import Contract, contract_from_meta
from .recipe import Recipe, load_recipe
from .stages.bench import bench_latency
from .stages.bundle import keypoint_spec, make_sidecar, nms_settings, write_bundle
from .stages.data import PreparedData, prepare_data
from .stages.eval_curves import publish_curves
from .stages.evaluate import evaluate_bundle
from .stages.export import check_parity, export_onnx
from .stages.gates import gates_stage
from .stages.report import write_outputs
from .stages.train import CHECKPOINT, train_stage

ONNX_NAME = "model.onnx"
BENCH_METHOD = 3  # 2: rotating order, no ORT spin-waiting; 3: torch timed apart (bump to re-time cached variants)
BUNDLE_METHOD = 2  # 2: bundles carry golden/ tensors (a cache from before serves bundles without them)
EVAL_METHOD = 3  # 2: yolo keeps max_det boxes after NMS (re-scores caches); 3: + per-class PR curves


@dataclass
class BuildResult:
    out: Path
    manifest: dict[str, Any]


def count_macs_params(model: Any, input_size: int) -> tuple[int, int]:
    import torch
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(model.eval(), torch.zeros(1, 3, input_size, input_size))
    return int(macs), int(params)


def is_onnx_model(base: Path) -> bool:
    """The build's base model is an ONNX file (``onnx:`` source), not a checkpoint."""
    return base.suffix == ".onnx"


def _export(recipe: Recipe, ckpt: Path, cache: Cache) -> Artifact:
    """The FP32 ONNX of a checkpoint (export + parity), or the adopted file itself for an ONNX source."""
    if is_onnx_model(ckpt):
        from .models.sources.onnx import adopt_onnx

        return cache.run("export", {"onnx": sha256_file(ckpt)}, lambda d: adopt_onnx(ckpt, d / ONNX_NAME))
    material = {"checkpoint": sha256_file(ckpt), "export": recipe.export.model_dump(mode="json"),
                "input_size": recipe.input_size}

    def run(workdir: Path) -> dict[str, Any]:
        model, meta = load_checkpoint(ckpt)
        ex = recipe.export
        info = export_onnx(model, recipe.input_size, workdir / ONNX_NAME, opset=ex.opset,
                           dynamic_batch=ex.dynamic_batch, simplify=ex.simplify)
        if (meta.extra.get("source") or {}).get("kind") == "ultralytics":  # so YOLO("model.onnx") reads it too
            from .models.ultralytics.onnx_meta import metadata_for_checkpoint, write_metadata

            write_metadata(workdir / ONNX_NAME, metadata_for_checkpoint(meta, dynamic=ex.dynamic_batch))
        parity = check_parity(model, workdir / ONNX_NAME, recipe.input_size, samples=ex.parity.samples,
                              atol=ex.parity.atol, rtol=ex.parity.rtol)
        if not parity.ok:
            raise UserError(
                f"export: torch and ONNX Runtime disagree (max abs err {parity.max_abs_err:.3g}, max rel err "
                f"{parity.max_rel_err:.3g} > atol {ex.parity.atol} / rtol {ex.parity.rtol}); "
                "check export.opset or loosen export.parity"
            )
        macs, params = count_macs_params(model, recipe.input_size)
        return {**info, "parity": parity.to_dict(), "macs": macs, "params": params,
                "onnx_sha256": sha256_file(workdir / ONNX_NAME)}

    return cache.run("export", material, run)


def variant_contract(recipe: Recipe, base: Path) -> Contract:
    """How to feed the model of checkpoint (or ONNX source file) ``base`` at the recipe's input size."""
    if is_onnx_model(base):
        from .models.sources.onnx import OnnxSource

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
    """Export (or take ``model``), bundle, evaluate and bench one model; copy its bundle to ``out/name``.

    ``reference_onnx`` (the original FP32 model) is timed side by side with this one, giving ``vs_original``.
    """
    exported = _export(recipe, ckpt, cache)
    onnx_path = model.onnx if model is not None else exported.path(ONNX_NAME)
    onnx_hash = model.onnx_sha256 if model is not None else exported.data["onnx_sha256"]
    precision = model.precision if model is not None else "fp32"
    torch_model = not is_onnx_model(ckpt)
    provenance: dict[str, str | None] = {
        "recipe_hash": recipe.artifact_digest(), "dataset_hash": data.digest,
        "checkpoint_hash": sha256_file(ckpt) if torch_model else None, "onnx_hash": onnx_hash,
        "calibration_hash": model.calibration_hash if model is not None else None,
    }
    contract = variant_contract(recipe, ckpt)
    meta_extra = load_checkpoint(ckpt)[1].extra if torch_model else {}
    extra = {k: meta_extra[k] for k in ("sparsity",) if k in meta_extra}
    bundled = cache.run(
        "bundle", {"method": BUNDLE_METHOD, "onnx": onnx_hash, "recipe": recipe.artifact_digest(),
                   "precision": precision, "extra": extra},
        lambda d: write_bundle(d, onnx_path, make_sidecar(
            recipe, contract, list(data.train.class_names), precision=precision, provenance=provenance,
            keypoints=keypoint_spec(data.train),
        ).model_copy(update={"extra": extra}), nms=nms_settings(recipe)),
    )
    bundle = load_bundle(bundled.dir)
    ev = recipe.eval

    def evaluate(literal_qdq: bool = False) -> Any:
        """``literal_qdq``: score the Q/DQ graph as TensorRT computes it (no ONNX Runtime CPU rewrites)."""
        key = {"method": EVAL_METHOD, "bundle": bundled.key, "val": data.digest, "eval": ev.model_dump(mode="json")}
        opts = {"cpu_int8_rewrites": False} if literal_qdq else None
        return cache.run("evaluate", {**key, "qdq": "literal"} if literal_qdq else key,
                         lambda d: evaluate_bundle(bundle, data.val, conf=ev.conf, iou=ev.iou, max_det=ev.max_det,
                                                   limit=ev.limit, backend_options=opts, curves_dir=d))

    evaluated = evaluate()
    as_tensorrt = evaluate(literal_qdq=True) if precision == "int8" else None
    bn = recipe.bench
    backends: list[str] = [b for b in bn.backends if torch_model or b != "torch-cpu"]
    benched = cache.run(
        "bench", {"method": BENCH_METHOD, "bundle": bundled.key, "checkpoint": provenance["checkpoint_hash"],
                  "bench": bn.model_dump(mode="json"),
                  "reference": sha256_file(reference_onnx) if reference_onnx is not None else None},
        lambda d: bench_latency(load_checkpoint(ckpt)[0] if "torch-cpu" in backends else None, onnx_path,
                                recipe.input_size, backends=backends, warmup=bn.warmup, iters=bn.iters,
                                threads=bn.threads, reference_onnx=reference_onnx),
    )
    with atomic_dir(out / name) as tmp:
        shutil.copytree(bundled.dir, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("_stage.json"))
    record: dict[str, Any] = {
        "bundle": name,
        "precision": precision,
        "metrics": {k: v for k, v in evaluated.data.items() if k.startswith(("map", "kp_map"))},
        "latency_ms": benched.data,
        "parity": ({k: exported.data["parity"][k] for k in ("max_abs_err", "max_rel_err")
                    if k in exported.data["parity"]} if model is None else (model.info or {}).get("parity", {})),
        "macs": exported.data["macs"],
        "params": exported.data["params"],
        "size_bytes": onnx_path.stat().st_size,
        "onnx_sha256": onnx_hash,
        "export": {k: exported.data[k] for k in ("opset", "dynamic_batch", "simplified", "nodes_before",
                                                 "nodes_after")},
    }
    record.update(publish_curves(evaluated.dir, out, name))  # per-class AP, PR curves (report.html)
    if as_tensorrt is not None:
        record["metrics_tensorrt_qdq"] = {k: v for k, v in as_tensorrt.data.items() if k.startswith(("map", "kp_map"))}
    if "torch-cpu" in bn.backends and "torch-cpu" not in backends:
        record["notes"] = ["bench: torch-cpu skipped, the model is an ONNX file (model.onnx) with no torch model"]
    if compress:
        record["compress"] = compress
    if extra:
        record["sparsity"] = extra.get("sparsity")
    return record


def check_models(recipe: Recipe, source: Path) -> None:
    """Every built-in model the recipe names (``model``, distill ``student``) exists in that size, and every
    checkpoint it names (``model.checkpoint``, distill ``teacher``) exists: checked before the data stage, so a
    typo costs no work and leaves no cache behind."""
    wanted = [("model", recipe.model.name, recipe.model.size)] if recipe.model.kind == "builtin" else []
    for i, (stage, cfg) in enumerate(recipe.compress_steps()):
        student = getattr(cfg, "student", None) if stage == "distill" else None
        if student:
            name, size = student.rsplit("-", 1)
            wanted.append((f"compress[{i}].distill.student", name, size))
    ckpt = getattr(recipe.model, "checkpoint", None)
    if isinstance(ckpt, Path) and not ckpt.is_file():
        raise UserError(f"{source}: model.checkpoint: {ckpt} not found")
    for i, (stage, cfg) in enumerate(recipe.compress_steps()):
        teacher = getattr(cfg, "teacher", None) if stage == "distill" else None
        if teacher is not None and not Path(teacher).is_file():
            raise UserError(f"{source}: compress[{i}].distill.teacher: {teacher} not found")
    for key, name, size in wanted:
        try:
            spec = get_model_spec(name)
        except UserError as exc:
            raise UserError(f"{source}: {key}: {exc}") from None
        if size not in spec.sizes:
            raise UserError(f"{source}: {key}: model {name!r} has no size {size!r}; known sizes: "
                            f"{', '.join(spec.sizes)}")


def build(recipe_path: Path, out: Path | None = None, *, cache_dir: Path | None = None,
          log: Callable[[str], None] = print) -> BuildResult:
    t0 = time.perf_counter()
    loaded = load_recipe(recipe_path)
    check_models(loaded, recipe_path)
    recipe, source, _ = prepare(loaded, base=recipe_path.parent)
    profiles = [load_profile(t) for t in recipe.targets]  # unknown device names fail before any work
    check_gate_names(recipe.gates, recipe.task, f"{recipe_path}: ")
    out = out if out is not None else Path("runs") / recipe.name
    out.mkdir(parents=True, exist_ok=True)
    cache = Cache(cache_dir if cache_dir is not None else out / "cache", log=log)

    data = prepare_data(recipe.dataset, cache, task=recipe.task)
    log(f"data: {len(data.train.records)} train / {len(data.val.records)} val images, "
        f"{len(data.train.class_names)} classes")
    trained = train_stage(recipe, data, cache, source)
    ckpt = trained.path(str(trained.data.get("model_file", CHECKPOINT)))
    variants = {"fp32": build_variant("fp32", recipe, data, ckpt, cache, out)}
    if recipe.compress:
        from .compress.chain import run_compress

        variants.update(run_compress(recipe, data, ckpt, cache, out, log=log))

    manifest = write_outputs(out, recipe, data, variants, profiles, cache.events, trained.data,
                             seconds=time.perf_counter() - t0)
    if recipe.gates.declared():
        manifest = gates_stage(out, recipe, manifest, log=log)
    return BuildResult(out, manifest)
