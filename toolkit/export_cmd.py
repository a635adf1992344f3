"""`edgevision export CHECKPOINT --out BUNDLE`: one checkpoint to a deployable bundle, outside a build."""

from __future__ import annotations

import tempfile
from pathlib import Path

from edgevision.runtime.errors import UserError
from edgevision.runtime.fsutil import atomic_dir, sha256_file

from .checkpoint import load_checkpoint
from .models.registry import get_model_spec
from .recipe import ExportConfig, ModelConfig, Recipe
from .stages.bundle import make_sidecar, write_bundle
from .stages.export import check_parity, export_onnx


def export_checkpoint(checkpoint: Path, out: Path, *, opset: int = 17, dynamic_batch: bool = False,
                      simplify: bool = True) -> dict[str, float]:
    model, meta = load_checkpoint(checkpoint)
    recipe = Recipe(name=out.name or "model", task=meta.task,  # type: ignore[arg-type]
                    model=ModelConfig(name=meta.model, size=meta.size), input_size=meta.input_size,
                    export=ExportConfig(opset=opset, dynamic_batch=dynamic_batch, simplify=simplify))
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_onnx(model, meta.input_size, onnx_path, opset=opset, dynamic_batch=dynamic_batch,
                    simplify=simplify)
        parity = check_parity(model, onnx_path, meta.input_size)
        if not parity.ok:
            raise UserError(f"{checkpoint}: torch and ONNX Runtime disagree (max abs err "
                            f"{parity.max_abs_err:.3g}); not writing {out}")
        sidecar = make_sidecar(recipe, get_model_spec(meta.model), meta.class_names,
                               provenance={"checkpoint_hash": sha256_file(checkpoint),
                                           "onnx_hash": sha256_file(onnx_path)})
        with atomic_dir(out) as d:
            write_bundle(d, onnx_path, sidecar)
    return {"max_abs_err": parity.max_abs_err, "max_rel_err": parity.max_rel_err}
