"""Training loop: overfits a handful of images, is seeded, validates its config, schedules the lr."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import Dataset

from edgevision.runtime.errors import UserError
from edgevision.toolkit import train as train_mod
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


def test_epoch_schedule_is_the_plain_lr_factor() -> None:
    torch.manual_seed(0)
    cfg = _cfg(epochs=3, lrf=0.1)
    res = fit(build_model("edgedet", "p", num_classes=2), Squares(4), cfg, progress=False)
    assert res.lr_factors == pytest.approx([lr_factor(i, 6, 1, cfg) for i in range(6)])  # 3 epochs x 2 batches


class FakeClock:
    """Seconds that advance only when an iteration ends (Schedule.step reads the clock once per iteration):
    ``durations[i]`` is iteration i's time, the last one repeating."""

    def __init__(self, durations: list[float]) -> None:
        self.durations, self.now, self.steps = durations, 0.0, 0

    def __call__(self) -> float:
        return self.now

    def advance(self) -> None:
        self.now += self.durations[min(self.steps, len(self.durations) - 1)]
        self.steps += 1


def run_schedule(cfg: TrainConfig, nb: int, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    monkeypatch.setattr(train_mod, "_clock", clock)
    sched, out = train_mod.Schedule(cfg, nb), []
    while not sched.finished():
        out.append(sched.factor())
        clock.advance()
        sched.step()
    return out


@pytest.mark.parametrize("durations", [[1.0], [10.0, 0.5], [0.2] * 20 + [2.0]])
def test_time_budget_fits_the_schedule(durations: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    """train.time: whole iterations until the budget is spent (epochs ignored), warmup, then a decay that
    never rises and ends near lr x lrf, whether iterations are steady, start slow or slow down."""
    cfg = TrainConfig(epochs=1, lrf=0.05, warmup_epochs=1.0, time_budget_s=60.0)
    clock = FakeClock(durations)
    f = run_schedule(cfg, 4, clock, monkeypatch)
    assert 60.0 <= clock.now < 60.0 + max(durations)  # stops at the first iteration past the budget
    assert len(f) > 4  # more than epochs=1 of 4 iterations
    peak = f.index(max(f))
    assert max(f) == pytest.approx(1.0) and f[0] < 1.0 and peak <= len(f) // 3
    assert all(a >= b - 1e-12 for a, b in zip(f[peak:-1], f[peak + 1:], strict=True))
    assert f[-1] < 0.05 + 0.1, f"the last lr factor {f[-1]:.3f} should be near lrf"


def test_steady_budget_matches_the_epoch_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    """At a steady 1 s per iteration, a 60 s budget is the 60-iteration epoch schedule (after the first
    iteration, when the estimate is known)."""
    cfg = TrainConfig(lrf=0.05, warmup_epochs=1.0, time_budget_s=60.0)
    f = run_schedule(cfg, 4, FakeClock([1.0]), monkeypatch)
    assert len(f) == 60 and f == pytest.approx([lr_factor(i, 60, 4, cfg) for i in range(60)])


def test_fit_with_a_time_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """fit() under train.time: epochs is ignored, the run ends when the (fake) clock passes the budget."""
    clock = FakeClock([1.0])
    monkeypatch.setattr(train_mod, "_clock", clock)
    real_step = train_mod.Schedule.step

    def step(self: train_mod.Schedule) -> None:
        clock.advance()
        real_step(self)

    monkeypatch.setattr(train_mod.Schedule, "step", step)
    torch.manual_seed(0)
    res = fit(build_model("edgedet", "p", num_classes=2), Squares(4), _cfg(epochs=1, time_budget_s=7.0),
              progress=False)
    assert len(res.lr_factors) == 7 and len(res.epoch_losses) == 4  # 2 batches per epoch: 3.5 epochs
    assert res.lr_factors[-1] < res.lr_factors[1]


def test_time_must_be_positive() -> None:
    with pytest.raises(UserError, match=r"train.time: must be > 0 hours"):
        fit(build_model("edgedet", "p", num_classes=2), Squares(2), _cfg(time_budget_s=0.0), progress=False)
