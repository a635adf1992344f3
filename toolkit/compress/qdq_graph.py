"""Graph facts the quantizer needs: which nodes decode the ``yolo`` head, which are worth quantizing.

The ``yolo`` layout ends in a decode (DFL softmax expectation, anchor offsets, stride multiply, concat of
boxes in pixels with sigmoid scores): large-range values that INT8 cannot hold, the usual cause of
0-mAP INT8 detectors. It is found structurally, so it works for Ultralytics exports too: walking back from
the graph outputs, every node is decode until a convolution that carries learned weights (a Conv fed by
a Softmax is Ultralytics' DFL projection and still decode). The convolutions where the walk stops are the
head's output convs, whose outputs are raw logits/distances and stay in float with the decode.
Plain graph walking over the onnx protobuf; no library offers this for detection heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

QUANTIZABLE = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass(frozen=True)
class HeadSplit:
    decode: frozenset[str]  # node names from the head-output convs (exclusive) to the graph outputs
    head_convs: frozenset[str]  # the convs producing the raw head maps

    @property
    def protected(self) -> frozenset[str]:
        return self.decode | self.head_convs


def load(path: Path) -> onnx.ModelProto:
    return onnx.load(str(path))


def head_split(model: onnx.ModelProto) -> HeadSplit:
    producer = {out: n for n in model.graph.node for out in n.output}
    decode: set[str] = set()
    convs: set[str] = set()
    stack = [o.name for o in model.graph.output]
    seen: set[str] = set()
    while stack:
        tensor = stack.pop()
        node = producer.get(tensor)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in QUANTIZABLE:
            feeder = producer.get(node.input[0])
            if feeder is None or feeder.op_type != "Softmax":
                convs.add(node.name)
                continue
        decode.add(node.name)
        stack.extend(node.input)
    return HeadSplit(frozenset(decode), frozenset(convs))


def quantizable_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the weighted ops (Conv/Gemm/MatMul with a constant weight), in graph order."""
    consts = {i.name for i in model.graph.initializer}
    consts |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in model.graph.node
            if n.op_type in QUANTIZABLE and len(n.input) > 1 and n.input[1] in consts]


def ensure_node_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give unnamed nodes stable names (``op_type_index``): exclusion lists and reports refer to names."""
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    return model
