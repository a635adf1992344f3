"""Newest-frame scheduling: a waiting frame older than half a source period is traded for the next one
(bounded wait), a young one is taken at once, and ``Channel.get(timeout=...)`` gives up cleanly."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from stream_fixtures import make_bundle

from edgevision.runtime.channel import EMPTY, END, Channel
from edgevision.runtime.frames import Frame
from edgevision.runtime.fresh import FreshFrames
from edgevision.runtime.pipeline import Pipeline

LIVE = "synthetic://?fps=50&width=64&height=48&pool=2"
PERIOD = 0.040  # seconds


def _frame(index: int, age: float) -> tuple[int, Frame]:
    return index, Frame(np.zeros((4, 4, 3), np.uint8), index, time.monotonic() - age)


class Drops:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, k: int) -> None:
        self.n += k


@pytest.fixture()
def drops() -> Drops:
    return Drops()


@pytest.fixture()
def fresh(drops: Drops) -> FreshFrames:
    f = FreshFrames(drops)
    f.period = PERIOD
    return f


def test_channel_get_times_out_then_still_delivers() -> None:
    ch = Channel(1, True, lambda n: None)
    t0 = time.monotonic()
    assert ch.get(timeout=0.05) is EMPTY and 0.04 <= time.monotonic() - t0 < 1.0
    threading.Timer(0.02, ch.put, args=("x",)).start()
    assert ch.get(timeout=2.0) == "x"
    ch.close()
    assert ch.get(timeout=0.01) is END


def test_an_old_frame_is_traded_for_the_next_one(fresh: FreshFrames, drops: Drops) -> None:
    inp = Channel(1, True, drops)
    stale = _frame(0, age=0.030)  # 3/4 of a period old: the next frame is due in ~10 ms
    threading.Timer(0.008, inp.put, args=(_frame(1, age=0.0),)).start()
    t0 = time.monotonic()
    got = fresh.pick(inp, stale)
    assert got[0] == 1 and time.monotonic() - t0 < PERIOD
    assert drops.n == 1  # the stale frame counts as dropped


def test_a_young_frame_is_taken_at_once(fresh: FreshFrames, drops: Drops) -> None:
    inp = Channel(1, True, drops)
    young = _frame(0, age=0.005)
    threading.Timer(0.010, inp.put, args=(_frame(1, age=0.0),)).start()
    t0 = time.monotonic()
    assert fresh.pick(inp, young) is young and time.monotonic() - t0 < 0.005
    assert drops.n == 0


def test_the_wait_is_bounded_when_the_source_is_late(fresh: FreshFrames, drops: Drops) -> None:
    inp = Channel(1, True, drops)
    stale = _frame(0, age=0.030)
    t0 = time.monotonic()
    assert fresh.pick(inp, stale) is stale  # nothing arrives: keep the frame we had
    waited = time.monotonic() - t0
    assert 0.015 <= waited <= 0.1  # until the next frame was due (~10 ms) plus a quarter period of slack
    assert drops.n == 0


def test_a_stopped_source_ends_the_wait(fresh: FreshFrames, drops: Drops) -> None:
    inp = Channel(1, True, drops)
    threading.Timer(0.005, inp.close).start()
    stale = _frame(0, age=0.030)
    assert fresh.pick(inp, stale) is stale


def test_the_period_is_a_moving_average_of_capture_times(drops: Drops) -> None:
    f = FreshFrames(drops)
    for k in range(40):
        f.observe(100.0 + k * 0.02)  # a 50 fps source
    assert f.period == pytest.approx(0.02)
    f.observe(100.0 + 39 * 0.02 + 0.5)  # one half-second hiccup moves the average, not to 0.5
    assert 0.02 < f.period < 0.1  # type: ignore[operator]


@pytest.mark.parametrize("on", [True, False])
def test_the_switch_decides_whether_inference_may_wait(tmp_path: Path, on: bool,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(FreshFrames, "pick", lambda self, inp, item: calls.append(item[0]) or item)
    with Pipeline(make_bundle(tmp_path / "b"), LIVE, fresh_frames=on, max_frames=20) as p:
        results = list(p)
    assert results and p.newest
    assert bool(calls) is on
