"""INT8 on DLA from a Q/DQ ONNX: implicit quantization through per-tensor dynamic ranges (TensorRT <= 10).

DLA runs only implicitly quantized INT8: TensorRT does not place Q/DQ layers on a DLA, so a Q/DQ
network built with ``--dla`` runs on the GPU (NVIDIA TensorRT #2222, Model-Optimizer #1661). The same
quantization can be handed to TensorRT the implicit way: remove each activation Q/DQ pair, keep its
scale as the tensor's dynamic range (``ITensor.set_dynamic_range(-amax, amax)`` with amax = 127 x
scale, TensorRT's symmetric INT8), and give the weights back as floats (DequantizeLinear of an INT8
initializer evaluated here; TensorRT's implicit INT8 quantizes weights itself, per channel). TensorRT
11 removed ``set_dynamic_range`` and implicit INT8, so there it is refused.

Hand-written on ``onnx`` (already a toolkit dependency) because no library does this rewrite: ONNX
Runtime's and Model-Optimizer's tools go the other way (insert Q/DQ), and Polygraphy's calibration
cache format is TensorRT's legacy calibrator, which edgevision does not use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgevision.runtime.errors import UserError

__all__ = ["qdq_to_dynamic_ranges"]


def _const(model: Any, name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            return np.asarray(numpy_helper.to_array(init))
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return np.asarray(numpy_helper.to_array(node.attribute[0].t))
    return None


def _dequantize(q: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, axis: int) -> np.ndarray:
    if scale.ndim == 1 and scale.size > 1:  # per channel along `axis`
        shape = [1] * q.ndim
        shape[axis] = scale.size
        scale = scale.reshape(shape)
        zp = zp.reshape(shape) if zp is not None else None
    zero = zp.astype(np.float32) if zp is not None else np.float32(0)
    return ((q.astype(np.float32) - zero) * scale.astype(np.float32)).astype(np.float32)


def qdq_to_dynamic_ranges(onnx_path: Path, out_path: Path) -> dict[str, float]:
    """Write ``onnx_path`` without Q/DQ to ``out_path``; return {tensor name: amax} of the activations."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    rename: dict[str, str] = {}
    ranges: dict[str, float] = {}
    drop: set[int] = set()
    new_inits = []
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        scale = _const(model, node.input[1])
        zp = _const(model, node.input[2]) if len(node.input) > 2 and node.input[2] else None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale is None:
            raise UserError(f"{onnx_path}: DequantizeLinear {node.name!r} has a non-constant scale")
        src = producer.get(node.input[0])
        weight = _const(model, node.input[0])
        if weight is not None:  # INT8 initializer -> float weights for TensorRT to quantize itself
            new_inits.append(numpy_helper.from_array(_dequantize(weight, scale, zp, axis), node.output[0]))
            drop.add(id(node))
            continue
        if src is None or src.op_type != "QuantizeLinear":
            raise UserError(f"{onnx_path}: DequantizeLinear {node.name!r} does not follow a QuantizeLinear")
        if scale.size != 1 or (zp is not None and np.any(zp != 0)):
            raise UserError(f"{onnx_path}: activation Q/DQ {src.name!r} is not per-tensor symmetric; DLA INT8 "
                            "takes one symmetric range per tensor")
        x = src.input[0]
        if _const(model, x) is None:
            ranges[x] = max(ranges.get(x, 0.0), float(scale.reshape(-1)[0]) * 127.0)
        rename[node.output[0]] = x
        drop.update((id(node), id(src)))
    kept = [n for n in graph.node if id(n) not in drop]
    for n in kept:
        for i, name in enumerate(n.input):
            n.input[i] = rename.get(name, name)
    for out in graph.output:  # a graph output that was a DQ output: keep its name with an Identity
        if out.name in rename:
            kept.append(onnx.helper.make_node("Identity", [rename[out.name]], [out.name]))
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(new_inits)
    used = {i for n in graph.node for i in n.input}
    keep_inits = [t for t in graph.initializer if t.name in used or t.name in {o.name for o in graph.output}]
    del graph.initializer[:]
    graph.initializer.extend(keep_inits)
    onnx.save(model, str(out_path))
    return ranges
