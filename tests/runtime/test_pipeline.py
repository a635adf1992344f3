"""The threaded pipeline: lossless files, newest-frame live sources, bounded latency, clean stops."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stream_fixtures import SlowBackend, make_bundle, make_video

from edgevision.runtime.bundle import load_bundle
from edgevision.runtime.errors import UserError
from edgevision.runtime.frames import Frame
from edgevision.runtime.model_plan import plan_inference
from edgevision.runtime.pipeline import Pipeline
from edgevision.runtime.predictor import Predictor
from edgevision.runtime.results import Detections
from edgevision.runtime.sinks.base import Sink, SinkContext
from edgevision.runtime.sources import open_source

pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

LIVE = "synthetic://?fps=200&width=64&height=48&pool=2"


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("pipe") / "tiny")


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("vid") / "clip.avi", 20)


class Recorder:
    """A sink that remembers what it got (and can fail on demand)."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.ctx: SinkContext | None = None
        self.frames: list[int] = []
        self.closed = 0
        self.fail_at = fail_at

    def start(self, ctx: SinkContext) -> None:
        self.ctx = ctx

    def write(self, frame: Frame, detections: Detections) -> None:
        if self.fail_at is not None and len(self.frames) == self.fail_at:
            raise UserError("recorder: disk full")
        assert frame.index == detections.frame_index
        self.frames.append(frame.index)

    def close(self) -> None:
        self.closed += 1


def slow(bundle_dir: Path, delay: float) -> Predictor:
    return Predictor(load_bundle(bundle_dir), SlowBackend(delay))


def test_file_is_lossless_in_order_with_typed_results(bundle_dir: Path, video: Path) -> None:
    rec = Recorder()
    assert isinstance(rec, Sink)
    with Pipeline(bundle_dir, str(video), [rec]) as pipe:
        assert not pipe.newest
        pairs = list(pipe.iter_frames())
    assert [f.index for f, _ in pairs] == list(range(20)) == rec.frames
    assert rec.closed == 1 and rec.ctx is not None and rec.ctx.class_names == ["a", "b", "c"]
    frame, det = pairs[3]
    assert isinstance(det, Detections) and len(det) == 1 and det.class_ids.tolist() == [1]
    np.testing.assert_allclose(det.xyxy[0], [24, 16, 40, 32], atol=0.6)  # 32 px input -> 64x48 source
    assert det.meta["t_capture"] == frame.timestamp <= det.meta["t_result"]
    assert det.meta["latency_ms"] > 0 and det.meta["image_size"] == [48, 64]
    snap = pipe.metrics.snapshot()
    assert snap["frames"] == 20 and snap["dropped"] == 0 and not snap["running"]
    assert all(snap["stages"][s]["count"] == 20 for s in ("capture", "preprocess", "infer", "postprocess", "sink"))


def test_replicas_finish_out_of_order_but_results_stay_in_order(bundle_dir: Path, video: Path) -> None:
    b = load_bundle(bundle_dir)
    fast, lazy = Predictor(b, SlowBackend(0.0)), Predictor(b, SlowBackend(0.02))
    dets = list(Pipeline([fast, lazy], str(video)))
    assert [d.frame_index for d in dets] == list(range(20))
    assert fast.backend.calls > lazy.backend.calls > 0  # type: ignore[attr-defined]


def test_plan_inference_throughput_vs_latency(bundle_dir: Path) -> None:
    model = bundle_dir / "model.onnx"
    assert plan_inference(model, throughput=False, threads=2) == (1, {"intra_op_threads": 2})
    assert plan_inference(model, throughput=True, threads=4, replicas=1) == (1, {"intra_op_threads": 4})
    assert plan_inference("m.engine", throughput=True) == (1, {})


def test_lossless_never_drops_with_a_slow_model(bundle_dir: Path, video: Path) -> None:
    snap = Pipeline(slow(bundle_dir, 0.01), str(video), queue_size=2).run()
    assert snap["frames"] == 20 and snap["dropped"] == 0


def test_newest_frame_drops_and_latency_stays_flat_under_overload(bundle_dir: Path) -> None:
    delay = 0.03
    pipe = Pipeline(slow(bundle_dir, delay), open_source(LIVE), max_frames=240)  # 1.2 s at 200 fps
    lat = [d.meta["latency_ms"] for d in pipe]
    snap = pipe.metrics.snapshot()
    assert pipe.newest and snap["dropped"] > 100 and 15 <= len(lat) <= 60
    infer = snap["stages"]["infer"]["p50"]
    assert infer >= delay * 1000
    assert np.median(lat) <= 1.3 * infer + 5, (lat, infer)
    third = len(lat) // 3
    assert np.median(lat[-third:]) <= np.median(lat[:third]) * 1.3 + 10  # no build-up over time
    # only frames that are inferred get preprocessed: dropped ones cost no CPU beyond their capture
    stages = snap["stages"]
    assert stages["preprocess"]["count"] == stages["infer"]["count"] < stages["capture"]["count"] / 2


def test_breaking_out_of_iteration_stops_everything(bundle_dir: Path) -> None:
    rec = Recorder()
    before = threading.active_count()
    pipe = Pipeline(slow(bundle_dir, 0.005), LIVE, [rec])
    for i, _ in enumerate(pipe):
        if i == 3:
            break
    assert rec.closed == 1 and len(rec.frames) >= 4
    assert pipe.alive_threads() == [] and threading.active_count() <= before + 1


@pytest.mark.parametrize("policy", ["lossless", "newest"])
def test_stop_from_another_thread_flushes_sinks(bundle_dir: Path, policy: str) -> None:
    rec = Recorder()
    pipe = Pipeline(slow(bundle_dir, 0.005), LIVE, [rec], drop_policy=policy)  # type: ignore[arg-type]
    timer = threading.Timer(0.3, pipe.stop)
    timer.start()
    t0 = time.monotonic()
    snap = pipe.run()
    assert time.monotonic() - t0 < 3 and rec.closed == 1 and len(rec.frames) > 0
    if policy == "lossless":  # every computed result reaches the sink, also those in flight at stop()
        assert snap["frames"] == len(rec.frames)
    else:  # newest: a sink that falls behind skips stale results (counted as dropped), by design
        assert snap["frames"] - snap["dropped"] <= len(rec.frames) <= snap["frames"]


def test_a_failing_sink_stops_the_run_and_every_sink_is_closed(bundle_dir: Path, video: Path) -> None:
    bad, good = Recorder(fail_at=2), Recorder()
    with pytest.raises(UserError, match="disk full"):
        Pipeline(bundle_dir, str(video), [good, bad]).run()
    assert bad.closed == good.closed == 1


def test_a_model_that_fails_to_run_surfaces_its_error(bundle_dir: Path, video: Path) -> None:
    class Broken(SlowBackend):
        def infer(self, feed: dict[str, Any]) -> dict[str, Any]:
            raise UserError("model.onnx: inference failed")

    pred = Predictor(load_bundle(bundle_dir), Broken(0))
    t0 = time.monotonic()
    with pytest.raises(UserError, match="inference failed"):
        Pipeline(pred, str(video)).run()
    assert time.monotonic() - t0 < 5


def test_bad_arguments(bundle_dir: Path, video: Path) -> None:
    with pytest.raises(UserError, match="drop_policy"):
        Pipeline(bundle_dir, str(video), drop_policy="fastest")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="not a bundle"):
        Pipeline(video.parent, str(video))
    pipe = Pipeline(slow(bundle_dir, 0), str(video), max_frames=2)
    pipe.run()
    with pytest.raises(UserError, match="runs once"):
        pipe.run()
