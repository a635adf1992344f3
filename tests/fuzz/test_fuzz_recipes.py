"""Fuzzed recipes: every number out of its range, keys of the wrong kind or section, bad models.

Each case runs ``edgevision build RECIPE --out OUT`` in-process: exit 2, one line naming the key, no traceback,
and nothing written (OUT is never created, no cache)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis", reason="the fuzz suite needs hypothesis (pip install -e .[test])")
from fuzz_harness import expect_user_error, fuzz_settings  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# (key path, lowest allowed, highest allowed, integer?, lower bound open?) for every bounded recipe number.
NUMBERS: list[tuple[str, float, float, bool, bool]] = [
    ("input_size", 32, 4096, True, False),
    ("dataset.seed", 0, 2**32 - 1, True, False),
    ("dataset.num_train", 1, 100_000, True, False),
    ("dataset.num_val", 1, 100_000, True, False),
    ("dataset.image_size", 32, 4096, True, False),
    ("dataset.max_objects", 1, 100, True, False),
    ("train.epochs", 1, 1000, True, False),
    ("train.batch", 1, 1024, True, False),
    ("train.lr", 0, 10, False, True),
    ("train.weight_decay", 0, 1, False, False),
    ("train.warmup_epochs", 0, 1000, False, False),
    ("train.seed", 0, 2**32 - 1, True, False),
    ("train.num_threads", 0, 1024, True, False),
    ("train.augment.flip", 0, 1, False, False),
    ("train.augment.hsv_h", 0, 0.5, False, False),
    ("train.augment.translate", 0, 0.5, False, False),
    ("export.opset", 11, 21, True, False),
    ("export.parity.samples", 1, 1000, True, False),
    ("export.parity.atol", 0, 1000, False, True),
    ("postprocess.conf", 0, 1, False, False),
    ("postprocess.iou", 0, 1, False, True),
    ("postprocess.max_det", 1, 10_000, True, False),
    ("eval.conf", 0, 1, False, False),
    ("eval.max_det", 1, 10_000, True, False),
    ("eval.limit", 1, 1_000_000, True, False),
    ("bench.warmup", 0, 10_000, True, False),
    ("bench.iters", 1, 100_000, True, False),
    ("bench.threads", 0, 1024, True, False),
    ("compress[0].prune.ratio", 0, 1, False, True),
    ("compress[0].prune.steps", 1, 100, True, False),
    ("compress[0].prune.round_to", 1, 256, True, False),
    ("compress[0].prune.calib_batches", 1, 10_000, True, False),
    ("compress[0].distill.epochs", 1, 1000, True, False),
    ("compress[0].distill.lr", 0, 10, False, True),
    ("compress[0].distill.temperature", 0, 100, False, True),
    ("compress[0].distill.seed", 0, 2**32 - 1, True, False),
    ("compress[0].distill.cls_weight", 0, 1000, False, False),
    ("compress[0].quantize.calib_images", 1, 100_000, True, False),
    ("compress[0].quantize.sensitivity_images", 1, 100_000, True, False),
    ("compress[0].quantize.max_drop", 0, 100, False, False),
]


def recipe_with(path: str, value: Any) -> dict[str, Any]:
    """A minimal valid recipe with ``value`` at ``path`` (``compress[0].stage.key`` makes a one-step chain)."""
    recipe: dict[str, Any] = {"name": "fz"}
    if path.startswith("compress[0]."):
        _, stage, key = path.split(".")
        body: dict[str, Any] = {"ratio": 0.5} if stage == "prune" and key != "ratio" else {}
        body[key] = value
        recipe["compress"] = [{stage: body}]
        return recipe
    *parents, leaf = path.split(".")
    node = recipe
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return recipe


@st.composite
def out_of_range(draw: st.DrawFn) -> tuple[str, Any]:
    path, lo, hi, integer, lo_open = draw(st.sampled_from(NUMBERS))
    below = (st.integers(max_value=math.ceil(lo) - (0 if lo_open else 1), min_value=-(10**15)) if integer
             else st.floats(max_value=lo, exclude_max=not lo_open, min_value=-1e300))
    above = (st.integers(min_value=int(hi) + 1, max_value=10**30) if integer
             else st.floats(min_value=hi, exclude_min=True, max_value=1e300))
    value = draw(st.one_of(below, above, st.sampled_from([math.nan, math.inf, -math.inf]),
                           st.sampled_from(["many", "", [1, 2], {"a": 1}, None])))
    return path, value


def _build(tmp: Path, recipe: dict[str, Any], must_contain: str, category: str) -> str:
    path = tmp / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return expect_user_error(category, ["build", str(path), "--out", str(tmp / "out")], tmp,
                             must_contain=must_contain)


@fuzz_settings(160)  # type: ignore[misc]
@given(out_of_range())
def test_every_recipe_number_is_bounded(case: tuple[str, Any]) -> None:
    path, value = case
    with tempfile.TemporaryDirectory() as tmp:
        line = _build(Path(tmp), recipe_with(path, value), path, "recipe-number")
        if value is not None and not isinstance(value, str | list | dict) and not math.isnan(value):
            assert "allowed range" in line or "finite" in line or "multiple of 32" in line, line


SECTIONS = ["", "model.", "dataset.", "train.", "train.augment.", "export.", "export.parity.", "postprocess.",
            "eval.", "bench.", "compress[0].prune.", "compress[0].distill.", "compress[0].quantize."]
_KEY = st.from_regex(r"\A[a-z][a-z0-9_]{0,12}\Z")
_KNOWN = {"name", "task", "model", "input_size", "dataset", "train", "export", "postprocess", "eval", "bench",
          "targets", "compress", "size", "checkpoint", "kind", "seed", "num_train", "num_val", "image_size",
          "max_objects", "val", "data_yaml", "epochs", "batch", "lr", "weight_decay", "warmup_epochs",
          "augment", "optimizer", "ema", "num_threads", "device", "flip", "hsv_h", "hsv_s", "hsv_v", "scale",
          "translate", "opset", "dynamic_batch", "simplify", "parity", "nms", "samples", "atol", "rtol", "conf",
          "iou", "max_det", "limit", "warmup", "iters", "threads", "backends", "time", "source", "ultralytics",
          "module", "onnx", "weights"}


@fuzz_settings(60)  # type: ignore[misc]
@given(st.sampled_from(SECTIONS), _KEY.filter(lambda k: k not in _KNOWN))
def test_unknown_keys_are_named(section: str, key: str) -> None:
    from edgevision.toolkit.compress.distill_config import DistillConfig
    from edgevision.toolkit.compress.prune_config import PruneConfig
    from edgevision.toolkit.compress.quantize_config import QuantizeConfig

    known = {**PruneConfig.model_fields, **DistillConfig.model_fields, **QuantizeConfig.model_fields}
    if section.startswith("compress") and key in known:
        return
    with tempfile.TemporaryDirectory() as tmp:
        _build(Path(tmp), recipe_with(section + key, 1), f"{section}{key}", "recipe-key")


OTHER_KIND = [
    ({"kind": "coco", "train": {"annotations": "a.json"}, "val": {"annotations": "b.json"}},
     ["seed", "num_train", "num_val", "image_size", "max_objects", "data_yaml"]),
    ({"kind": "yolo", "data_yaml": "d.yaml"}, ["seed", "num_train", "num_val", "image_size", "max_objects", "train"]),
    ({"kind": "synthetic"}, ["data_yaml", "train", "val"]),
]


@pytest.mark.parametrize(("base", "keys"), OTHER_KIND, ids=lambda v: str(v)[:20])
def test_dataset_keys_of_another_kind(tmp_path: Path, base: dict[str, Any], keys: list[str]) -> None:
    for key in keys:
        d = tmp_path / key
        d.mkdir()
        _build(d, {"name": "fz", "dataset": {**base, key: 1}}, f"dataset.{key}: belongs to kind", "recipe-kind")


@pytest.mark.parametrize(("section", "expected"), [
    ({"model": {"size": "xxl"}}, "model: model 'edgedet' has no size 'xxl'"),
    ({"model": {"name": "resnet9000"}}, "unknown model 'resnet9000'"),
    ({"compress": [{"distill": {"student": "edgedet-q"}}]}, "compress[0].distill.student"),
    ({"targets": ["jetson-tx9"]}, "jetson-tx9"),
    ({"model": {"checkpoint": "missing.pt"}}, "model.checkpoint:"),
    ({"compress": [{"distill": {"teacher": "gone.pt"}}]}, "compress[0].distill.teacher:"),
    ({"task": "segment"}, "task:"),
    ({"name": "x" * 101}, "name:"),
    ({"name": "../../etc"}, "name:"),
    ({"dataset": {"kind": "lmdb"}}, "dataset.kind: must be one of"),
    ({"dataset": {"kind": "coco"}}, "dataset.train: required key is missing"),
    ({"dataset": None}, "dataset"),
    ({"train": {"device": "tpu"}}, "train.device"),
    ({"compress": [{"quantize": {}}, {"prune": {"ratio": 0.5}}]}, "'quantize' must be the last"),
])
def test_scripted_bad_recipes(tmp_path: Path, section: dict[str, Any], expected: str) -> None:
    _build(tmp_path, {"name": "fz", **section}, expected, "recipe-scripted")


@pytest.mark.parametrize("text", ["name: [1,\n", "- just\n- a list\n", "", "name: a\n\tbad: tab\n", "\x00\x01",
                                  "name: a\nname: b\ntrain: {epochs: *undefined}\n"])
def test_malformed_recipe_files(tmp_path: Path, text: str) -> None:
    (tmp_path / "r.yaml").write_text(text)
    expect_user_error("recipe-file", ["build", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "out")],
                      tmp_path, must_contain="r.yaml")
