"""Fine-tune / distill an Ultralytics model with Ultralytics' own loss (v8DetectionLoss / v8PoseLoss, picked by
``make_loss``) and edgevision's distillation terms: a couple of steps on synthetic images give a finite loss
and move the weights."""

from __future__ import annotations

import torch

from edgevision.toolkit.compress.distill import DistillLoss, frozen_teacher
from edgevision.toolkit.compress.distill_config import DistillConfig
from edgevision.toolkit.compress.prune import prune_model
from edgevision.toolkit.compress.prune_config import PruneConfig
from edgevision.toolkit.models.loss import make_loss
from edgevision.toolkit.models.ultralytics.loss import UltralyticsLoss
from edgevision.toolkit.models.ultralytics.net import UltralyticsNet
from tests.toolkit.ultralytics_helpers import IMGSZ, ul_model


def _steps(model: torch.nn.Module, loss_fn, imgs: torch.Tensor, targets: torch.Tensor, n: int = 2) -> list[float]:
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    model.train()
    losses = []
    for _ in range(n):
        loss, items = loss_fn(model(imgs), targets, imgs)
        assert torch.isfinite(loss) and torch.isfinite(items).all()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses


def test_distill_pruned_student_from_unpruned_teacher() -> None:
    teacher = UltralyticsNet(ul_model("yolov8n.yaml", nc=2)).eval()
    student = UltralyticsNet(ul_model("yolov8n.yaml", nc=2))
    prune_model(student, PruneConfig(ratio=0.3), input_size=IMGSZ, log=lambda _m: None)
    task = make_loss(student)
    assert isinstance(task, UltralyticsLoss)  # Ultralytics' own loss for its head, chosen by the model
    torch.manual_seed(0)
    imgs = torch.rand(2, 3, IMGSZ, IMGSZ)
    targets = torch.tensor([[0, 0, 10, 12, 60, 70], [0, 1, 70, 20, 120, 90], [1, 1, 30, 30, 90, 100.0]])
    loss = DistillLoss(student, frozen_teacher(teacher), DistillConfig(), lambda p, t: task(p, t))
    before = [p.detach().clone() for p in student.parameters()]
    _steps(student, loss, imgs, targets)
    loss.close()
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, student.parameters(), strict=True))


def test_pose_finetune_uses_v8_pose_loss() -> None:
    net = UltralyticsNet(ul_model("yolov8n-pose.yaml", nc=1, kpt=(4, 3)))
    task = make_loss(net)
    kpts = torch.tensor([[20, 30, 2, 40, 30, 2, 30, 50, 1, 0, 0, 0.0]])
    targets = torch.cat((torch.tensor([[0, 0, 10, 20, 60, 80.0]]), kpts), 1)
    losses = _steps(net, lambda p, t, _i: task(p, t), torch.rand(1, 3, IMGSZ, IMGSZ), targets, n=3)
    items = task(net.train()(torch.rand(1, 3, IMGSZ, IMGSZ)), targets)[1]
    assert items.shape == (5,)  # box, pose, kobj, cls, dfl: v8PoseLoss's terms
    assert losses[-1] < losses[0]
