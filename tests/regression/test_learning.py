"""Regression gate: a tiny build must learn — mAP well above what random boxes score on the same split.

The full quickstart numbers come from `edgevision build recipes/quickstart-detect.yaml` (report.md); this
is the cheap version CI can afford (~40 s): small images, the smallest model, a few hundred images
(the recipe is in conftest.py, shared with the regression gate of test_gate.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgevision.runtime.results import Detections
from edgevision.toolkit.data.coco import load_coco
from edgevision.toolkit.stages.evaluate import coco_map, detections_to_coco


def random_boxes_map(ann: Path, seed: int = 0) -> float:
    """mAP50 of 20 random boxes per image with random classes: the chance level for this split."""
    ds = load_coco(ann)
    rng = np.random.default_rng(seed)
    results = []
    for rec in ds.records:
        xy = rng.uniform(0, [rec.width, rec.height], size=(20, 2))
        wh = rng.uniform(4, [rec.width / 2, rec.height / 2], size=(20, 2))
        d = Detections(np.concatenate([xy, xy + wh], 1), rng.uniform(0, 1, 20),
                       rng.integers(0, len(ds.class_names), 20))
        results += detections_to_coco(rec.image_id, d, ds.cat_ids)
    return coco_map(ann, results)["map50"]


@pytest.mark.slow
def test_tiny_build_learns_well_above_chance(tiny_build: tuple[Path, dict[str, Any]]) -> None:
    _, manifest = tiny_build
    losses = manifest["training"]["epoch_losses"]
    assert losses[-1] < 0.6 * losses[0], losses
    chance = random_boxes_map(Path(manifest["dataset"]["val_annotations"]))
    got = manifest["variants"]["fp32"]["metrics"]["map50"]
    assert got > max(0.03, 5 * chance), (got, chance)
