"""Ultralytics checkpoints as a model source: facts read from the .pt, the wrapped network's output layout,
and one-line errors for files that are not (loadable) Ultralytics detect/pose checkpoints."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from edgevision.runtime.errors import UserError
from edgevision.toolkit.models.sources.ultralytics import open_ultralytics
from edgevision.toolkit.models.ultralytics.load import load_net_checkpoint, read_checkpoint
from tests.toolkit.ultralytics_helpers import IMGSZ, save_ul_checkpoint, ul_model


class _Cfg:
    def __init__(self, path: Path) -> None:
        self.ultralytics = path


def test_detect_checkpoint_facts_and_layout(tmp_path: Path) -> None:
    ul = ul_model("yolov8n.yaml", nc=3)
    pt = save_ul_checkpoint(ul, tmp_path / "best.pt", ["cat", "dog", "bird"], imgsz=160)
    src = open_ultralytics(_Cfg(pt))
    info = src.describe()
    assert (info.kind, info.task, info.class_names, info.num_keypoints) == ("ultralytics", "detect",
                                                                              ["cat", "dog", "bird"], 0)
    assert info.contract.input_size == 160 and info.contract.strides == (8, 16, 32)
    assert open_ultralytics(_Cfg(pt), input_size=IMGSZ).describe().contract.input_size == IMGSZ
    record = src.to_checkpoint(tmp_path / "ev.pt", class_names=["cat", "dog", "bird"], num_keypoints=0)
    assert record["split_free_blocks"] == 8  # yolov8n: 8 C2f blocks

    net, meta = load_net_checkpoint(tmp_path / "ev.pt")  # weights_only load, skeleton from the yaml dict
    assert meta.extra["source"]["kind"] == "ultralytics" and meta.class_names == ["cat", "dog", "bird"]
    x = torch.rand(2, 3, IMGSZ, IMGSZ)
    ref = ul.half().float().eval()  # the .pt holds half-precision weights
    with torch.no_grad():
        got, want = net(x), ref(x)[0]
    n = (IMGSZ // 8) ** 2 + (IMGSZ // 16) ** 2 + (IMGSZ // 32) ** 2
    assert got.shape == want.shape == (2, 4 + 3, n)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    # training flag on the head alone: raw per-level maps, box bins + classes per anchor
    net.head.training = True
    with torch.no_grad():
        maps = net(x)
    assert [tuple(m.shape) for m in maps] == [(2, 64 + 3, IMGSZ // s, IMGSZ // s) for s in (8, 16, 32)]


def test_pose_checkpoint_keypoints(tmp_path: Path) -> None:
    ul = ul_model("yolov8n-pose.yaml", nc=1, kpt=(5, 3))
    pt = save_ul_checkpoint(ul, tmp_path / "pose.pt", ["person"])
    info = open_ultralytics(_Cfg(pt)).describe()
    assert (info.task, info.num_keypoints) == ("pose", 5)
    ck = read_checkpoint(pt)
    from edgevision.toolkit.models.ultralytics.load import net_from_checkpoint

    net = net_from_checkpoint(ck)
    assert (net.head.nk, net.head.nc) == (5, 1)
    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    with torch.no_grad():
        got, want = net(x), ul.half().float()(x)[0]
    assert got.shape == (1, 4 + 1 + 15, want.shape[2])
    assert torch.allclose(got, want, atol=1e-3, rtol=1e-4)  # keypoint xy in pixels, same decode


def test_not_an_ultralytics_checkpoint(tmp_path: Path) -> None:
    pt = tmp_path / "weights.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, pt)
    with pytest.raises(UserError, match=r"weights\.pt: not an Ultralytics checkpoint"):
        read_checkpoint(pt)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a pickle at all")
    with pytest.raises(UserError, match=r"junk\.pt: not a readable PyTorch checkpoint"):
        read_checkpoint(junk)
    with pytest.raises(UserError, match="file not found"):
        read_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_from_another_ultralytics_version(tmp_path: Path) -> None:
    """A pickle naming a module class this Ultralytics does not have (as a much older/newer release writes)."""
    mod = types.ModuleType("ultralytics_gone_module")

    class OldDetect(torch.nn.Module):
        pass

    OldDetect.__module__ = mod.__name__
    OldDetect.__qualname__ = "OldDetect"
    mod.OldDetect = OldDetect  # type: ignore[attr-defined]
    sys.modules[mod.__name__] = mod
    try:
        torch.save({"model": OldDetect(), "version": "99.0.0"}, tmp_path / "future.pt")
    finally:
        del sys.modules[mod.__name__]
    with pytest.raises(UserError, match=r"future\.pt: written by an Ultralytics version that this one"):
        read_checkpoint(tmp_path / "future.pt")


def test_wrong_task(tmp_path: Path) -> None:
    from ultralytics.nn.tasks import ClassificationModel

    cls = ClassificationModel("yolov8n-cls.yaml", nc=3, verbose=False)
    torch.save({"model": cls, "version": "8.4.190"}, tmp_path / "cls.pt")
    with pytest.raises(UserError, match=r"cls\.pt: an Ultralytics 'classify' model; edgevision takes detect and pose"):
        read_checkpoint(tmp_path / "cls.pt")


def test_class_count_mismatch_names_the_file(tmp_path: Path) -> None:
    pt = save_ul_checkpoint(ul_model("yolov8n.yaml", nc=3), tmp_path / "best.pt", ["a", "b", "c"])
    with pytest.raises(UserError, match=r"best\.pt predicts 3 classes"):
        open_ultralytics(_Cfg(pt)).to_checkpoint(tmp_path / "x.pt", class_names=["a"], num_keypoints=0)
    assert not (tmp_path / "x.pt").exists()
