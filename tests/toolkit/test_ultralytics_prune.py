"""Pruning Ultralytics models: the split-free rewrite of C2f / C3k2 / C2PSA is exact, and Torch-Pruning then
narrows a YOLOv8n to >= 2x fewer MACs with the head's layout intact, saved and reloaded as an edgevision
checkpoint (weights_only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgevision.toolkit.checkpoint import CheckpointMeta, save_checkpoint
from edgevision.toolkit.compress.prune import count_macs, prune_model
from edgevision.toolkit.compress.prune_config import PruneConfig
from edgevision.toolkit.models.ultralytics.load import load_net_checkpoint
from edgevision.toolkit.models.ultralytics.net import UltralyticsNet
from tests.toolkit.ultralytics_helpers import IMGSZ, ul_model


@pytest.mark.parametrize(("cfg", "kpt", "blocks"), [("yolov8n.yaml", None, 8), ("yolo11n.yaml", None, 9),
                                                    ("yolo11n-pose.yaml", (4, 3), 9)])
def test_split_free_rewrite_is_exact(cfg: str, kpt: tuple[int, int] | None, blocks: int) -> None:
    ul = ul_model(cfg, nc=2, kpt=kpt)
    x = torch.rand(2, 3, IMGSZ, IMGSZ)
    with torch.no_grad():
        want = ul(x)[0]  # Ultralytics' own forward, chunk/split blocks
        net = UltralyticsNet(ul)
        got = net.eval()(x)
    assert net.split_free == blocks
    names = {type(m).__name__ for m in net.modules()}
    assert not names & {"C2f", "C3k2", "C2PSA"}
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())


def test_pruned_yolov8n_halves_macs_keeps_layout_and_reloads(tmp_path: Path) -> None:
    net = UltralyticsNet(ul_model("yolov8n.yaml", nc=3)).eval()
    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    with torch.no_grad():
        before = net(x)
    base_macs = count_macs(net, IMGSZ)[0]
    record = prune_model(net, PruneConfig(ratio=0.5, round_to=8), input_size=IMGSZ, log=lambda _m: None)
    assert base_macs / count_macs(net, IMGSZ)[0] >= 2.0
    assert record["macs_reduction"] >= 2.0
    with torch.no_grad():
        after = net(x)
    assert after.shape == before.shape  # [1, 4 + 3, N]: the deployed layout
    assert torch.isfinite(after).all()
    head = net.head_outputs()
    assert [c.out_channels for c in head[:6]] == [64] * 3 + [3] * 3  # box bins (4 x 16), classes
    assert head[-1].in_channels == 16  # DFL projection untouched
    convs = [m for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d) and n.startswith("layers.")]
    assert all(c.out_channels % 8 == 0 for c in convs)  # round_to

    meta = CheckpointMeta(model="ultralytics", size="n", task="detect", class_names=["a", "b", "c"],
                          input_size=IMGSZ, extra={"source": _source(net), "pruned": {"ratio": 0.5}})
    save_checkpoint(tmp_path / "pruned.pt", net, meta)
    loaded, _ = load_net_checkpoint(tmp_path / "pruned.pt")
    with torch.no_grad():
        assert torch.equal(loaded(x), after)


def test_yolo11_attention_stays_whole() -> None:
    net = UltralyticsNet(ul_model("yolo11n.yaml", nc=3)).eval()
    attn = [m for m in net.modules() if type(m).__name__ == "Attention"]
    widths = [m.qkv.conv.out_channels for m in attn]
    prune_model(net, PruneConfig(ratio=0.5), input_size=IMGSZ, log=lambda _m: None)
    assert [m.qkv.conv.out_channels for m in attn] == widths
    with torch.no_grad():
        assert net(torch.rand(1, 3, IMGSZ, IMGSZ)).shape[1] == 4 + 3


def _source(net: UltralyticsNet) -> dict[str, object]:
    return {"kind": "ultralytics", "yaml": net.yaml, "nc": net.head.nc, "kpt_shape": None}


def test_qat_bn_fold_round_trip_fits_the_skeleton() -> None:
    """QAT folds BN into convs and writes them back as identity BNs (eps 1e-3, which Ultralytics' weight init
    also sets); the skeleton rebuilt from the yaml must compute the same function from that state dict."""
    from edgevision.toolkit.compress.qat import fold_bn, unfold_bn

    net = UltralyticsNet(ul_model("yolov8n.yaml", nc=3)).eval()
    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    with torch.no_grad():
        want = net(x)
        unfold_bn(fold_bn(net))
        fresh = UltralyticsNet(ul_model("yolov8n.yaml", nc=3, seed=5)).eval()
        fresh.load_state_dict(net.state_dict())
        got = fresh(x)
    assert (got - want).abs().max().item() <= 1e-4 * max(1.0, want.abs().max().item())
