"""Training loop: overfits a handful of images, is seeded, validates its config, schedules the lr."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import Dataset

from edgevision.runtime.errors import UserError
from edgevision.toolkit.models import build_model
from edgevision.toolkit.train import TrainConfig, fit, lr_factor

S = 64


class Squares(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """A few fixed images: coloured rectangles on grey, targets ``[M, 5]`` = class, x1, y1, x2, y2."""

    def __init__(self, n: int = 4) -> None:
        g = torch.Generator().manual_seed(0)
        self.items = []
        for _ in range(n):
            img = torch.full((3, S, S), 0.45)
            rows = []
            for _ in range(2):
                cls = int(torch.randint(0, 2, (1,), generator=g))
                x1, y1 = (int(v) for v in torch.randint(0, S - 24, (2,), generator=g))
                w, h = (int(v) for v in torch.randint(10, 24, (2,), generator=g))
                colour = torch.tensor([0.9, 0.1, 0.1] if cls else [0.1, 0.2, 0.9])
                img[:, y1 : y1 + h, x1 : x1 + w] = colour[:, None, None]
                rows.append([cls, x1, y1, x1 + w, y1 + h])
            self.items.append((img, torch.tensor(rows, dtype=torch.float32)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.items[i]


def _cfg(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = {"epochs": 3, "batch": 2, "lr": 0.004, "warmup_epochs": 0.5, "num_threads": 2, "seed": 0}
    base.update(kw)
    return TrainConfig(**base)


def test_fit_overfits_a_handful_of_images() -> None:
    torch.manual_seed(0)
    model = build_model("edgedet", "n", num_classes=2)
    seen: list[int] = []
    res = fit(model, Squares(4), _cfg(epochs=16), progress=False, on_epoch=lambda e, loss, m: seen.append(e))
    assert len(res.epoch_losses) == 16 and seen == list(range(16))
    assert res.epoch_losses[-1] < 0.4 * res.epoch_losses[0]
    assert res.seconds > 0 and res.model is not None and not res.model.training
    with torch.no_grad():
        y = res.model(torch.rand(1, 3, S, S))
    assert y.shape[1] == 4 + 2


def test_fit_is_deterministic_given_seed() -> None:
    runs = []
    for _ in range(2):
        torch.manual_seed(123)  # the model's init is the caller's; fit seeds everything else
        model = build_model("edgedet", "n", num_classes=2)
        runs.append(fit(model, Squares(4), _cfg(epochs=2, ema=False), progress=False).epoch_losses)
    assert runs[0] == pytest.approx(runs[1], rel=1e-5)


def test_config_validation_names_the_key() -> None:
    model = build_model("edgedet", "n", num_classes=2)
    with pytest.raises(UserError, match=r"train\.optimizer"):
        fit(model, Squares(2), _cfg(optimizer="lion"), progress=False)
    with pytest.raises(UserError, match=r"train\.epochs"):
        fit(model, Squares(2), _cfg(epochs=0), progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible: this checks the error without one")
def test_cuda_device_without_a_gpu_is_a_user_error() -> None:
    model = build_model("edgedet", "n", num_classes=2)
    with pytest.raises(UserError, match=r"train\.device: 'cuda' but this torch .* sees no CUDA GPU"):
        fit(model, Squares(2), _cfg(device="cuda"), progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")
def test_fit_on_cuda_returns_a_cpu_model() -> None:
    torch.manual_seed(0)
    res = fit(build_model("edgedet", "n", num_classes=2), Squares(4), _cfg(epochs=2, device="cuda"), progress=False)
    assert res.model is not None and next(res.model.parameters()).device.type == "cpu"  # export/save take it as is


def test_lr_schedule_warms_up_then_decays() -> None:
    cfg = TrainConfig(lrf=0.1)
    total, warm = 100, 10
    f = [lr_factor(i, total, warm, cfg) for i in range(total)]
    assert f[0] == pytest.approx(0.1) and f[warm - 1] == pytest.approx(1.0)
    assert f[warm] == pytest.approx(1.0) and f[-1] == pytest.approx(0.1, abs=0.01)
    assert all(a >= b for a, b in zip(f[warm:-1], f[warm + 1 :], strict=True))
