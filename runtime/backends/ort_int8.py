"""Run TensorRT-style INT8 Q/DQ models fast on ONNX Runtime's x86 CPU provider.

The bundle's INT8 ONNX is written for TensorRT: activations quantized to *signed* int8 with zero point 0
(TensorRT rejects anything else). ONNX Runtime's x86 CPU kernels fuse ``DQ -> Conv -> Q`` into
``QLinearConv`` only for *unsigned* activations (its VNNI kernels are u8 x s8), so the TensorRT-style model
runs its convolutions in float there, 2-3x slower than FP32. This module rewrites, in memory, every
activation ``QuantizeLinear -> DequantizeLinear`` pair from int8 / zero point 0 to uint8 / zero point 128
with the same scale. The rewrite is exact: ``clip(round(x/s), -128, 127) + 128 == clip(round(x/s) + 128,
0, 255)`` and dequantization subtracts the 128 back, so every tensor the model computes is unchanged;
weights (int8 initializers feeding a DequantizeLinear directly) and int32 biases stay as they are.

Hand-written because neither onnxruntime nor onnx offers this conversion (onnxruntime's own s8->u8 pass
only applies after fusion, which is what the signed activations prevent). Needs the ``onnx`` package,
imported only when an INT8 model is opened; without it the model still runs, just unfused.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

__all__ = ["needs_u8_activations", "u8_activation_model"]

_X86 = {"x86_64", "amd64", "i386", "i686", "x86"}


def needs_u8_activations(providers: list[str]) -> bool:
    """True where ONNX Runtime's CPU provider runs the model on an x86 CPU (its QDQ fusion wants u8)."""
    return providers[:1] == ["CPUExecutionProvider"] and platform.machine().lower() in _X86


def u8_activation_model(path: Path) -> bytes | None:
    """The serialized model with int8 activation Q/DQ pairs moved to uint8 (exact), or ``None`` when the
    model has none (plain FP32/FP16) or the ``onnx`` package is not installed."""
    try:
        import onnx
        from onnx import TensorProto, numpy_helper
    except ImportError:
        return None
    import numpy as np

    try:
        model = onnx.load(str(path))
    except Exception:  # a corrupt file: let onnxruntime report it with its own one-line error
        return None
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}

    def int8_zero(name: str) -> bool:
        zp = inits.get(name)
        return (zp is not None and zp.data_type == TensorProto.INT8 and len(zp.dims) == 0
                and int(numpy_helper.to_array(zp)) == 0)

    u8_zero: dict[str, str] = {}
    rewritten: set[str] = set()
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or node.domain not in ("", "ai.onnx") or len(node.input) < 3:
            continue
        out = node.output[0]
        users = consumers.get(out, [])
        if not int8_zero(node.input[2]) or out in graph_outputs or not users:
            continue
        if any(u.op_type != "DequantizeLinear" or len(u.input) < 3 or not int8_zero(u.input[2]) for u in users):
            continue
        for n in (node, *users):
            zp_name = n.input[2]
            if zp_name not in u8_zero:
                u8_zero[zp_name] = f"{zp_name}__u8"
            n.input[2] = u8_zero[zp_name]
        rewritten.add(out)
    if not rewritten:
        return None
    for new in u8_zero.values():
        graph.initializer.append(numpy_helper.from_array(np.array(128, dtype=np.uint8), new))
    kept = [vi for vi in graph.value_info if vi.name not in rewritten]  # their element type changed
    del graph.value_info[:]
    graph.value_info.extend(kept)
    used = {name for n in graph.node for name in n.input}
    unused = [i for i in graph.initializer if i.name in u8_zero and i.name not in used]  # old int8 zero points
    for init in unused:
        graph.initializer.remove(init)
    return bytes(model.SerializeToString())
