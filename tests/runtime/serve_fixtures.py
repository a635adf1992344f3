"""A tiny detector whose output depends on each image's pixels, with a dynamic or fixed batch, for the service.

``images [B, 3, 32, 32] -> output0 [B, 7, 16] = head + mean(image) * gain`` (onnx.helper, no torch): each image
yields a class-1 box whose centre, width and score move with that image's mean brightness, and a class-2 box
whose score does, so a service that mixed up the images of a batch would answer with another image's boxes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SIZE, NC, N = 32, 3, 16


def make_pixel_onnx(path: Path, batch: int | str = "batch") -> Path:
    import onnx

    h = onnx.helper
    images = h.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [batch, 3, SIZE, SIZE])
    output = h.make_tensor_value_info("output0", onnx.TensorProto.FLOAT, [batch, 4 + NC, N])
    head = np.zeros((1, 4 + NC, N), np.float32)
    gain = np.zeros_like(head)
    head[0, :4, 0] = [10, 16, 6, 8]
    gain[0, :4, 0] = [12, 0, 6, 0]
    head[0, 4 + 1, 0], gain[0, 4 + 1, 0] = 0.5, 0.4
    head[0, :4, 1] = [8, 24, 4, 4]
    head[0, 4 + 2, 1], gain[0, 4 + 2, 1] = 0.2, 0.7
    inits = [onnx.numpy_helper.from_array(head, "head"), onnx.numpy_helper.from_array(gain, "gain"),
             onnx.numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "b11")]
    nodes = [
        h.make_node("ReduceMean", ["images"], ["m4"], axes=[1, 2, 3], keepdims=1),
        h.make_node("Reshape", ["m4", "b11"], ["m"]),
        h.make_node("Mul", ["m", "gain"], ["mg"]),
        h.make_node("Add", ["head", "mg"], ["output0"]),
    ]
    model = h.make_model(h.make_graph(nodes, "tiny-pixel", [images], [output], inits),
                         opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return path


def make_pixel_bundle(root: Path, batch: int | str = "batch") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    make_pixel_onnx(root / "model.onnx", batch)
    side = {"name": "tiny-pixel", "task": "detect", "class_names": ["a", "b", "c"],
            "input": {"name": "images", "shape": [batch, 3, SIZE, SIZE]},
            "output": {"layout": "yolo", "names": ["output0"], "num_classes": NC},
            "postprocess": {"conf": 0.25, "iou": 0.5, "max_det": 10}}
    (root / "edgevision.json").write_text(json.dumps(side))
    return root


def image_bytes(value: int, fmt: str = ".png", width: int = 48, height: int = 40) -> bytes:
    """An image whose pixels vary around ``value`` (so decoding matters), encoded as ``fmt``."""
    import cv2

    rng = np.random.default_rng(value)
    img = np.clip(value + rng.integers(-20, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(fmt, img)
    assert ok
    return buf.tobytes()
