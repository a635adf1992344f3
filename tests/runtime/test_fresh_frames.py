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
from edgevision.runtime.pipeline import Pipeline

LIVE = "synthetic://?fps=50&width=64&height=48&pool=2"
PERIOD = 0.040  # seconds


def _frame(index: int, age: float) -> tuple[int, Frame]:
    return index, Frame(np.zeros((4, 4, 3), np.uint8), index, time.monotonic() - age)


@pytest.fixture()
def pipe(tmp_path: Path) -> Pipeline:
    p = Pipeline(make_bundle(tmp_path / "b"), LIVE)
    p._period = PERIOD
    return p


def _drops(pipe: Pipeline) -> int:
    return int(pipe.metrics.snapshot()["dropped"])


def test_channel_get_times_out_then_still_delivers() -> None:
    ch = Channel(1, True, lambda n: None)
    t0 = time.monotonic()
    assert ch.get(timeout=0.05) is EMPTY and 0.04 <= time.monotonic() - t0 < 1.0
    threading.Timer(0.02, ch.put, args=("x",)).start()
    assert ch.get(timeout=2.0) == "x"
    ch.close()
    assert ch.get(timeout=0.01) is END


def test_an_old_frame_is_traded_for_the_next_one(pipe: Pipeline) -> None:
    inp = Channel(1, True, pipe.metrics.add_dropped)
    stale = _frame(0, age=0.030)  # 3/4 of a period old: the next frame is due in ~10 ms
    threading.Timer(0.008, inp.put, args=(_frame(1, age=0.0),)).start()
    t0 = time.monotonic()
    got = pipe._fresher(inp, stale)
    assert got[0] == 1 and time.monotonic() - t0 < PERIOD
    assert _drops(pipe) == 1  # the stale frame counts as dropped


def test_a_young_frame_is_taken_at_once(pipe: Pipeline) -> None:
    inp = Channel(1, True, pipe.metrics.add_dropped)
    young = _frame(0, age=0.005)
    threading.Timer(0.010, inp.put, args=(_frame(1, age=0.0),)).start()
    t0 = time.monotonic()
    assert pipe._fresher(inp, young) is young and time.monotonic() - t0 < 0.005
    assert _drops(pipe) == 0


def test_the_wait_is_bounded_when_the_source_is_late(pipe: Pipeline) -> None:
    inp = Channel(1, True, pipe.metrics.add_dropped)
    stale = _frame(0, age=0.030)
    t0 = time.monotonic()
    assert pipe._fresher(inp, stale) is stale  # nothing arrives: keep the frame we had
    waited = time.monotonic() - t0
    assert 0.015 <= waited <= 0.1  # until the next frame was due (~10 ms) plus a quarter period of slack
    assert _drops(pipe) == 0


def test_a_stopped_source_ends_the_wait(pipe: Pipeline) -> None:
    inp = Channel(1, True, pipe.metrics.add_dropped)
    threading.Timer(0.005, inp.close).start()
    stale = _frame(0, age=0.030)
    assert pipe._fresher(inp, stale) is stale


@pytest.mark.parametrize("fresh", [True, False])
def test_the_switch_decides_whether_inference_may_wait(tmp_path: Path, fresh: bool) -> None:
    calls: list[int] = []
    with Pipeline(make_bundle(tmp_path / "b"), LIVE, fresh_frames=fresh, max_frames=20) as p:
        p._fresher = lambda inp, item: calls.append(item[0]) or item  # type: ignore[method-assign]
        results = list(p)
    assert results and p.newest
    assert bool(calls) is fresh
