"""The tiny recipe both regression tests share, built once per session (~40 s on 2 cores)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

RECIPE = """\
name: learns
model: {name: edgedet, size: p}
input_size: 96
dataset: {kind: synthetic, seed: 5, num_train: 400, num_val: 40, image_size: 96, max_objects: 3}
train:
  epochs: 15
  batch: 16
  lr: 0.003
  num_threads: 2
  augment: {flip: 0.5, hsv_h: 0, hsv_s: 0, hsv_v: 0, scale: 0, translate: 0}
bench: {warmup: 1, iters: 2, backends: [onnxruntime-cpu]}
targets: [x86-cpu]
"""


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """(build directory, manifest) of the tiny recipe."""
    from edgevision.toolkit.build import build

    root = tmp_path_factory.mktemp("tiny-build")
    recipe = root / "learns.yaml"
    recipe.write_text(RECIPE)
    result = build(recipe, root / "out", log=lambda m: None)
    return result.out, result.manifest
