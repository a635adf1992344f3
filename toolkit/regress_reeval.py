"""`edgevision regress --reeval`: score the candidate's bundles again on the recipe's eval split, through the
runtime, instead of trusting the numbers its manifest records.

Reuses the build's own stages, not the build: the data stage (:func:`.stages.data.prepare_data`, through the
candidate build's stage cache when it has one, so a synthetic split is not generated twice) and the
evaluate stage (:func:`.stages.evaluate.evaluate_bundle`, with the recipe's ``eval`` settings) on each bundle
as it is on disk. The evaluation itself is never taken from the cache: that is the point of re-evaluating.
A split whose content hash differs from the one the manifest records is a one-line error, since the
candidate's numbers would then not be comparable with the baseline's.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from edgevision.runtime.bundle import load_bundle
from edgevision.runtime.errors import UserError
from edgevision.runtime.validation import validation_line

from .cache import Cache
from .manifest import MANIFEST_NAME, Manifest, Variant
from .recipe import Recipe


def reevaluate(root: Path, manifest: Manifest, variants: dict[str, Variant], *,
               log: Callable[[str], None] = lambda _s: None) -> dict[str, Variant]:
    """``variants`` with ``metrics`` replaced by a fresh evaluation of each bundle under ``root``."""
    from .stages.data import prepare_data
    from .stages.evaluate import evaluate_bundle

    source = str(root / MANIFEST_NAME)
    try:
        recipe = Recipe.model_validate(manifest.recipe)
    except ValidationError as exc:
        raise UserError(validation_line(f"{source}: recipe", exc, schema=Recipe)) from None
    with tempfile.TemporaryDirectory(prefix="edgevision-reeval-") as tmp:
        cache_root = root / "cache" if (root / "cache").is_dir() else Path(tmp)
        data = prepare_data(recipe.dataset, Cache(cache_root, log=log), task=recipe.task)
        if data.digest != manifest.dataset.hash:
            raise UserError(f"{source}: dataset.hash {manifest.dataset.hash[:12]} but the recipe's eval split now "
                            f"hashes to {data.digest[:12]}; --reeval needs the data the build used")
        ev = recipe.eval
        out: dict[str, Variant] = {}
        for name, v in variants.items():
            bundle = root / v.bundle
            if not bundle.is_dir():
                raise UserError(f"--reeval: {bundle}: bundle of variant {name!r} not found")
            log(f"[regress] re-evaluating {name} on {len(data.val.records)} val images")
            metrics = evaluate_bundle(load_bundle(bundle), data.val, conf=ev.conf, iou=ev.iou, max_det=ev.max_det,
                                      limit=ev.limit)
            fresh = {k: float(x) for k, x in metrics.items() if k.startswith(("map", "kp_map"))}
            out[name] = v.model_copy(update={"metrics": fresh, "metrics_manifest": dict(v.metrics)})
    return out
