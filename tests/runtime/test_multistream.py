"""Several streams through one model: batched calls, results per stream and frame, fairness, failures."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest
from multistream_fixtures import EchoBackend, FailingSource, StallingSource, make_batch_bundle, synthetic

from edgevision.runtime.bundle import load_bundle
from edgevision.runtime.frames import Frame
from edgevision.runtime.pipeline import Pipeline
from edgevision.runtime.predictor import Predictor
from edgevision.runtime.prometheus import to_prometheus
from edgevision.runtime.results import Detections
from edgevision.runtime.sources import open_source
from edgevision.runtime.streams import StreamMux

pytest.importorskip("cv2")


class Recorder:
    def __init__(self) -> None:
        self.got: list[tuple[int, int]] = []
        self.closed = 0
        self.source = ""

    def start(self, ctx: object) -> None:
        self.source = getattr(ctx, "source", "")

    def write(self, frame: Frame, det: Detections) -> None:
        self.got.append((frame.stream_id, frame.index))

    def close(self) -> None:
        self.closed += 1


def predictor(tmp_path: Path, batch: int | str = "batch", delay: float = 0.0) -> Predictor:
    return Predictor(load_bundle(make_batch_bundle(tmp_path / f"b{batch}", batch)), EchoBackend(batch, delay))


@pytest.mark.parametrize("batch", ["batch", 1, 4])
def test_files_are_lossless_per_stream_and_batched_results_match_single_frame_calls(tmp_path: Path,
                                                                                    batch: int | str) -> None:
    pred = predictor(tmp_path, batch, delay=0.02)  # the model is the bottleneck: the readers keep ahead of it
    lengths = [12, 5, 9]
    uris = [synthetic(seed, frames=n) for seed, n in enumerate(lengths)]
    with Pipeline(pred, uris) as pipe:
        pairs = list(pipe.iter_frames())
    for sid, n in enumerate(lengths):
        assert [f.index for f, _ in pairs if f.stream_id == sid] == list(range(n)), f"stream {sid} in order, whole"
    sizes = pred.backend.sizes  # type: ignore[attr-defined]
    if batch == "batch":
        assert max(sizes) == 3 and len(sizes) < sum(lengths), "streams share inference calls"
    else:
        assert set(sizes) == {batch}
    single = predictor(tmp_path / "ref")  # one frame per call
    for frame, det in pairs:
        assert det.stream_id == frame.stream_id and det.frame_index == frame.index
        assert det.meta["source"] == uris[frame.stream_id]
        want = single.predict(frame.image)
        np.testing.assert_allclose(det.scores, want.scores, rtol=1e-6)  # this frame's own result, not a neighbour's
    scores = {sid: {round(float(d.scores[0]), 4) for f, d in pairs if f.stream_id == sid} for sid in range(3)}
    assert len(set.union(*scores.values())) > 3, "the echo scores tell the streams' frames apart"


@pytest.mark.parametrize("replicas", [1, 2])
def test_batch_one_model_says_once_that_it_runs_frame_by_frame(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                               replicas: int) -> None:
    preds = [predictor(tmp_path / str(i), 1) for i in range(replicas)]  # files: one model, several sessions
    with caplog.at_level(logging.WARNING, logger="edgevision.streams"):
        Pipeline(preds, [synthetic(0, 6), synthetic(1, 6)]).run()
    lines = [r.getMessage() for r in caplog.records if "batches of 1" in r.getMessage()]
    assert len(lines) == 1 and "--dynamic-batch" in lines[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgevision.streams"):
        Pipeline(preds[0], [synthetic(0, 3)]).run()
    assert not [r for r in caplog.records if "batches of" in r.getMessage()], "one stream: nothing to batch"


def test_per_stream_sinks_get_their_stream_and_global_sinks_all(tmp_path: Path) -> None:
    everything, first, second = Recorder(), Recorder(), Recorder()
    uris = [synthetic(0, 4), synthetic(1, 6)]
    Pipeline(predictor(tmp_path), uris, [everything], stream_sinks={0: [first], 1: [second]}).run()
    assert sorted(everything.got) == [(0, i) for i in range(4)] + [(1, i) for i in range(6)]
    assert first.got == [(0, i) for i in range(4)] and second.got == [(1, i) for i in range(6)]
    assert first.source == uris[0] and second.source == uris[1]
    assert everything.closed == first.closed == second.closed == 1


def test_a_failing_and_an_early_ending_stream_do_not_stop_the_others(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()
    sources = [open_source(synthetic(0, 20)), FailingSource(good=3), open_source(synthetic(1, 2))]
    with caplog.at_level(logging.ERROR, logger="edgevision.streams"):
        pipe = Pipeline(predictor(tmp_path), sources, [rec])
        snap = pipe.run()
    counts = {sid: sum(1 for s, _ in rec.got if s == sid) for sid in range(3)}
    assert counts == {0: 20, 1: 3, 2: 2}
    errors = [r.getMessage() for r in caplog.records if "device unplugged" in r.getMessage()]
    assert len(errors) == 1 and "stream 1 (failing://cam)" in errors[0]
    streams = {st["id"]: st for st in snap["streams"]}
    assert "device unplugged" in streams[1]["error"] and "error" not in streams[0]
    assert streams[0]["frames"] == 20 and streams[2]["frames"] == 2
    text = to_prometheus(snap)
    assert 'edgevision_stream_up{stream="1",name="failing://cam",source="failing://cam"} 0' in text
    assert 'edgevision_stream_frames_total{stream="0"' in text


def _fake_frame(sid: int, i: int, t: float) -> Frame:
    return Frame(np.zeros((4, 4, 3), np.uint8), i, t, sid, f"s{sid}")


def test_round_robin_serves_every_stream_in_turn_when_the_batch_is_smaller() -> None:
    sources = [open_source(synthetic(k, 8)) for k in range(4)]
    for k, s in enumerate(sources):
        s.stream_id = k
    mux = StreamMux(sources, capacity=8, max_batch=2)
    for i in range(4):
        mux.reader(i)()  # lossless, capacity 8: each reader queues its whole (8-frame) stream and ends
    served: list[list[int]] = []
    while (got := mux.next_batch(2)) is not None:
        served.append([f.stream_id for f in got[1]])
    assert served[:4] == [[0, 1], [2, 3], [0, 1], [2, 3]]
    assert sum(len(b) for b in served) == 32 and all(len(b) == 2 for b in served)


def test_batching_timeout_keeps_a_slow_camera_from_holding_the_others() -> None:
    fast = open_source(synthetic(0, None, fps=100))
    fast.stream_id = 0
    slow = StallingSource(period=2.0)
    slow.stream_id = 1
    mux = StreamMux([fast, slow], timeout_s=0.02)
    import threading

    threads = [threading.Thread(target=mux.reader(i), daemon=True) for i in range(2)]
    for t in threads:
        t.start()
    try:
        waits = []
        for _ in range(5):
            t0 = time.monotonic()
            got = mux.next_batch(2)
            assert got is not None and [f.stream_id for f in got[1]] == [0]
            waits.append(time.monotonic() - t0)
        assert max(waits) < 0.5, f"a batch waited {max(waits):.2f} s for the stalled camera"
    finally:
        mux.close()
        for t in threads:
            t.join(5)
    assert not any(t.is_alive() for t in threads)


def test_live_streams_keep_the_newest_frame_each_and_none_starves(tmp_path: Path) -> None:
    pred = predictor(tmp_path, delay=0.01)
    uris = [synthetic(k, None, fps=200) for k in range(3)]
    pipe = Pipeline(pred, uris)
    assert pipe.newest
    got: list[int] = []
    t_end = time.monotonic() + 1.5
    for det in pipe:
        got.append(det.stream_id)
        if time.monotonic() > t_end:
            break
    snap = pipe.metrics.snapshot()
    per = [got.count(k) for k in range(3)]
    assert min(per) >= 0.8 * (sum(per) / 3), per
    assert all(st["dropped"] > 0 for st in snap["streams"]), "200 fps cameras outrun a 10 ms model"
    assert max(pred.backend.sizes) == 3  # type: ignore[attr-defined]


def test_image_folder_results_carry_the_file_name(tmp_path: Path) -> None:
    import cv2

    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("b10.png", "b2.png", "a.jpg"):
        cv2.imwrite(str(folder / name), np.full((48, 64, 3), 90, np.uint8))
    with Pipeline(predictor(tmp_path), str(folder)) as pipe:
        dets = list(pipe)
    assert [d.meta["file"] for d in dets] == ["a.jpg", "b2.png", "b10.png"]


def test_wall_rate_counts_start_up_and_steady_rate_does_not() -> None:
    from edgevision.runtime.metrics import Metrics

    m = Metrics(streams=[(0, "a", "a://"), (1, "b", "b://")])
    m.t_begin = 100.0  # the command started; the first result comes 2 s later (model open), then 10 per second
    for i in range(21):
        m.add_result(0.01, t_done=102.0 + i * 0.1, stream=i % 2)
    m.add_dropped(3, stream=1)
    snap = m.snapshot()
    assert snap["fps_steady"] == pytest.approx(20 / 2.0) and snap["fps_avg"] == snap["fps_steady"]
    assert snap["fps_wall"] == pytest.approx(21 / 4.0) and snap["startup_s"] == pytest.approx(2.0)
    a, b = snap["streams"]
    assert (a["frames"], b["frames"], a["dropped"], b["dropped"]) == (11, 10, 0, 3)
    assert a["fps_steady"] == pytest.approx(10 / 2.0)
    assert "fps steady" in m.summary() and "stream 1 b: 10 frames, dropped 3" in m.summary()


@pytest.mark.parametrize("live", [True, False])
def test_stop_ends_every_reader_and_closes_every_sink(tmp_path: Path, live: bool) -> None:
    import threading

    rec, own = Recorder(), Recorder()
    uris = [synthetic(k, None, fps=100 if live else None) for k in range(3)]
    pipe = Pipeline(predictor(tmp_path, delay=0.005), [*uris[:2], StallingSource(period=0.5)], [rec],
                    stream_sinks={2: [own]})
    threading.Timer(0.8, pipe.stop).start()
    t0 = time.monotonic()
    pipe.run()
    assert time.monotonic() - t0 < 5 and pipe.alive_threads() == []
    assert rec.closed == own.closed == 1 and len(rec.got) > 0
    assert all(s.closed for s in pipe.sources)
