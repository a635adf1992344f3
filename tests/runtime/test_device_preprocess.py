"""Backends that preprocess on the device (TensorRT's CUDA letterbox): the pipeline hands them raw frames
from its inference thread, and a device path that cannot start falls back to the CPU once, saying so.

A fake backend stands in for TensorRT here (no GPU): it does the CPU letterbox inside ``infer_image`` and
records what it was given. The real kernel is compared with the CPU path in ``test_trt_backend.py`` /
``test_preprocess_gpu.py`` where a GPU is present."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stream_fixtures import make_bundle, make_video

from edgevision.runtime.backends.base import Backend
from edgevision.runtime.backends.onnxruntime import OrtBackend
from edgevision.runtime.bundle import load_bundle
from edgevision.runtime.errors import UserError
from edgevision.runtime.pipeline import Pipeline
from edgevision.runtime.predictor import Predictor
from edgevision.runtime.preprocess import Letterbox, letterbox, to_tensor

pytest.importorskip("onnx")


class FakeDeviceBackend(Backend):
    """ONNX Runtime underneath; ``infer_image`` letterboxes like the GPU kernel would (CPU reference)."""

    name = "fake-device"
    device_preprocess = True

    def __init__(self, model: Path, fail: list[BaseException] | None = None) -> None:
        self.ort = OrtBackend(model, providers=["CPUExecutionProvider"])
        self.inputs, self.outputs = self.ort.inputs, self.ort.outputs
        self.images: list[tuple[int, ...]] = []
        self.tensor_calls = 0
        self.fail = list(fail or [])

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.tensor_calls += 1
        return self.ort.infer(feed)

    def infer_image(self, image: np.ndarray, spec: Any = None, *, pad_value: int = 114,
                    size: tuple[int, int] | None = None) -> tuple[dict[str, np.ndarray], Letterbox]:
        if self.fail:
            raise self.fail.pop(0)
        self.images.append(image.shape)
        assert size is not None  # the sidecar's input size: engines with dynamic H/W need it
        boxed, lb = letterbox(image, size, pad_value)
        return self.ort.infer({self.inputs[0].name: to_tensor(boxed, spec)}), lb

    def close(self) -> None:
        self.ort.close()


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("devpre")
    return {"bundle": make_bundle(root / "b"), "video": make_video(root / "v.avi", 12)}


def _boxes(pipe: Pipeline) -> list[list[float]]:
    return [d.xyxy.round(3).tolist() for d in pipe]


def test_pipeline_hands_raw_frames_to_the_device(assets: dict[str, Path]) -> None:
    bundle = load_bundle(assets["bundle"])
    be = FakeDeviceBackend(bundle.model_path)
    with Pipeline(Predictor(bundle, be), str(assets["video"])) as pipe:
        got = _boxes(pipe)
        snap = pipe.metrics.snapshot()
    with Pipeline(assets["bundle"], str(assets["video"])) as cpu:
        expected = _boxes(cpu)
    assert got == expected and len(got) == 12  # same detections in source pixels, every frame, in order
    assert be.images == [(48, 64, 3)] * 12 and be.tensor_calls == 0  # raw frames only, never CPU tensors
    assert snap["stages"]["preprocess"]["count"] == 0 and snap["stages"]["infer"]["count"] == 12


def test_a_device_path_that_cannot_start_falls_back_once(assets: dict[str, Path],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    bundle = load_bundle(assets["bundle"])
    be = FakeDeviceBackend(bundle.model_path, fail=[RuntimeError("nvcc not found")])
    pred = Predictor(bundle, be)
    image = np.zeros((48, 64, 3), np.uint8)
    with caplog.at_level(logging.WARNING, logger="edgevision.predictor"):
        raw, lb = pred.infer_image(image)
        pred.infer_image(image)
    assert "GPU preprocessing unavailable (nvcc not found)" in caplog.text
    assert not pred.device_preprocess and be.tensor_calls == 2 and be.images == []
    np.testing.assert_array_equal(raw, pred.infer(pred.preprocess(image)[0]))
    assert lb == pred.preprocess(image)[1]


def test_failures_after_a_good_start_and_user_errors_are_not_hidden(assets: dict[str, Path]) -> None:
    bundle = load_bundle(assets["bundle"])
    image = np.zeros((48, 64, 3), np.uint8)
    be = FakeDeviceBackend(bundle.model_path)
    pred = Predictor(bundle, be)
    pred.infer_image(image)
    be.fail.append(RuntimeError("illegal memory access"))
    with pytest.raises(RuntimeError, match="illegal memory access"):
        pred.infer_image(image)
    bad = Predictor(bundle, FakeDeviceBackend(bundle.model_path, fail=[UserError("infer_image: expected HxWx3")]))
    with pytest.raises(UserError, match="expected HxWx3"):
        bad.infer_image(image)
    assert bad.device_preprocess
