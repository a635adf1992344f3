"""Shared helpers for the streaming tests: a tiny detector bundle, a test video, a slow fake backend.

The bundle's ONNX graph (built with onnx.helper, no torch) ignores the pixels and always emits one box:
class 1, score 0.9, centred at (16, 16) in its 32x32 input, so every frame yields exactly one detection.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from edgevision.runtime.backends.base import Backend, TensorSpec

SIZE, NC, N = 32, 3, 16


def head_output() -> np.ndarray:
    """The constant ``[1, 4 + NC, N]`` yolo head the tiny model emits."""
    out = np.zeros((1, 4 + NC, N), np.float32)
    out[0, :4, 0] = [16, 16, 8, 8]
    out[0, 4 + 1, 0] = 0.9
    return out


def make_onnx(path: Path, metadata: dict[str, str] | None = None, *, size: int | str = SIZE,
              out_shape: tuple[int | str, ...] = (1, 4 + NC, N)) -> Path:
    """``images [1,3,S,S] -> output0 = const + 0 * mean(images)`` (touches the input so it stays an input)."""
    import onnx

    h = onnx.helper
    shape = [1, 3, size, size]
    images = h.make_tensor_value_info("images", onnx.TensorProto.FLOAT, shape)
    output = h.make_tensor_value_info("output0", onnx.TensorProto.FLOAT, list(out_shape))
    const = head_output() if out_shape == (1, 4 + NC, N) else np.zeros(
        [d if isinstance(d, int) else 1 for d in out_shape], np.float32)
    inits = [onnx.numpy_helper.from_array(const, "head"), onnx.numpy_helper.from_array(np.zeros(1, np.float32), "z")]
    nodes = [
        h.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
        h.make_node("Mul", ["m", "z"], ["m0"]),
        h.make_node("Add", ["head", "m0"], ["output0"]),
    ]
    model = h.make_model(h.make_graph(nodes, "tiny", [images], [output], inits),
                         opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    for k, v in (metadata or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


def make_bundle(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    make_onnx(root / "model.onnx")
    side = {"name": "tiny", "task": "detect", "class_names": ["a", "b", "c"],
            "input": {"name": "images", "shape": [1, 3, SIZE, SIZE]},
            "output": {"layout": "yolo", "names": ["output0"], "num_classes": NC}}
    (root / "edgevision.json").write_text(json.dumps(side))
    return root


def make_video(path: Path, frames: int, width: int = 64, height: int = 48, fps: float = 30.0) -> Path:
    """An MJPG .avi whose frame i has every pixel = i (so order is checkable)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for i in range(frames):
        writer.write(np.full((height, width, 3), (i * 8) % 256, np.uint8))
    writer.release()
    return path


class SlowBackend(Backend):
    """Sleeps ``delay`` seconds per call (no CPU), then returns the tiny model's constant head."""

    name = "slow-fake"

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.inputs = [TensorSpec("images", (1, 3, SIZE, SIZE), "float32")]
        self.outputs = [TensorSpec("output0", (1, 4 + NC, N), "float32")]
        self.calls = 0

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        time.sleep(self.delay)
        return {"output0": head_output()}

    def close(self) -> None:
        pass

