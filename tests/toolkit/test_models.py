"""edgedet: shapes and layout, ONNX export + ONNX Runtime parity, loss/assigner behaviour, registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgevision.runtime.errors import UserError
from edgevision.toolkit.models import build_model, get_model_spec, list_models
from edgevision.toolkit.models.assigner import TaskAlignedAssigner, box_iou
from edgevision.toolkit.models.loss import DetectionLoss, pad_targets

S = 64  # tiny input: levels 8x8, 4x4, 2x2
N = (S // 8) ** 2 + (S // 16) ** 2 + (S // 32) ** 2


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)


def _randomise_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None and m.running_var is not None:
            m.running_mean.uniform_(-0.2, 0.2, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)


def _targets() -> torch.Tensor:
    # batch index, class, x1, y1, x2, y2 (input pixels)
    return torch.tensor([[0, 1, 8, 8, 30, 28], [0, 2, 34, 36, 60, 62], [1, 0, 20, 10, 44, 50],
                         [1, 2, 3.0, 3.0, 6.0, 6.0]])


def test_train_and_eval_outputs() -> None:
    model = build_model("edgedet", "n", num_classes=3)
    x = torch.rand(2, 3, S, S)
    model.train()
    outs = model(x)
    assert isinstance(outs, list) and [tuple(o.shape) for o in outs] == [
        (2, 4 * 16 + 3, S // s, S // s) for s in (8, 16, 32)
    ]
    model.eval()
    with torch.no_grad():
        y = model(x)
    assert isinstance(y, torch.Tensor) and y.shape == (2, 4 + 3, N)
    scores = y[:, 4:]
    assert float(scores.min()) >= 0.0 and float(scores.max()) <= 1.0
    cx, cy, w, h = y[:, 0], y[:, 1], y[:, 2], y[:, 3]
    assert bool((w > 0).all() and (h > 0).all())
    # centres sit around their anchors: pixels inside (a margin of) the input, not grid units
    assert float(cx.max()) > S / 2 and float(cx.min()) > -S and float(cx.max()) < 2 * S
    assert float(cy.max()) > S / 2


def test_first_anchor_is_top_left_cell_in_pixels() -> None:
    model = build_model("edgedet", "n", num_classes=2).eval()
    head = model.head
    outs = [torch.zeros(1, head.no, S // s, S // s) for s in (8, 16, 32)]
    y = head.decode(outs)  # zero logits: uniform bins -> distance 7.5 strides on each side
    assert torch.allclose(y[0, :2, 0], torch.tensor([4.0, 4.0]))  # centre of cell (0, 0) at stride 8
    assert torch.allclose(y[0, 2:4, 0], torch.tensor([15 * 8.0, 15 * 8.0]))
    assert torch.allclose(y[0, :2, -1], torch.tensor([48.0, 48.0]))  # last cell of the stride-32 level
    assert torch.allclose(y[0, 4:, 0], torch.tensor([0.5, 0.5]))


def test_channels_are_multiples_of_8() -> None:
    for size in get_model_spec("edgedet").sizes:
        model = build_model("edgedet", size, num_classes=5)
        for name, m in model.named_modules():
            if isinstance(m, nn.Conv2d) and not name.endswith(".2"):  # .2 = the head's output convs
                assert m.out_channels % 8 == 0, (size, name, m.out_channels)
                assert m.in_channels == 3 or m.in_channels % 8 == 0, (size, name, m.in_channels)


def test_sizes_are_listed_smallest_first() -> None:
    sizes = get_model_spec("edgedet").sizes
    assert sizes == ("p", "n", "s", "m")
    params = [sum(p.numel() for p in build_model("edgedet", s, num_classes=5).parameters()) for s in sizes]
    assert params == sorted(params) and len(set(params)) == len(params), dict(zip(sizes, params, strict=True))


def test_pose_hook_layout() -> None:
    model = build_model("edgedet", "n", num_classes=1, num_keypoints=4).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, S, S))
    assert y.shape == (1, 4 + 1 + 3 * 4, N)
    vis = y[:, 5 + 2 :: 3]
    assert float(vis.min()) >= 0 and float(vis.max()) <= 1


@pytest.mark.parametrize("dynamic", [False, True])
def test_onnx_export_matches_torch(tmp_path: Path, dynamic: bool) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = build_model("edgedet", "n", num_classes=4).eval()
    _randomise_bn(model)
    x = torch.rand(2, 3, S, S)
    path = tmp_path / "m.onnx"
    axes = {"images": {0: "batch"}, "output0": {0: "batch"}} if dynamic else None
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["images"],
                      output_names=["output0"], dynamic_axes=axes)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b in (2, 3) if dynamic else (2,):
        xb = torch.rand(b, 3, S, S)
        with torch.no_grad():
            ref = model(xb).numpy()
        out = sess.run(None, {"images": xb.numpy()})[0]
        assert out.shape == (b, 8, N)
        assert float(np.abs(out - ref).max()) < 1e-3


def test_registry_errors_and_contract() -> None:
    with pytest.raises(UserError, match="edgedet"):
        get_model_spec("no-such-model")
    with pytest.raises(UserError, match="known sizes"):
        build_model("edgedet", "xxl", num_classes=3)
    with pytest.raises(UserError, match="num_classes"):
        build_model("edgedet", "n", num_classes=0)
    assert "edgedet" in list_models()
    c = get_model_spec("edgedet").preprocess_contract(320)
    assert c["input_size"] == 320 and c["rgb"] is True and c["pad_value"] == 114
    assert c["strides"] == [8, 16, 32] and c["mean"] == [0.0, 0.0, 0.0] and c["output_layout"] == "yolo"


def test_pad_targets() -> None:
    labels, boxes, mask = pad_targets(_targets()[[2, 0, 3, 1]], batch=3)
    assert labels.shape == (3, 2) and boxes.shape == (3, 2, 4)
    assert mask.tolist() == [[True, True], [True, True], [False, False]]
    assert labels[0].tolist() == [1, 2] and boxes[1, 0].tolist() == [20, 10, 44, 50]


def test_assigner_positives_and_tiny_box_fallback() -> None:
    strides = torch.tensor([8.0] * 64)
    gy, gx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    anchors = (torch.stack((gx, gy), -1).view(-1, 2) + 0.5) * strides[:, None]
    boxes = torch.tensor([[[8.0, 8.0, 40.0, 40.0], [50.0, 50.0, 52.0, 52.0]]])  # big box, tiny box (no centre)
    pd = torch.cat((anchors - 6, anchors + 6), -1).unsqueeze(0)
    a = TaskAlignedAssigner(num_classes=2, topk=5)(torch.full((1, 64, 2), 0.5), pd, anchors,
                                                    torch.tensor([[0, 1]]), boxes, torch.tensor([[True, True]]))
    assert int(a.fg_mask.sum()) >= 2
    assert (a.labels[a.fg_mask] == 1).any()  # the tiny box got its nearest anchor
    assert bool((a.scores.sum(-1)[~a.fg_mask] == 0).all())
    assert float(box_iou(boxes[0, :1], boxes[0, :1])[0]) == pytest.approx(1.0, abs=1e-5)


def test_loss_finite_with_and_without_targets_and_decreases() -> None:
    model = build_model("edgedet", "n", num_classes=3).train()
    loss_fn = DetectionLoss(model)
    x = torch.rand(2, 3, S, S)
    empty, _ = loss_fn(model(x), torch.zeros(0, 6))
    assert torch.isfinite(empty)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(12):
        loss, items = loss_fn(model(x), _targets())
        assert torch.isfinite(loss) and items.shape == (3,)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0]


def test_keypoint_models_get_the_pose_loss() -> None:
    from edgevision.toolkit.models.loss import make_loss
    from edgevision.toolkit.models.pose_loss import PoseLoss

    assert isinstance(make_loss(build_model("edgedet", "n", num_classes=1, num_keypoints=3)), PoseLoss)
    assert type(make_loss(build_model("edgedet", "n", num_classes=1))) is DetectionLoss


def test_head_outputs_are_the_layout_convs() -> None:
    model = build_model("edgedet", "n", num_classes=3, num_keypoints=2)
    outs = model.head_outputs()
    assert len(outs) == 9 and sorted({c.out_channels for c in outs}) == [3, 3 * 2, 4 * 16]
