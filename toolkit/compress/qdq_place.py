"""Move onnxruntime's Q/DQ placement to TensorRT's: no Q/DQ between a conv and its activation.

``onnxruntime.quantization`` quantizes every tensor it can, including a convolution's output and the inside
of its SiLU (``Conv -> Q/DQ -> Sigmoid -> Q/DQ -> Mul``), which is what ONNX Runtime's CPU kernels need.
TensorRT's explicit-quantization guide asks for the opposite: Q/DQ on the *inputs* of weighted layers, none
on their outputs, so that conv + bias + activation (and the next layer's quantization) fuse into one INT8
kernel; an extra pair forces the activation into a separate kernel. ``to_tensorrt_placement`` removes each
activation pair on a tensor that a weighted layer or a pointwise activation produces and only pointwise
activations consume, and records it (tensor, scale) under ``ORT_CPU_QDQ_KEY`` in the model's metadata, where
the runtime's ONNX Runtime CPU backend puts it back (``edgevision.runtime.backends.ort_int8``): the same
artifact then builds the fused TensorRT engine and runs the calibrated int8 kernels on a CPU.

Hand-written graph surgery: onnxruntime's ``OpTypesToExcludeOutputQuantization`` drops conv outputs but
still splits ``Sigmoid`` from ``Mul`` and keeps no record of the ranges the CPU path needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import onnx
from onnx import numpy_helper

from edgevision.runtime.backends.ort_int8 import ORT_CPU_QDQ_KEY

from .qdq_graph import QUANTIZABLE

__all__ = ["POINTWISE_ACTIVATIONS", "PlacementReport", "fusion_blockers", "to_tensorrt_placement"]

#: Element-wise ops TensorRT fuses into the preceding weighted layer (SiLU is Sigmoid + Mul in ONNX).
POINTWISE_ACTIVATIONS = frozenset({"Relu", "LeakyRelu", "PRelu", "Sigmoid", "Mul", "Tanh", "Clip", "HardSigmoid",
                                   "HardSwish", "Elu", "Selu", "Softplus", "Gelu"})


@dataclass(frozen=True)
class PlacementReport:
    removed: list[str]  # tensors whose Q/DQ pair moved to the CPU hint
    kept: int  # activation Q nodes left in the graph (inputs of weighted and quantizable layers)


Pair = tuple[onnx.NodeProto, list[onnx.NodeProto]]  # an activation QuantizeLinear and its DequantizeLinears


def _pairs(model: onnx.ModelProto) -> tuple[list[Pair], list[Pair], dict[str, list[onnx.NodeProto]]]:
    """(every activation Q/DQ pair, the fusion-blocking ones, the consumer map they were found with)."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    inits = {i.name for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    pairs: list[Pair] = []
    for n in graph.node:
        dqs = consumers.get(n.output[0], []) if n.op_type == "QuantizeLinear" else []
        if n.input and n.input[0] not in inits and dqs and all(d.op_type == "DequantizeLinear" for d in dqs):
            pairs.append((n, dqs))

    def blocks(q: onnx.NodeProto, dqs: list[onnx.NodeProto]) -> bool:
        src = producer.get(q.input[0])
        if src is None or not (src.op_type in QUANTIZABLE or src.op_type in POINTWISE_ACTIVATIONS):
            return False
        users = [u for d in dqs for u in consumers.get(d.output[0], [])]
        if any(d.output[0] in outputs for d in dqs) or not users:
            return False
        return all(u.op_type in POINTWISE_ACTIVATIONS for u in users)

    return pairs, [(q, dqs) for q, dqs in pairs if blocks(q, dqs)], consumers


def fusion_blockers(model: onnx.ModelProto) -> list[str]:
    """Tensors carrying a Q/DQ pair between a weighted layer (or activation) and the activation after it."""
    return [q.input[0] for q, _ in _pairs(model)[1]]


def to_tensorrt_placement(model: onnx.ModelProto) -> PlacementReport:
    """Remove the fusion-blocking activation Q/DQ pairs in place; record them under ``ORT_CPU_QDQ_KEY``."""
    pairs, blocking, consumers = _pairs(model)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    removed: list[tuple[str, float]] = []
    for q, dqs in blocking:
        scale = numpy_helper.to_array(inits[q.input[1]])
        if scale.size != 1:  # per-tensor activations only (the checker rejects anything else anyway)
            continue
        tensor = q.input[0]
        for d in dqs:
            for u in consumers.get(d.output[0], []):
                for j, name in enumerate(u.input):
                    if name == d.output[0]:
                        u.input[j] = tensor
        for node in (q, *dqs):
            graph.node.remove(node)
        removed.append((tensor, float(scale.reshape(()))))
    used = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    if removed:
        props = {p.key: p.value for p in model.metadata_props}
        onnx.helper.set_model_props(model, {**props, ORT_CPU_QDQ_KEY: json.dumps([[t, s] for t, s in removed])})
    return PlacementReport([t for t, _ in removed], len(pairs) - len(removed))
