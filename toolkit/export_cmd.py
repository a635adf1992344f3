"""`edgevision export CHECKPOINT --out BUNDLE`: one checkpoint to a deployable bundle, outside a build."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from edgevision.runtime.bundle import SIDECAR_NAME, KeypointSpec
from edgevision.runtime.errors import UserError
from edgevision.runtime.fsutil import atomic_dir, sha256_file
from edgevision.runtime.fsutil import check_out_dir as check_output_dir

from .checkpoint import CheckpointMeta, load_checkpoint
from .data.coco import COCO_KEYPOINT_NAMES, COCO_SIGMAS, COCO_SKELETON
from .models.sources.base import contract_from_meta
from .recipe import MAX_SIDE, ExportConfig, ModelConfig, Recipe
from .stages.bundle import make_sidecar, nms_settings, write_bundle
from .stages.export import check_parity, export_onnx


def check_out_dir(out: Path, *, force: bool = False) -> None:
    """``out`` may be written as a bundle: absent, an empty directory, or a bundle (replaced whole); see
    ``fsutil.check_out_dir`` (shared with ``export-triton`` / ``export-deepstream``)."""
    check_output_dir(out, force=force, marker=SIDECAR_NAME, what="an edgevision bundle")


def export_checkpoint(checkpoint: Path, out: Path, *, opset: int = 17, dynamic_batch: bool = False,
                      simplify: bool = True, input_size: int | None = None, nms: bool = False,
                      force: bool = False) -> dict[str, float]:
    """``out``: see ``check_out_dir`` (``force`` replaces a directory that is not a bundle). ``input_size``
    (default: the size it was trained at) exports the fully convolutional model for another square input,
    e.g. 640 for a model trained at 256; it must be a multiple of the model's largest stride.
    ``nms``: NMS inside the graph (output layout ``nms``, see ``toolkit.nms_graph``)."""
    check_out_dir(out, force=force)
    if input_size is not None and not 1 <= input_size <= MAX_SIDE:
        raise UserError(f"--imgsz {input_size}: out of range [32, {MAX_SIDE}]")
    model, meta = load_checkpoint(checkpoint)
    spec = contract_from_meta(meta)  # the model source's contract (built-ins: the registry's)
    size = meta.input_size if input_size is None else input_size
    stride = max(spec.strides)
    if size < stride or size % stride:
        raise UserError(f"--imgsz {size}: must be a positive multiple of {stride} (the model's largest stride)")
    keypoints = checkpoint_keypoints(checkpoint, meta)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", out.name).lstrip("._-")[:100] or "model"
    recipe = Recipe(name=name, task=meta.task,  # type: ignore[arg-type]
                    model=ModelConfig(checkpoint=checkpoint), input_size=size,
                    export=ExportConfig(opset=opset, dynamic_batch=dynamic_batch, simplify=simplify, nms=nms))
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_onnx(model, size, onnx_path, opset=opset, dynamic_batch=dynamic_batch, simplify=simplify)
        parity = check_parity(model, onnx_path, size)
        if not parity.ok:
            raise UserError(f"{checkpoint}: torch and ONNX Runtime disagree (max abs err "
                            f"{parity.max_abs_err:.3g}); not writing {out}")
        sidecar = make_sidecar(recipe, spec, meta.class_names, keypoints=keypoints,
                               provenance={"checkpoint_hash": sha256_file(checkpoint),
                                           "onnx_hash": sha256_file(onnx_path)})
        check_out_dir(out, force=force)  # again: the export took a while
        with atomic_dir(out) as d:
            write_bundle(d, onnx_path, sidecar, nms=nms_settings(recipe))
    return {"max_abs_err": parity.max_abs_err, "max_rel_err": parity.max_rel_err}


def checkpoint_keypoints(checkpoint: Path, meta: CheckpointMeta) -> KeypointSpec | None:
    """The sidecar's keypoint block for a pose checkpoint: what training stored, else COCO's 17 person
    keypoints when the model has 17 (checkpoints written before training stored it)."""
    if meta.task != "pose":
        return None
    stored = meta.extra.get("keypoints")
    if stored:
        return KeypointSpec(**stored)
    if meta.num_keypoints == len(COCO_KEYPOINT_NAMES):
        return KeypointSpec(names=list(COCO_KEYPOINT_NAMES), skeleton=list(COCO_SKELETON), sigmas=list(COCO_SIGMAS))
    raise UserError(f"{checkpoint}: a pose checkpoint with {meta.num_keypoints} keypoints but no keypoint names; "
                    "re-train it with this edgevision (training records them), or export it from its recipe with "
                    "`edgevision build`")
