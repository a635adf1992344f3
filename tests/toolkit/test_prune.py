"""Prune stage: MACs target met (checked against an independent count), round_to, layout kept, ONNX parity,
checkpoint roundtrip, 2:4 masks, and the named errors for bad input."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import cast

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from edgevision.runtime.errors import UserError
from edgevision.toolkit.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from edgevision.toolkit.compress import sparsity
from edgevision.toolkit.compress.prune import count_macs, prune_checkpoint, prune_model
from edgevision.toolkit.compress.prune_config import PruneConfig
from edgevision.toolkit.models import build_model
from edgevision.toolkit.stages.export import check_parity, export_onnx

S = 64
WHERE = "compress[0].prune"


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("edgedet", "p", num_classes=3).eval()


def conv_macs(model: nn.Module, size: int = S) -> int:
    """Independent count: sum over Conv2d of output elements x (in/groups) x kernel area."""
    total = 0

    def hook(m: nn.Module, _i: object, out: torch.Tensor) -> None:
        nonlocal total
        c = cast(nn.Conv2d, m)
        total += out.numel() * (c.in_channels // c.groups) * c.kernel_size[0] * c.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return total


def head_out_channels(model: nn.Module) -> list[int]:
    return [c.out_channels for c in model.head_outputs()]  # type: ignore[operator]


def test_macs_target_round_to_and_layout(model: nn.Module) -> None:
    base_conv, layout = conv_macs(model), head_out_channels(model)
    rec = prune_model(model, PruneConfig(macs_reduction=2.0), input_size=S, where=WHERE, log=lambda _s: None)
    assert rec["macs_reduction"] >= 2.0 and rec["macs"] == count_macs(model, S)[0]
    independent = base_conv / conv_macs(model)
    assert independent >= 1.9 and abs(independent - rec["macs_reduction"]) / rec["macs_reduction"] < 0.1
    assert head_out_channels(model) == layout
    outputs = {id(c) for c in model.head_outputs()}  # type: ignore[operator]
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and id(m) not in outputs:
            assert m.out_channels % 8 == 0, name
    assert "head" in rec["protected"] and "head.cls.0.2" in rec["protected"]


def test_unprotected_head_prunes_hidden_but_keeps_outputs(model: nn.Module) -> None:
    layout = head_out_channels(model)
    hidden = model.head.box[0][0].conv.out_channels  # type: ignore[index,union-attr]
    prune_model(model, PruneConfig(ratio=0.5, protect_head=False), input_size=S, log=lambda _s: None)
    assert head_out_channels(model) == layout
    assert model.head.box[0][0].conv.out_channels < hidden  # type: ignore[index,union-attr]


@pytest.mark.parametrize("kw", [{"importance": "l1", "global_pruning": True}, {"importance": "bn_scale", "steps": 2}])
def test_other_criteria_run(model: nn.Module, kw: dict[str, object]) -> None:
    rec = prune_model(model, PruneConfig(ratio=0.3, **kw), input_size=S, log=lambda _s: None)  # type: ignore[arg-type]
    assert rec["macs"] < rec["base_macs"]


def test_taylor_uses_calibration_batches(model: nn.Module) -> None:
    imgs = torch.rand(2, 3, S, S)
    targets = torch.tensor([[0, 1, 8, 8, 30, 30], [1, 0, 20, 10, 50, 40]], dtype=torch.float32)
    rec = prune_model(model, PruneConfig(ratio=0.3, importance="taylor"), input_size=S,
                      batches=[(imgs, targets)], log=lambda _s: None)
    assert rec["macs"] < rec["base_macs"] and not model.head.training  # type: ignore[union-attr]
    with pytest.raises(UserError, match=r"prune\.importance"):
        prune_model(model, PruneConfig(ratio=0.3, importance="taylor"), input_size=S)


def test_protected_layer_keeps_its_channels(model: nn.Module) -> None:
    before = model.stage1[0].conv.out_channels  # type: ignore[index,union-attr]
    prune_model(model, PruneConfig(ratio=0.5, protect=["stage1.0"]), input_size=S, log=lambda _s: None)
    assert model.stage1[0].conv.out_channels == before  # type: ignore[index,union-attr]


def test_pruned_model_exports_with_parity(model: nn.Module, tmp_path: Path) -> None:
    prune_model(model, PruneConfig(ratio=0.4), input_size=S, log=lambda _s: None)
    export_onnx(model, S, tmp_path / "m.onnx")
    parity = check_parity(model, tmp_path / "m.onnx", S, samples=2)
    assert parity.ok, parity


def _meta() -> CheckpointMeta:
    return CheckpointMeta(model="edgedet", size="p", task="detect", class_names=["a", "b", "c"], input_size=S)


def test_prune_checkpoint_roundtrip_exact(model: nn.Module, tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "base.pt", model, _meta())
    rec = prune_checkpoint(tmp_path / "base.pt", tmp_path / "pruned.pt", PruneConfig(ratio=0.4, sparsity="2:4"),
                           train=None, input_size=S, where=WHERE, log=lambda _s: None)
    pruned, meta = load_checkpoint(tmp_path / "pruned.pt")
    assert meta.extra["pruned"]["macs"] == rec["macs"] == count_macs(pruned, S)[0]
    assert meta.extra["sparsity"]["pattern"] == "2:4" and meta.extra["sparsity"]["layers"]
    assert "stem.conv" in meta.extra["sparsity"]["skipped"]  # 3 input channels: not a multiple of 4
    assert sparsity.check_layers(pruned, meta.extra["sparsity"]["layers"]) == []
    again = tmp_path / "again.pt"
    save_checkpoint(again, pruned, meta)
    reloaded, _ = load_checkpoint(again)
    for (k, a), (k2, b) in zip(pruned.state_dict().items(), reloaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b), k
    x = torch.rand(1, 3, S, S)
    with torch.no_grad():
        assert torch.equal(pruned(x), reloaded(x))


def test_2to4_mask_pattern_and_skips(model: nn.Module) -> None:
    rec = prune_model(model, PruneConfig(sparsity="2:4"), input_size=S, log=lambda _s: None)
    sp = rec["sparsity"]
    named = dict(model.named_modules())
    for name in sp["layers"]:
        w = cast(nn.Conv2d, named[name]).weight
        nz = (w != 0).movedim(1, -1).reshape(-1, w.shape[1] // 4, 4).sum(-1)
        assert int(nz.max()) <= 2, name
    assert "head.cls.0.2" not in sp["layers"]  # head outputs stay dense unless named
    assert rec["macs"] == rec["base_macs"]  # 2:4 alone changes no shape
    w = torch.randn(8, 12, 3, 3)
    m = sparsity.mask_2to4(w)
    assert m.shape == w.shape and int(m.sum()) == w.numel() // 2 and sparsity.is_2to4(w * m)


def test_bad_inputs_name_the_key(model: nn.Module) -> None:
    with pytest.raises(UserError, match=r"compress\[0\]\.prune\.protect: no module named 'stage9'.*stage"):
        prune_model(model, PruneConfig(ratio=0.3, protect=["stage9"]), input_size=S, where=WHERE)
    with pytest.raises(UserError, match=r"compress\[0\]\.prune\.sparse_layers"):
        prune_model(model, PruneConfig(sparsity="2:4", sparse_layers=["nope"]), input_size=S, where=WHERE)
    with pytest.raises(UserError, match=r"macs_reduction"):
        prune_model(copy.deepcopy(model), PruneConfig(macs_reduction=30), input_size=S, where=WHERE,
                    log=lambda _s: None)
    for bad in ({"ratio": 1.5}, {"ratio": 0.0}, {"macs_reduction": 0.5}, {"ratio": 0.3, "macs_reduction": 2},
                {"round_to": 0}, {}):
        with pytest.raises(ValidationError):
            PruneConfig(**bad)  # type: ignore[arg-type]
