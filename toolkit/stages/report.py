"""Report stage: ``manifest.json`` (machine-readable, every artifact hashed), ``report.md`` and ``report.html``
(for people; the latter with figures, ``toolkit/report_html.py``).

The manifest is what regression gates read: ``variants.<name>.{bundle, metrics, latency_ms, parity, macs,
params, size_bytes}`` keep their names; new fields are only ever added.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgevision.runtime.backends.trt_plan import rebuild_command
from edgevision.runtime.fsutil import atomic_write_json, atomic_write_text, sha256_file

from ..devices import DeviceProfile
from ..gates import gates_section
from ..manifest import SCHEMA_VERSION, check_manifest
from ..recipe import Recipe
from ..report_html import write_html
from .bundle import tool_versions
from .data import PreparedData

MANIFEST = "manifest.json"
REPORT = "report.md"


def _artifacts(out: Path, variants: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    arts = []
    for v in variants.values():
        for f in sorted((out / v["bundle"]).iterdir()):
            if f.is_file():
                arts.append({"path": str(f.relative_to(out)), "sha256": sha256_file(f), "size_bytes": f.stat().st_size})
    return arts


def _targets(out: Path, profiles: Sequence[DeviceProfile], variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per target: its backend, and for TensorRT targets the command that builds the engine on the device
    (engines are tied to one GPU SM and TensorRT version, so they are built where they run)."""
    targets: dict[str, dict[str, Any]] = {}
    for p in profiles:
        entry: dict[str, Any] = {"backend": p.backend, "default_precision": p.default_precision}
        if p.backend == "tensorrt":
            entry["engine_commands"] = {v: rebuild_command(out / rec["bundle"], p.name) for v, rec in variants.items()}
        targets[p.name] = entry
    return targets


def write_outputs(
    out: Path,
    recipe: Recipe,
    data: PreparedData,
    variants: dict[str, dict[str, Any]],
    profiles: Sequence[DeviceProfile],
    stages: list[dict[str, Any]],
    train_info: dict[str, Any],
    *,
    seconds: float,
) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "name": recipe.name,
        "task": recipe.task,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "recipe": recipe.model_dump(mode="json"),
        "recipe_hash": recipe.digest(),
        "recipe_artifact_hash": recipe.artifact_digest(),
        "dataset": {"hash": data.digest, "train_images": len(data.train.records),
                    "val_images": len(data.val.records), "classes": list(data.train.class_names),
                    "train_annotations": str(data.train.ann_file), "val_annotations": str(data.val.ann_file)},
        "training": train_info,
        "variants": variants,
        "targets": _targets(out, profiles, variants),
        "artifacts": _artifacts(out, variants),
        "stages": stages,
        "tools": tool_versions(),
        "build_seconds": round(seconds, 2),
    }
    typed = check_manifest(manifest, str(out / MANIFEST))  # the writer obeys the schema every reader checks
    atomic_write_json(out / MANIFEST, manifest)
    atomic_write_text(out / REPORT, render_report(manifest))
    write_html(out, typed)  # report.html beside report.md (figures embedded)
    return manifest


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return "-" if v is None else str(v)


def _metric_columns(m: dict[str, Any]) -> list[tuple[str, str]]:
    cols = [("map50_95", "mAP50-95"), ("map50", "mAP50")]
    if m["task"] == "pose":
        cols = [("kp_map50_95", "OKS AP"), ("kp_map50", "OKS AP50"), *cols]
    return cols


def _parity(v: dict[str, Any]) -> str:
    p = v.get("parity") or {}
    if "max_abs_err" in p:
        return f"{p['max_abs_err']:.2e}"
    if "max_abs_err_box_px" in p:
        return f"box {p['max_abs_err_box_px']:.2f} px, score {p['max_abs_err_scores']:.3f}"
    return "-"


def render_report(m: dict[str, Any]) -> str:
    cols = _metric_columns(m)
    lines = [f"# edgevision build report: {m['name']}", "",
             f"Task `{m['task']}`, built {m['created']} in {m['build_seconds']:.0f} s; recipe hash "
             f"`{m['recipe_hash'][:12]}`.", "",
             f"Dataset: {m['dataset']['train_images']} train / {m['dataset']['val_images']} val images, "
             f"{len(m['dataset']['classes'])} classes ({', '.join(m['dataset']['classes'])}).", "",
             "## Variants", "",
             "| variant | precision | " + " | ".join(c[1] for c in cols) + " | latency median / p90 / p99 (ms) "
             "| ORT/torch | ORT vs original | MACs (M) | params (k) | ONNX size (KiB) | parity (vs torch / FP32) |",
             "|---|---|" + "---|" * len(cols) + "---|---|---|---|---|---|---|"]
    for name, v in m["variants"].items():
        lat = "<br>".join(f"{b}: {s['median']:.2f} / {s['p90']:.2f} / {s['p99']:.2f}"
                          for b, s in v["latency_ms"].items())
        ort = v["latency_ms"].get("onnxruntime-cpu", {})
        lines.append(
            f"| {name} | {v.get('precision', 'fp32')} | "
            + " | ".join(_fmt(v["metrics"].get(k)) for k, _ in cols)
            + f" | {lat} | {_fmt(ort.get('vs_torch'), 2)} | {_fmt(ort.get('vs_original'), 2)} "
            f"| {v['macs'] / 1e6:.1f} | {v['params'] / 1e3:.1f} | {v['size_bytes'] / 1024:.0f} | {_parity(v)} |"
        )
    lines += _compression_notes(m["variants"])
    lines += gates_section(m)
    lines += ["", "Accuracy is measured on the deployed artifact: the bundle's ONNX model through the "
              "runtime's ONNX Runtime backend and postprocessing, scored with pycocotools.", "",
              "## Targets", ""]
    for name, t in m["targets"].items():
        lines.append(f"- `{name}`: backend {t['backend']}, default precision {t['default_precision']}")
        for cmd in t.get("engine_commands", {}).values():
            lines.append(f"  - on the device: `{cmd}`")
    lines += ["", "## Stages", "", "| stage | key | cached | seconds |", "|---|---|---|---|"]
    for s in m["stages"]:
        lines.append(f"| {s['stage']} | `{s['key']}` | {'yes' if s['cached'] else 'no'} | {s['seconds']:.1f} |")
    losses = m["training"].get("epoch_losses")
    if losses:
        lines += ["", f"Training: {len(losses)} epochs, loss {losses[0]:.3f} -> {losses[-1]:.3f}"
                  + (f" in {m['training']['train_seconds']:.0f} s." if "train_seconds" in m["training"] else ".")]
    lines += ["", "## Tools", "", ", ".join(f"{k} {v}" for k, v in m["tools"].items()), ""]
    return "\n".join(lines)


def _compression_notes(variants: dict[str, dict[str, Any]]) -> list[str]:
    """What each compression step did: MACs cut, teacher or not, which layers INT8 left in float and why."""
    out: list[str] = []
    for name, v in variants.items():
        c = v.get("compress")
        if not c:
            continue
        stage = c.get("stage")
        if stage == "prune":
            out.append(f"- `{name}` (prune, step {c['step']}): MACs {c.get('base_macs', 0) / 1e6:.0f} M -> "
                       f"{c.get('macs', 0) / 1e6:.0f} M ({c.get('macs_reduction', 0):.2f}x fewer), importance "
                       f"{c.get('importance', '-')}; accuracy before any fine-tuning.")
        elif stage == "distill":
            how = "distilled from the teacher" if c.get("teacher") else "plain fine-tune (no teacher)"
            out.append(f"- `{name}` (step {c['step']}): {how}, {c.get('epochs', '-')} epochs.")
        elif stage == "quantize" and not c.get("fp16"):
            qat = c.get("qat")
            how = (f"QAT {qat['epochs']} epoch(s){' distilled from the float model' if qat.get('distill') else ''}, "
                   "then " if qat else "")
            out.append(f"- `{name}` (INT8 Q/DQ, {how}{c.get('method')} calibration on {c.get('calib_images')} images): "
                       f"{c.get('quantized_layers')} of {c.get('weighted_layers')} weighted layers in INT8; "
                       "TensorRT Q/DQ check passed.")
            literal = v.get("metrics_tensorrt_qdq") or {}
            key = "kp_map50_95" if "kp_map50_95" in literal else "map50_95"
            if key in literal:
                out.append(f"  - as a TensorRT engine computes it (the Q/DQ graph run literally, without the "
                           f"CPU-only Q/DQ pairs): {key} {literal[key]:.3f} (ONNX Runtime CPU: "
                           f"{_fmt(v['metrics'].get(key))}).")
            if "drop_points" in c:
                out.append(f"  - accuracy budget: drop {c['drop_points']:.2f} points on the sensitivity set "
                           f"(max_drop {c['max_drop']}), {'met' if c['budget_met'] else 'NOT met'}.")
            for layer, why in c.get("float_layers", {}).items():
                out.append(f"  - float: `{layer}`: {why}")
        elif stage == "quantize":
            out.append(f"- `{name}`: FP16 ONNX (float32 I/O) for TensorRT strongly typed builds.")
    return ["", "## Compression", "", *out] if out else []
