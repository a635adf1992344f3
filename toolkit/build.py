"""`edgevision build`: run a recipe's stages in order, each cached by a content hash of inputs + config.

data -> train -> per variant (``stages/variant.py``: export (+ parity) -> bundle -> evaluate (on the runtime) ->
bench) -> compression chain (``compress/chain.py``) -> manifest + report -> gates. This module only checks the
recipe up front and sequences the stages; each stage lives in ``stages/`` (or ``compress/``).
Every stage's output lives in ``OUT/cache/<stage>/<key>/`` and is written atomically, so a rerun of an
unchanged recipe only re-reads the cache, a config change reruns that stage and what follows, and a killed
build resumes at the first stage it lacks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevision.runtime.errors import UserError

from .cache import Cache
from .devices import load_profile
from .gates import check_gate_names
from .models.registry import get_model_spec
from .models.sources import prepare
from .recipe import Recipe, load_recipe
from .stages.data import prepare_data
from .stages.gates import gates_stage
from .stages.report import write_outputs
from .stages.train import CHECKPOINT, train_stage
from .stages.variant import build_variant


@dataclass
class BuildResult:
    out: Path
    manifest: dict[str, Any]


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
