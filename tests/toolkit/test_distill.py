"""Distill stage: KD terms vanish for a student equal to its teacher and are positive otherwise, the
teacher runs in eval mode yet yields raw maps, layout mismatches are named errors, and a 2:4-sparse student
keeps its pattern through fine-tuning, checkpointing and reloading."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, cast

import pytest
import torch
from torch import nn

from edgevision.runtime.errors import UserError
from edgevision.toolkit.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from edgevision.toolkit.compress import sparsity
from edgevision.toolkit.compress.distill import (
    DistillLoss,
    distill_checkpoint,
    distill_terms,
    fit_adapters_,
    frozen_teacher,
    kd_scale,
    make_adapters,
    object_mask,
)
from edgevision.toolkit.compress.distill_config import DistillConfig
from edgevision.toolkit.compress.prune import prune_checkpoint
from edgevision.toolkit.compress.prune_config import PruneConfig
from edgevision.toolkit.data.coco import CocoDataset, load_coco
from edgevision.toolkit.data.synthetic import generate_detection_dataset
from edgevision.toolkit.models import build_model
from edgevision.toolkit.recipe import TrainConfig

S = 64
WHERE = "compress[1].distill"
NAMES = ["circle", "rectangle", "triangle", "star", "cross", "ring"]


def _model(nc: int = 6, nk: int = 0, seed: int = 0, size: str = "p") -> nn.Module:
    torch.manual_seed(seed)
    return build_model("edgedet", size, num_classes=nc, num_keypoints=nk).eval()


def _raw(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    return cast(list[torch.Tensor], frozen_teacher(model)(x))


@pytest.mark.parametrize("nk", [0, 2])
def test_terms_zero_for_identical_positive_otherwise(nk: int) -> None:
    teacher = _model(nk=nk)
    x = torch.rand(2, 3, S, S)
    t_maps = _raw(teacher, x)
    same = distill_terms(_raw(copy.deepcopy(teacher), x), t_maps, nc=6, nk=nk, reg_max=16, temperature=2.0)
    assert set(same) == ({"cls", "box", "kpt"} if nk else {"cls", "box"})
    assert all(float(v) == 0.0 for v in same.values()), same
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    other = distill_terms(_raw(student, x), t_maps, nc=6, nk=nk, reg_max=16)
    assert all(float(v) > 0 for v in other.values()), other


def test_object_mask_marks_anchor_centres_inside_boxes() -> None:
    targets = torch.tensor([[0, 1, 8.0, 8.0, 40.0, 24.0], [1, 0, 33.0, 33.0, 63.0, 63.0]])
    fg = object_mask(targets, [(8, 8), (4, 4), (2, 2)], (8, 16, 32), 2)
    assert fg.shape == (2, 64 + 16 + 4)
    p3 = fg[0, :64].view(8, 8)  # stride 8: centres 4, 12, 20, ... -> x in 12..36, y in 12..20
    assert p3.sum() == 8 and p3[1:3, 1:5].all()
    assert fg[1, 64 + 16 :].tolist() == [0, 0, 0, 1]  # stride 32: only the centre (48, 48)
    assert object_mask(torch.zeros(0, 6), [(8, 8)], (8,), 3).shape == (3, 64)


def test_kd_scale_schedules() -> None:
    assert kd_scale(5, 10, "constant", 1.0) == 1.0
    assert kd_scale(0, 10, "cosine", 1.0) == 1.0 and kd_scale(5, 10, "cosine", 1.0) == pytest.approx(0.5)
    assert kd_scale(3, 10, "linear", 0.6) == pytest.approx(0.5) and kd_scale(8, 10, "linear", 0.6) == 0.0


@pytest.mark.parametrize("nk", [0, 2])
def test_object_region_terms_zero_for_identical_and_ignore_background(nk: int) -> None:
    teacher = _model(nk=nk)
    x = torch.rand(2, 3, S, S)
    t_maps = _raw(teacher, x)
    n = sum(m.shape[2] * m.shape[3] for m in t_maps)
    fg = torch.zeros(2, n)
    fg[:, :10] = 1.0
    same = distill_terms(_raw(copy.deepcopy(teacher), x), t_maps, nc=6, nk=nk, reg_max=16, fg=fg)
    assert all(float(v) == 0.0 for v in same.values()), same
    if nk:
        return
    student = [m.clone() for m in t_maps]
    student[0][:, 4 * 16 :, -1, -1] += 5.0  # background anchor, object region untouched: no box term
    off = distill_terms(student, t_maps, nc=6, nk=0, reg_max=16, fg=fg)
    assert float(off["box"]) == 0.0 and float(off["cls"]) >= 0.0


def test_adapters_fit_a_linear_map() -> None:
    torch.manual_seed(0)
    s = [torch.randn(2, 4, 8, 8)]
    mix = torch.randn(6, 4)
    t = [torch.einsum("oc,bchw->bohw", mix, s[0]) + 0.5]
    adapters = torch.nn.ModuleList([torch.nn.Conv2d(4, 6, 1)])
    fit_adapters_(adapters, s, t)
    assert torch.allclose(adapters[0](s[0]), t[0], atol=1e-2)  # ridge-regularised: near, not exact


@pytest.mark.parametrize("region", ["all", "object"])
def test_distill_loss_with_features_is_task_loss_for_identical_student(region: str) -> None:
    student = _model()
    teacher = frozen_teacher(copy.deepcopy(student))
    cfg = DistillConfig(feature_weight=1.0, gt_weight=0.0, region=region)
    adapters = make_adapters(student, teacher, S)
    loss = DistillLoss(student, teacher, cfg, task=lambda p, t: (p[0].sum() * 0, torch.zeros(3)), adapters=adapters)
    student.eval()
    student.head.training = True  # type: ignore[union-attr]
    x = torch.rand(2, 3, S, S)
    targets = torch.tensor([[0, 1, 4.0, 4.0, 40.0, 30.0]])
    total, items = loss(cast(list[torch.Tensor], student(x)), targets, x)
    loss.close()
    assert float(total.detach()) == 0.0 and items.shape == (3 + 3,) and float(items[3:].abs().sum()) == 0.0


def test_teacher_is_eval_but_returns_raw_maps() -> None:
    teacher = frozen_teacher(_model())
    bn = next(m for m in teacher.modules() if isinstance(m, nn.BatchNorm2d))
    before = bn.running_mean.clone()  # type: ignore[union-attr]
    out = teacher(torch.rand(2, 3, S, S))
    assert isinstance(out, list) and len(out) == 3 and out[0].shape[1] == 4 * 16 + 6
    assert not bn.training and torch.equal(bn.running_mean, before)  # type: ignore[arg-type]
    assert all(not p.requires_grad for p in teacher.parameters())


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> CocoDataset:
    paths = generate_detection_dataset(tmp_path_factory.mktemp("syn"), num_train=8, num_val=2, image_size=S,
                                       seed=0, max_objects=3)
    return load_coco(paths.train_json)


def _save(path: Path, model: nn.Module, nc: int = 6, nk: int = 0, size: str = "p") -> Path:
    save_checkpoint(path, model, CheckpointMeta(model="edgedet", size=size, task="detect",
                                                class_names=NAMES[:nc], input_size=S, num_keypoints=nk))
    return path


def _train_cfg() -> Any:
    return TrainConfig(batch=4, num_threads=2, augment={"hsv_h": 0, "hsv_s": 0, "hsv_v": 0})  # type: ignore[arg-type]


def test_teacher_layout_mismatch_is_named(tmp_path: Path, data: CocoDataset) -> None:
    student = _save(tmp_path / "s.pt", _model())
    for bad in (_save(tmp_path / "t3.pt", _model(nc=3), nc=3), _save(tmp_path / "tk.pt", _model(nk=2), nk=2)):
        with pytest.raises(UserError, match=r"compress\[1\]\.distill\.teacher: teacher has"):
            distill_checkpoint(student, bad, tmp_path / "o.pt", DistillConfig(), train=data, input_size=S,
                               train_cfg=_train_cfg(), where=WHERE, log=lambda _s: None)


def test_sparse_student_keeps_2to4_through_distill_and_reload(tmp_path: Path, data: CocoDataset) -> None:
    base = _save(tmp_path / "base.pt", _model())
    prune_checkpoint(base, tmp_path / "pruned.pt", PruneConfig(ratio=0.3, sparsity="2:4"), train=data,
                     input_size=S, where="compress[0].prune", log=lambda _s: None)
    rec = distill_checkpoint(tmp_path / "pruned.pt", base, tmp_path / "kd.pt",
                             DistillConfig(epochs=1, feature_weight=0.5, temperature=2.0), train=data,
                             input_size=S, train_cfg=_train_cfg(), where=WHERE, log=lambda _s: None)
    assert rec["mode"] == "distill" and rec["loss_terms"][-1] == "kd_feat" and len(rec["loss_items"][0]) == 6
    model, meta = load_checkpoint(tmp_path / "kd.pt")
    layers = meta.extra["sparsity"]["layers"]
    assert layers and sparsity.check_layers(model, layers) == []
    assert not any("distill_adapters" in k or "parametrizations" in k for k in model.state_dict())
    before, _ = load_checkpoint(tmp_path / "pruned.pt")
    assert any(not torch.equal(a, b) for a, b in zip(before.state_dict().values(), model.state_dict().values(),
                                                      strict=True))  # it trained
    # the recipe may name a teacher checkpoint; the comparison fine-tune (teacher=None) must still be plain
    plain = distill_checkpoint(tmp_path / "pruned.pt", None, tmp_path / "ft.pt",
                               DistillConfig(epochs=1, teacher=base),
                               train=data, input_size=S, train_cfg=_train_cfg(), where=WHERE, log=lambda _s: None)
    assert plain["mode"] == "finetune" and plain["teacher"] is None and plain["loss_terms"] == ["box", "cls", "dfl"]
    ft, _ = load_checkpoint(tmp_path / "ft.pt")
    assert sparsity.check_layers(ft, layers) == []


def test_builtin_student_from_teacher(tmp_path: Path, data: CocoDataset) -> None:
    teacher = _save(tmp_path / "t.pt", _model(size="n"), size="n")
    rec = distill_checkpoint(teacher, teacher, tmp_path / "p.pt", DistillConfig(epochs=1, student="edgedet-p"),
                             train=data, input_size=S, train_cfg=_train_cfg(), where=WHERE, log=lambda _s: None)
    _, meta = load_checkpoint(tmp_path / "p.pt")
    assert rec["student"] == "edgedet-p" and meta.size == "p" and meta.class_names == NAMES


def test_seed_makes_runs_repeatable_and_varies_them(tmp_path: Path, data: CocoDataset) -> None:
    """`distill.seed` (default: train.seed) drives shuffling: same seed, same weights; another seed, others."""
    base = _save(tmp_path / "base.pt", _model())

    def weights(name: str, seed: int | None) -> list[torch.Tensor]:
        distill_checkpoint(base, None, tmp_path / name, DistillConfig(epochs=1, seed=seed), train=data,
                           input_size=S, train_cfg=_train_cfg(), where=WHERE, log=lambda _s: None)
        return list(load_checkpoint(tmp_path / name)[0].state_dict().values())

    default, same, other = weights("a.pt", None), weights("b.pt", _train_cfg().seed), weights("c.pt", 7)
    assert all(torch.equal(x, y) for x, y in zip(default, same, strict=True))
    assert any(not torch.equal(x, y) for x, y in zip(default, other, strict=True))
