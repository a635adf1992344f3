"""Per-class AP and precision-recall curves of the evaluate stage, kept so the report plots without
re-evaluating.

From pycocotools' ``COCOeval.eval['precision']`` (``[IoU thresholds, 101 recall points, classes, area
ranges, max-detection caps]``, -1 where a class has no ground truth) only the slice the report shows is
kept: area ``all``, the last max-detection cap (the one the metrics use), per class the precision at IoU
0.5 and the mean over IoU 0.5:0.95, on the 101-point recall grid. That is 2 x 101 floats per class (about
2 KB per class in JSON), against the 10 x 101 x 4 x 3 of the full array. Per-class AP is the mean of the
same slice, so it equals what COCOeval's summary computes for the one class.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgevision.runtime.fsutil import atomic_write_bytes, atomic_write_json

CURVES_FILE = "pr_curves.json"
CURVES_VERSION = 1


def _mean(a: np.ndarray) -> float | None:
    a = a[a > -1]
    return round(float(a.mean()), 6) if a.size else None


def pr_curves(ev: Any) -> dict[str, Any]:
    """The report's slice of an accumulated ``COCOeval`` (module docstring): per class, AP and PR curves."""
    prec = np.asarray(ev.eval["precision"])[:, :, :, ev.params.areaRngLbl.index("all"), -1]  # [T, R, K]
    thr = [round(float(t), 2) for t in ev.params.iouThrs]
    at50 = prec[thr.index(0.5)]  # [R, K]
    valid = np.where(prec > -1, prec, np.nan)
    with warnings.catch_warnings():  # "Mean of empty slice" for a class without ground truth: NaN is right
        warnings.simplefilter("ignore", RuntimeWarning)
        over = np.nanmean(valid, axis=0)  # [R, K]: mean over IoU thresholds
    names = [str(ev.cocoGt.cats[c]["name"]) for c in ev.params.catIds]
    classes = []
    for k, name in enumerate(names):
        has_gt = bool((prec[:, :, k] > -1).any())
        classes.append({
            "name": name,
            "ap50": _mean(at50[:, k]),
            "ap50_95": _mean(prec[:, :, k]),
            "precision50": [round(float(v), 4) for v in at50[:, k]] if has_gt else [],
            "precision50_95": [round(float(v), 4) for v in over[:, k]] if has_gt else [],
        })
    return {"recall": [round(float(r), 4) for r in ev.params.recThrs], "classes": classes}


def write_curves(directory: Path, curves: dict[str, dict[str, Any]]) -> Path:
    """``directory/pr_curves.json``: ``{"version", "bbox": {...}, "keypoints": {...}}`` (keypoints for pose)."""
    path = directory / CURVES_FILE
    atomic_write_json(path, {"version": CURVES_VERSION, **curves})
    return path


def publish_curves(eval_dir: Path, out: Path, variant: str) -> dict[str, Any]:
    """Copy the evaluate stage's curves to ``out/eval/VARIANT/`` and return the manifest fields:
    ``ap_per_class`` (``{class: {ap50, ap50_95}}``, boxes) and ``eval_curves`` (path relative to ``out``).
    An evaluation cached before curves were kept has none: ``{}``."""
    src = eval_dir / CURVES_FILE
    if not src.is_file():
        return {}
    dest = out / "eval" / variant / CURVES_FILE
    raw = src.read_bytes()
    atomic_write_bytes(dest, raw)
    data = json.loads(raw)
    boxes = data.get("bbox", {}).get("classes", [])
    per_class = {c["name"]: {"ap50": c["ap50"], "ap50_95": c["ap50_95"]} for c in boxes}
    return {"ap_per_class": per_class, "eval_curves": dest.relative_to(out).as_posix()}


def load_curves(path: Path) -> dict[str, Any] | None:
    """The curves file, or None when it is missing or unreadable (the report then omits the PR section)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("version") == CURVES_VERSION else None
