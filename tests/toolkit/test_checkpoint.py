"""Checkpoints: exact roundtrip, pruned structures rebuilt from the stored shapes, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from edgevision.runtime.errors import UserError
from edgevision.toolkit.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from edgevision.toolkit.compress.prune import prune_model
from edgevision.toolkit.compress.prune_config import PruneConfig
from edgevision.toolkit.models import build_model


def _meta(**extra: object) -> CheckpointMeta:
    return CheckpointMeta(model="edgedet", size="p", task="detect", class_names=["a", "b"], input_size=64,
                          extra=dict(extra))


def _same(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_roundtrip_exact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("edgedet", "p", num_classes=2)
    save_checkpoint(tmp_path / "c.pt", model, _meta(note="x"))
    back, meta = load_checkpoint(tmp_path / "c.pt")
    _same(model, back)
    assert meta == _meta(note="x") and not back.training


def test_pruned_structure_rebuilt_without_pickled_code(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("edgedet", "p", num_classes=2)
    prune_model(model, PruneConfig(ratio=0.4), input_size=64, log=lambda _s: None)
    save_checkpoint(tmp_path / "p.pt", model, _meta(pruned={"ratio": 0.4}))
    blob = torch.load(tmp_path / "p.pt", weights_only=True)  # plain tensors + metadata only
    assert blob["format"] == "edgevision-checkpoint"
    back, _ = load_checkpoint(tmp_path / "p.pt")
    _same(model, back)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), back(x))


def test_pruned_weights_without_flag_are_a_user_error(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("edgedet", "p", num_classes=2)
    prune_model(model, PruneConfig(ratio=0.4), input_size=64, log=lambda _s: None)
    save_checkpoint(tmp_path / "p.pt", model, _meta())
    with pytest.raises(UserError, match="weights do not fit edgedet-p"):
        load_checkpoint(tmp_path / "p.pt")


def test_missing_and_corrupt(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not an edgevision checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
