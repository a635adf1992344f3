"""Helpers for the multi-stream tests: a bundle with a chosen batch axis, a backend whose output depends on
each batch row (so a result mixed up between streams shows), sources that fail or stall.

``EchoBackend`` emits, for every row of the batch, one box (class 1) whose score is 0.3 + 0.6 x the row's
mean input value: a frame's result depends on that frame's pixels only, so batched results can be checked
against one-frame calls on the same frames.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
from stream_fixtures import NC, SIZE, N, head_output

from edgevision.runtime.backends.base import Backend, TensorSpec
from edgevision.runtime.sources.base import Source

__all__ = ["EchoBackend", "FailingSource", "StallingSource", "make_batch_bundle", "make_dynamic_bundle", "synthetic"]


def make_batch_bundle(root: Path, batch: int | str = "batch") -> Path:
    """A sidecar-only bundle (the tests give their own backend) whose input batch axis is ``batch``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.onnx").write_bytes(b"")  # never opened: predictors get an EchoBackend
    side = {"name": "echo", "task": "detect", "class_names": ["a", "b", "c"],
            "input": {"name": "images", "shape": [batch, 3, SIZE, SIZE]},
            "output": {"layout": "yolo", "names": ["output0"], "num_classes": NC}}
    (root / "edgevision.json").write_text(json.dumps(side))
    return root


class EchoBackend(Backend):
    """See the module docstring; ``batch`` is the model's batch axis (an int: fixed); records call sizes."""

    name = "echo-fake"

    def __init__(self, batch: int | str = "batch", delay: float = 0.0) -> None:
        self.batch, self.delay = batch, delay
        self.inputs = [TensorSpec("images", (batch, 3, SIZE, SIZE), "float32")]
        self.outputs = [TensorSpec("output0", (batch, 4 + NC, N), "float32")]
        self.sizes: list[int] = []
        self._lock = threading.Lock()

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = feed["images"]
        if isinstance(self.batch, int) and x.shape[0] != self.batch:
            raise ValueError(f"fixed batch {self.batch}, got {x.shape[0]}")
        with self._lock:
            self.sizes.append(int(x.shape[0]))
        if self.delay:
            time.sleep(self.delay)
        out = np.zeros((x.shape[0], 4 + NC, N), np.float32)
        out[:, :4, 0] = [16, 16, 8, 8]
        out[:, 4 + 1, 0] = 0.3 + 0.6 * x.reshape(x.shape[0], -1).mean(axis=1)
        return {"output0": out}

    def close(self) -> None:
        pass


def synthetic(seed: int, frames: int | None = 12, fps: float | None = None) -> str:
    uri = f"synthetic://?width=64&height=48&pool=4&seed={seed}"
    if frames is not None:
        uri += f"&frames={frames}"
    if fps is not None:
        uri += f"&fps={fps:g}"
    return uri


class FailingSource(Source):
    """Yields ``good`` grey frames, then its read raises (a camera whose driver dies)."""

    def __init__(self, good: int, live: bool = False) -> None:
        super().__init__("failing://cam")
        self.is_live, self.good, self.n = live, good, 0

    def _read(self) -> np.ndarray | None:
        if self.n >= self.good:
            raise OSError("device unplugged")
        self.n += 1
        return np.full((48, 64, 3), 77, np.uint8)


class StallingSource(Source):
    """A live source whose every read takes ``period`` seconds (a slow camera); stops reading when closed."""

    is_live = True

    def __init__(self, period: float, frames: int = 1000) -> None:
        super().__init__("stalling://cam")
        self.period, self.left = period, frames

    def _read(self) -> np.ndarray | None:
        if self.left <= 0 or self._closed.wait(self.period):
            return None
        self.left -= 1
        return np.full((48, 64, 3), 200, np.uint8)


def make_dynamic_bundle(root: Path) -> Path:
    """A real ONNX bundle with a dynamic batch: ``images [B,3,S,S] -> output0 [B, 4 + NC, N]``, the constant
    head of ``stream_fixtures`` (one class-1 box per frame) broadcast over the batch."""
    import onnx



    h = onnx.helper
    root.mkdir(parents=True, exist_ok=True)
    images = h.make_tensor_value_info("images", onnx.TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])
    output = h.make_tensor_value_info("output0", onnx.TensorProto.FLOAT, ["batch", 4 + NC, N])
    inits = [onnx.numpy_helper.from_array(head_output(), "head"),
             onnx.numpy_helper.from_array(np.zeros(1, np.float32), "z"),
             onnx.numpy_helper.from_array(np.array([3], np.int64), "ax3")]
    nodes = [h.make_node("ReduceMean", ["images"], ["m"], axes=[1, 2, 3], keepdims=1),
             h.make_node("Squeeze", ["m", "ax3"], ["m3"]),
             h.make_node("Mul", ["m3", "z"], ["m0"]),
             h.make_node("Add", ["head", "m0"], ["output0"])]
    model = h.make_model(h.make_graph(nodes, "tiny-dyn", [images], [output], inits),
                         opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(root / "model.onnx"))
    side = {"name": "tiny-dyn", "task": "detect", "class_names": ["a", "b", "c"],
            "input": {"name": "images", "shape": ["batch", 3, SIZE, SIZE]},
            "output": {"layout": "yolo", "names": ["output0"], "num_classes": NC}}
    (root / "edgevision.json").write_text(json.dumps(side))
    return root
