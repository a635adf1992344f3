"""Tiny bundles for the hand-off tests (export-triton, export-deepstream): no torch, graphs from onnx.helper.

The graph ignores the pixels (``head + 0 * mean(images)``, so the batch axis follows the input's) and emits a
yolo head ``[B, 4 + C + 3K, N]``; ``nms_bundle`` appends the toolkit's in-graph NMS (layout ``nms``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

SIZE, N = 32, 16


def make_onnx(path: Path, *, batch: int | str = 1, nc: int = 3, nk: int = 0) -> Path:
    import onnx

    h = onnx.helper
    rows = 4 + nc + 3 * nk
    head = np.zeros((1, rows, N), np.float32)
    head[0, :4, 0] = [16, 16, 8, 8]
    head[0, 4 + 1, 0] = 0.9
    images = h.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [batch, 3, SIZE, SIZE])
    output = h.make_tensor_value_info("output0", onnx.TensorProto.FLOAT, [batch, rows, N])
    inits = [onnx.numpy_helper.from_array(head, "head"), onnx.numpy_helper.from_array(np.zeros(1, np.float32), "z")]
    nodes = [
        h.make_node("ReduceMean", ["images"], ["m"], axes=[1, 2, 3], keepdims=1),  # [B, 1, 1, 1]
        h.make_node("Squeeze", ["m", "sq"], ["m3"]),  # [B, 1, 1]
        h.make_node("Mul", ["m3", "z"], ["m0"]),
        h.make_node("Add", ["head", "m0"], ["output0"]),  # [B, rows, N]
    ]
    inits.append(onnx.numpy_helper.from_array(np.array([3], np.int64), "sq"))
    model = h.make_model(h.make_graph(nodes, "tiny", [images], [output], inits),
                         opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_bundle(root: Path, *, batch: int | str = 1, task: str = "detect", precision: str = "fp32",
                input_extra: dict[str, Any] | None = None, **side_extra: Any) -> Path:
    nc, nk = 3, (4 if task == "pose" else 0)
    root.mkdir(parents=True, exist_ok=True)
    make_onnx(root / "model.onnx", batch=batch, nc=nc, nk=nk)
    side: dict[str, Any] = {
        "name": f"tiny-{task}", "task": task, "class_names": ["cat", "dog", "bird"], "precision": precision,
        "input": {"name": "images", "shape": [batch, 3, SIZE, SIZE], **(input_extra or {})},
        "output": {"layout": "yolo", "names": ["output0"], "num_classes": nc, "num_keypoints": nk},
        "postprocess": {"conf": 0.3, "iou": 0.5, "max_det": 50},
        **side_extra,
    }
    if nk:
        side["keypoints"] = {"names": ["a", "b", "c", "d"]}
    (root / "edgevision.json").write_text(json.dumps(side))
    return root


def nms_bundle(root: Path, *, task: str = "detect") -> Path:
    """A static-batch bundle whose graph ends in the toolkit's NMS (output layout ``nms``)."""
    import onnx

    from edgevision.toolkit.nms_graph import NmsSettings, append_nms, nms_output_names

    make_bundle(root, task=task)
    side = json.loads((root / "edgevision.json").read_text())
    nk = side["output"]["num_keypoints"]
    model = append_nms(onnx.load(str(root / "model.onnx")), num_classes=3, num_keypoints=nk,
                       settings=NmsSettings(conf=0.001, iou=0.5, max_det=50))
    onnx.save(model, str(root / "model.onnx"))
    side["output"].update(layout="nms", names=nms_output_names(nk))
    (root / "edgevision.json").write_text(json.dumps(side))
    return root


def add_engine(root: Path, *, file: str = "jetson-orin-nano-8gb.fp16.plan", profile: str = "jetson-orin-nano-8gb",
               precision: str = "fp16", **extra: Any) -> bytes:
    """List a (fake) plain plan in the sidecar; returns its bytes (the hand-off copies it, never opens it)."""
    data = b"not a real plan: " + file.encode()
    (root / file).write_bytes(data)
    side = json.loads((root / "edgevision.json").read_text())
    side["engines"] = [*side.get("engines", []), {"file": file, "device_profile": profile,
                                                  "tensorrt_version": "10.3.0", "gpu_sm": "8.7",
                                                  "precision": precision, **extra}]
    (root / "edgevision.json").write_text(json.dumps(side))
    return data
