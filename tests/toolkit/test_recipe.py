"""Recipe validation: bad input names the key path; good recipes load with resolved paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgevision.runtime.errors import UserError
from edgevision.toolkit.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_shipped_quickstart_recipe_is_valid() -> None:
    r = load_recipe(REPO / "recipes" / "quickstart-detect.yaml")
    assert r.task == "detect" and r.dataset.kind == "synthetic"
    assert r.input_size % 32 == 0


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_validates(path: Path) -> None:
    from edgevision.toolkit.devices import load_profile

    r = load_recipe(path)
    assert r.name == path.stem  # `edgevision build` writes runs/<name>; the README names them by file
    for target in r.targets:
        load_profile(target)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: a\nbogus: 1\n", "bogus: unknown key"),
        ("name: a\ntrain: {epochs: many}\n", "train.epochs:"),
        ("name: a\ntrain: {epochs: 0}\n", "train.epochs:"),
        ("name: a\nexport: {parity: {atol: -1}}\n", "export.parity.atol:"),
        ("name: a\ncompress:\n  - shrink: {}\n", "unknown stage 'shrink'"),
        ("name: a\ncompress:\n  - prune: {ratio: 1.5}\n", "compress[0].prune.ratio:"),
        ("name: a\ncompress:\n  - prune: {}\n", "compress[0].prune: needs a target"),
        ("name: a\ncompress:\n  - prune: {ratio: 0.5}\n  - quantize: {method: best}\n",
         "compress[1].quantize.method:"),
        ("name: a\ncompress:\n  - distill: {epochs: 2, colour: red}\n", "compress[0].distill.colour: unknown key"),
        ("name: a\ncompress:\n  - quantize: {}\n  - prune: {ratio: 0.5}\n", "compress[0]: 'quantize' must be the last"),
        ("name: a\ncompress:\n  - {prune: {ratio: 0.5}, distill: {}}\n", "compress[0]: must be a one-key mapping"),
        ("name: a\ninput_size: 250\n", "input_size: must be a multiple of 32"),
        ("task: detect\n", "name: required key is missing"),
        ("name: a\ndataset: {kind: coco}\n", "dataset.train: required key is missing"),
        ("name: a\ndataset: {kind: yolo}\n", "dataset.data_yaml: required key is missing"),
        ("name: a\ndataset: {kind: coco, num_train: 5, train: {annotations: a}, val: {annotations: b}}\n",
         "dataset.num_train: belongs to kind synthetic, not kind 'coco'"),
        ("name: a\ndataset: {data_yaml: d.yaml}\n", "dataset.data_yaml: belongs to kind yolo, not kind 'synthetic'"),
        ("name: a\ndataset: {kind: lmdb}\n", "dataset.kind: must be one of synthetic, coco, yolo"),
        ("name: a\ndataset: {num_train: 1000000000000}\n",
         "dataset.num_train: Input should be less than or equal to 100000"),
        ("name: a\ndataset: {seed: -1}\n",
         "dataset.seed: Input should be greater than or equal to 0 (allowed range [0, 4294967295])"),
        ("name: a\ndataset: {image_size: 100000}\n", "dataset.image_size: Input should be less than or equal to 4096"),
        ("name: a\ntrain: {epochs: 1000000}\n",
         "train.epochs: Input should be less than or equal to 1000 (allowed range [1, 1000])"),
        ("name: a\ntrain: {lr: .nan}\n", "train.lr: Input should be a finite number (allowed range (0, 10])"),
        ("name: a\ntrain: {seed: -3}\n", "train.seed: Input should be greater than or equal to 0"),
        ("name: a\nbench: {iters: 1000000000}\n", "bench.iters: Input should be less than or equal to 100000"),
        ("name: a\nbench: {warmup: 1000000000}\n", "bench.warmup: Input should be less than or equal to 10000"),
        ("name: a\neval: {max_det: 1000000000}\n", "eval.max_det:"),
        ("name: a\ninput_size: 102400\n", "input_size: Input should be less than or equal to 4096"),
        ("name: a\ncompress:\n  - distill: {epochs: 100000000}\n",
         "compress[0].distill.epochs: Input should be less than or equal to 1000 (allowed range [1, 1000])"),
        ("name: a\ncompress:\n  - quantize: {calib_images: 100000000}\n", "compress[0].quantize.calib_images:"),
        ("name: a\ncompress:\n  - distill: {seed: -1}\n", "compress[0].distill.seed:"),
        ("name: a\nbench: {backends: [tpu]}\n", "bench.backends[0]:"),
        ("name: a\ntrain: {device: gpu}\n", "train.device:"),
    ],
)
def test_bad_recipe_names_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UserError) as err:
        load_recipe(path)
    msg = str(err.value)
    assert str(path) in msg and expected in msg
    assert "\n" not in msg


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\ntrain: {epochs: 3\n")
    with pytest.raises(UserError, match=r"r\.yaml: line \d+: malformed YAML"):
        load_recipe(path)


def test_missing_recipe_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"nope\.yaml: file not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_relative_paths_resolve_against_recipe_folder(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\ndataset:\n  kind: coco\n  train: {annotations: d/train.json}\n"
                           "  val: {annotations: d/val.json, images: d/img}\n")
    r = load_recipe(path)
    assert r.dataset.train is not None and r.dataset.val is not None
    assert r.dataset.train.annotations == (tmp_path / "d/train.json").resolve()
    assert r.dataset.val.images == (tmp_path / "d/img").resolve()


def test_dataset_hash_keeps_its_pre_union_shape(tmp_path: Path) -> None:
    """Caches and bundles built before the dataset section became a tagged union stay valid: the hash is over
    the flat section with every kind's keys, the defaults the flat schema had."""
    r = load_recipe(write(tmp_path, "name: a\n"))
    flat = r._hash_dump()["dataset"]
    assert flat == {"kind": "synthetic", "seed": 0, "num_train": 2000, "num_val": 300, "image_size": 256,
                    "max_objects": 8, "train": None, "val": None, "data_yaml": None}


def test_digest_changes_with_config(tmp_path: Path) -> None:
    a = load_recipe(write(tmp_path, "name: a\ntrain: {epochs: 3}\n")).digest()
    b = load_recipe(write(tmp_path, "name: a\ntrain: {epochs: 4}\n")).digest()
    assert a != b


def test_compress_steps_are_typed_with_defaults_in_the_hash(tmp_path: Path) -> None:
    from edgevision.toolkit.compress.distill_config import DistillConfig
    from edgevision.toolkit.compress.prune_config import PruneConfig
    from edgevision.toolkit.compress.quantize_config import QuantizeConfig

    text = "name: a\ncompress:\n  - prune: {ratio: 0.5}\n  - distill: {teacher: t.pt}\n  - quantize:\n"
    r = load_recipe(write(tmp_path, text))
    steps = r.compress_steps()
    assert [s for s, _ in steps] == ["prune", "distill", "quantize"]
    prune, distill, quant = (c for _, c in steps)
    assert isinstance(prune, PruneConfig) and prune.round_to == 8 and prune.ratio == 0.5
    assert isinstance(distill, DistillConfig) and distill.teacher == (tmp_path / "t.pt").resolve()
    assert isinstance(quant, QuantizeConfig) and quant.method == "percentile"
    explicit = load_recipe(write(tmp_path, text.replace("{ratio: 0.5}", "{ratio: 0.5, round_to: 8}")))
    assert explicit.digest() == r.digest()  # defaults are part of the stored config
    other = load_recipe(write(tmp_path, text.replace("{ratio: 0.5}", "{ratio: 0.5, round_to: 16}")))
    assert other.digest() != r.digest()


def test_training_device_enters_the_cache_key_only_off_cpu(tmp_path: Path) -> None:
    cpu = load_recipe(write(tmp_path, "name: a\n"))
    assert cpu.train.device == "cpu" and "device" not in cpu.train.cache_material()  # older CPU caches stay valid
    gpu = load_recipe(write(tmp_path, "name: a\ntrain: {device: 'cuda:1'}\n"))
    assert gpu.train.cache_material()["device"] == "cuda:1"
    assert {k: v for k, v in gpu.train.cache_material().items() if k != "device"} == cpu.train.cache_material()


def test_a_checkpoint_recipe_reads_back_from_its_dump(tmp_path: Path) -> None:
    """A build's manifest stores ``recipe.model_dump()``, and ``regress --reeval`` validates it again: for a
    checkpoint recipe the dump keeps the default name/size beside the checkpoint (so cache keys stay put), which
    used to be rejected as two model sources. Another name beside a checkpoint is still an error."""
    from edgevision.toolkit.recipe import Recipe

    r = load_recipe(write(tmp_path, "name: a\nmodel: {checkpoint: m.pt}\n"))
    dumped = r.model_dump(mode="json")
    assert dumped["model"] == {"name": "edgedet", "size": "n", "checkpoint": str(tmp_path / "m.pt")}
    again = Recipe.model_validate(dumped)
    assert again == r and again.model.kind == "checkpoint" and again.digest() == r.digest()
    with pytest.raises(UserError, match="name and checkpoint are two model sources"):
        load_recipe(write(tmp_path, "name: a\nmodel: {name: edgedet-x, checkpoint: m.pt}\n"))
    with pytest.raises(UserError, match="size and checkpoint are two model sources"):
        load_recipe(write(tmp_path, "name: a\nmodel: {size: s, checkpoint: m.pt}\n"))
