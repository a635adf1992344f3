"""Per-class AP and PR curves kept by the evaluate stage equal pycocotools' own per-class evaluation."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgevision.toolkit.stages.eval_curves import load_curves, publish_curves, write_curves
from edgevision.toolkit.stages.evaluate import coco_map


def _coco(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    rng = np.random.default_rng(0)
    images, anns, results = [], [], []
    for i in range(1, 9):
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 200, "height": 200})
        for j in range(3):
            cat = 1 + (i + j) % 2  # categories 1 and 2; category 3 has no ground truth
            x, y, w, h = (float(v) for v in rng.uniform(10, 120, 4))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat, "bbox": [x, y, w + 10, h + 10],
                         "area": (w + 10) * (h + 10), "iscrowd": 0})
            jit = rng.normal(0, 6 if cat == 1 else 14, 4)
            results.append({"image_id": i, "category_id": cat, "score": float(rng.uniform(0.3, 1)),
                            "bbox": [x + jit[0], y + jit[1], w + 10 + jit[2], h + 10 + jit[3]]})
        results.append({"image_id": i, "category_id": 3, "score": 0.2, "bbox": [1.0, 1.0, 20.0, 20.0]})
    cats = [{"id": c, "name": n} for c, n in ((1, "cat"), (2, "dog"), (3, "emu"))]
    ann = tmp_path / "gt.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return ann, results


def _one_class(ann: Path, results: list[dict[str, Any]], cat: int) -> tuple[float, float]:
    """pycocotools' summary (AP50-95, AP50) with only ``cat`` evaluated: the independent reference."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann))
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.params.catIds = [cat]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0]), float(ev.stats[1])


def test_per_class_ap_matches_pycocotools_and_publishes(tmp_path: Path) -> None:
    ann, results = _coco(tmp_path)
    curves: dict[str, Any] = {}
    overall = coco_map(ann, results, curves=curves)
    box = curves["bbox"]
    assert [c["name"] for c in box["classes"]] == ["cat", "dog", "emu"] and len(box["recall"]) == 101
    for cat, c in zip((1, 2), box["classes"][:2], strict=True):
        ap, ap50 = _one_class(ann, results, cat)
        assert c["ap50_95"] == pytest.approx(ap, abs=1e-5) and c["ap50"] == pytest.approx(ap50, abs=1e-5)
        assert len(c["precision50"]) == len(c["precision50_95"]) == 101
    assert box["classes"][0]["ap50_95"] > box["classes"][1]["ap50_95"]  # the class with smaller jitter
    emu = box["classes"][2]
    assert emu["ap50"] is None and emu["precision50"] == []  # no ground truth: no AP, no curve
    # the mean over classes with ground truth is the headline number
    assert np.mean([c["ap50_95"] for c in box["classes"][:2]]) == pytest.approx(overall["map50_95"], abs=1e-5)

    out = tmp_path / "build"
    write_curves(tmp_path / "stage", curves)
    rec = publish_curves(tmp_path / "stage", out, "fp32")
    assert rec["eval_curves"] == "eval/fp32/pr_curves.json" and load_curves(out / rec["eval_curves"]) is not None
    assert rec["ap_per_class"]["cat"] == {"ap50": box["classes"][0]["ap50"], "ap50_95": box["classes"][0]["ap50_95"]}
    assert publish_curves(tmp_path / "no-curves", out, "int8") == {}  # an evaluation cached before curves
