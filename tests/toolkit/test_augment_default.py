"""One augmentation default: leaving `train.augment` out, copying any shipped recipe's `augment` line and
the data loader's own default all give the same strengths (flip only)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from edgevision.toolkit.data.augment import AugmentConfig
from edgevision.toolkit.recipe import AugmentSection, Recipe, load_recipe

# the built-in-model recipes (an `ultralytics:` model is trained by Ultralytics, with its own augmentation)
RECIPES = [p for p in sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))
           if p.name.startswith(("quickstart", "quantize", "prune", "compress"))]


def test_loader_default_is_the_recipe_default() -> None:
    cfg = asdict(AugmentConfig())
    assert {k: cfg[k] for k in AugmentSection.model_fields} == AugmentSection().model_dump()
    assert AugmentSection().model_dump() == {"flip": 0.5, "hsv_h": 0, "hsv_s": 0, "hsv_v": 0, "scale": 0,
                                             "translate": 0}


def test_leaving_augment_out_gives_the_default() -> None:
    assert Recipe.model_validate({"name": "x"}).train.augment == AugmentSection()


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_edgevision_recipes_use_the_default(path: Path) -> None:
    """Copying a quickstart (or any built-in-model recipe) for your own data gives what leaving it out gives."""
    assert load_recipe(path).train.augment == AugmentSection()
