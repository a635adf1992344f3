"""Stopping a pipeline: Ctrl-C (even twice) waits for every stage thread, every computed result reaches the
sinks, a model that cannot open fails before any frame is read or sink started, newest keeps every result."""

from __future__ import annotations

import _thread
import signal
import threading
import time
from pathlib import Path

import pytest
from stream_fixtures import SlowBackend, make_bundle

from edgevision.runtime.bundle import load_bundle
from edgevision.runtime.frames import Frame
from edgevision.runtime.pipeline import Pipeline
from edgevision.runtime.predictor import Predictor
from edgevision.runtime.results import Detections
from edgevision.runtime.sources import open_source

pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

LIVE = "synthetic://?fps=200&width=64&height=48&pool=2"


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("stop") / "tiny")


class SlowSink:
    """Slow writes and a slow close, like a big video being finalised."""

    def __init__(self, write_s: float = 0.0, close_s: float = 0.0) -> None:
        self.write_s, self.close_s = write_s, close_s
        self.frames: list[int] = []
        self.closed = False
        self.started = False

    def start(self, ctx: object) -> None:
        self.started = True

    def write(self, frame: Frame, detections: Detections) -> None:
        time.sleep(self.write_s)
        self.frames.append(frame.index)

    def close(self) -> None:
        time.sleep(self.close_s)
        self.closed = True


def test_ctrl_c_twice_still_waits_for_every_stage(bundle_dir: Path) -> None:
    """A stage thread still inside OpenCV or ONNX Runtime when the interpreter exits is the SIGABRT
    ("terminate called without an active exception"): run() must not return while one runs."""
    # interrupt_main() does nothing while SIGINT is ignored (pytest started by a shell without job control)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _interrupted_twice(bundle_dir)
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupted_twice(bundle_dir: Path) -> None:
    sink = SlowSink(write_s=0.01, close_s=1.5)
    pipe = Pipeline(Predictor(load_bundle(bundle_dir), SlowBackend(0.005)), open_source(LIVE), [sink])

    def interrupt() -> None:
        while not sink.frames:
            time.sleep(0.01)
        time.sleep(0.3)
        _thread.interrupt_main()
        time.sleep(0.6)  # the second Ctrl-C lands while the sink is closing
        _thread.interrupt_main()

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        pipe.run()
    assert pipe.alive_threads() == []
    assert sink.closed
    assert len(sink.frames) == pipe.metrics.snapshot()["frames"] > 0, "every computed result was written"


def test_newest_policy_writes_every_computed_result(bundle_dir: Path) -> None:
    sink = SlowSink(write_s=0.004)  # slower than the model: results wait for the sink instead of being dropped
    pipe = Pipeline(Predictor(load_bundle(bundle_dir), SlowBackend(0.002)), open_source(LIVE), [sink], max_frames=200)
    snap = pipe.run()
    assert pipe.newest and len(sink.frames) == snap["frames"] > 0


def test_a_model_that_cannot_open_starts_nothing(bundle_dir: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(bundle_dir, broken)
    (broken / "model.onnx").write_bytes(b"not an onnx model")
    sink = SlowSink()
    src = open_source("synthetic://?frames=50&width=64&height=48")
    pipe = Pipeline(broken, src, [sink])
    with pytest.raises(Exception, match=r"model\.onnx"):
        pipe.run()
    assert not sink.started and sink.frames == [] and sink.closed
    assert not pipe.model_opened and pipe.alive_threads() == []
    assert [n for n in (t.name for t in threading.enumerate()) if n.startswith("edgevision-capture")] == []
