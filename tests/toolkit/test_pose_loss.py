"""Pose model and loss: the keypoint decode matches Ultralytics' pose decode, the OKS loss matches a
hand computation, ``make_loss`` dispatches on the head, and a few steps on tiny data lower the loss."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from edgevision.runtime.errors import UserError
from edgevision.toolkit.data.coco import COCO_SIGMAS, load_coco
from edgevision.toolkit.data.dataset import DetectionDataset, collate_detection
from edgevision.toolkit.data.synthetic_pose import generate_pose_dataset
from edgevision.toolkit.models.loss import DetectionLoss, make_loss
from edgevision.toolkit.models.pose_loss import PoseLoss, default_sigmas, keypoint_loss
from edgevision.toolkit.models.registry import build_model


def test_keypoint_decode_is_ultralytics_pose_decode() -> None:
    torch.manual_seed(0)
    model = build_model("edgepose", "p", num_classes=2, num_keypoints=3).eval()
    head = model.head
    size = 64
    outs = [torch.randn(1, head.no, size // s, size // s) for s in head.strides]
    y = head.decode(outs)
    assert y.shape == (1, 4 + 2 + 9, sum((size // s) ** 2 for s in head.strides))
    # by hand: anchor n of level s at cell (i, j): x = (raw_x * 2 + j) * s, y = (raw_y * 2 + i) * s
    r4 = 4 * head.reg_max
    n = 0
    for o, s in zip(outs, head.strides, strict=True):
        raw = o[0, r4 + 2:].reshape(3, 3, -1)  # [K, (x, y, c), cells]
        h, w = o.shape[2:]
        jj, ii = np.meshgrid(np.arange(w), np.arange(h))
        xs = (raw[:, 0].numpy() * 2 + jj.reshape(-1)) * s
        ys = (raw[:, 1].numpy() * 2 + ii.reshape(-1)) * s
        got = y[0, 6:, n:n + h * w].reshape(3, 3, -1).numpy()
        np.testing.assert_allclose(got[:, 0], xs, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(got[:, 1], ys, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(got[:, 2], torch.sigmoid(raw[:, 2]).numpy(), rtol=1e-6)
        n += h * w


def test_oks_loss_matches_hand_computation() -> None:
    gt = torch.tensor([[[10.0, 10.0, 2.0], [20.0, 20.0, 0.0]]])
    pred = torch.tensor([[[13.0, 14.0], [0.0, 0.0]]])  # d^2 = 25 on the labelled one; the other ignored
    loss = keypoint_loss(pred, gt, torch.tensor([100.0]), torch.tensor([0.1, 0.1]))
    e = 25 / (2 * 100 * (2 * 0.1) ** 2)
    # mean over K = 2 keypoints of (K / labelled = 2) * (1 - exp(-e)) on the labelled one
    assert loss.item() == pytest.approx(1 - math.exp(-e), rel=1e-6)
    assert keypoint_loss(gt[..., :2], gt, torch.tensor([100.0]), torch.tensor([0.1, 0.1])).item() == 0.0


def test_make_loss_dispatches_on_the_head() -> None:
    assert isinstance(make_loss(build_model("edgedet", "p", 3)), DetectionLoss)
    pose = make_loss(build_model("edgepose", "p", 1, 17))
    assert isinstance(pose, PoseLoss) and pose.sigmas.tolist() == pytest.approx(COCO_SIGMAS)
    assert default_sigmas(4) == [0.25] * 4
    with pytest.raises(UserError, match="needs keypoints"):
        build_model("edgepose", "p", 1, 0)


def test_targets_without_keypoints_are_refused() -> None:
    loss = make_loss(build_model("edgepose", "p", 1, 5).train())
    preds = build_model("edgepose", "p", 1, 5).train()(torch.zeros(1, 3, 64, 64))
    with pytest.raises(UserError, match="targets have 6 columns, expected 21"):
        loss(preds, torch.tensor([[0.0, 0, 1, 1, 20, 20]]))


def test_a_few_steps_lower_the_pose_loss(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    paths = generate_pose_dataset(tmp_path, num_train=4, num_val=1, image_size=64, seed=0)
    ds = DetectionDataset(load_coco(paths.train_json), 64)
    imgs, targets = collate_detection([ds[i] for i in range(4)])
    assert targets.shape[1] == 6 + 51
    model = build_model("edgepose", "p", 1, 17).train()
    loss_fn = make_loss(model)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(25):
        total, items = loss_fn(model(imgs), targets)
        assert items.shape == (5,) and torch.isfinite(total)
        first = items.clone() if first is None else first
        opt.zero_grad()
        total.backward()
        opt.step()
    assert items[3] < first[3] and items[4] < first[4]  # pose (OKS) and keypoint-visibility terms
