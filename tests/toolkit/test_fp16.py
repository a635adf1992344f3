"""FP16 conversion: valid graphs whatever onnxruntime's converter version does with shared values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgevision.toolkit.compress.fp16 import _drop_duplicate_nodes, convert_fp16


def _two_upsamplers(path: Path) -> Path:
    """Conv -> Resize and Conv -> Resize, both Resizes reading one scales Constant (what onnxsim leaves for
    a neck with two upsampling layers): the case onnxruntime < 1.32's converter duplicated a Cast for."""
    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Constant", [], ["scales"], value=numpy_helper.from_array(
            np.array([1, 1, 2, 2], np.float32))),
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Resize", ["c", "", "scales"], ["u1"], mode="nearest"),
        helper.make_node("Resize", ["u1", "", "scales"], ["y"], mode="nearest"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 32, 32])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_shared_float_only_input_converts_to_a_valid_model(tmp_path: Path) -> None:
    src = _two_upsamplers(tmp_path / "fp32.onnx")
    convert_fp16(src, tmp_path / "fp16.onnx")
    half = onnx.load(str(tmp_path / "fp16.onnx"))
    outputs = [o for n in half.graph.node for o in n.output]
    assert len(outputs) == len(set(outputs))  # SSA
    assert half.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT  # I/O stay float32
    x = np.random.default_rng(1).random((1, 3, 8, 8), dtype=np.float32)
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ort.InferenceSession(str(tmp_path / "fp16.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ref, rtol=2e-3, atol=2e-2)


def _graph(nodes: list[onnx.NodeProto]) -> onnx.GraphProto:
    return helper.make_graph(nodes, "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT16, [2])],
                             [helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])])


def test_identical_duplicate_casts_collapse_to_one() -> None:
    cast = helper.make_node("Cast", ["a"], ["a_cast_to_fp32"], to=TensorProto.FLOAT, name="a_cast_to_fp32_node")
    relu = helper.make_node("Relu", ["a_cast_to_fp32"], ["b"])
    graph = _graph([cast, relu, onnx.NodeProto.FromString(cast.SerializeToString())])
    graph.value_info.extend([helper.make_tensor_value_info("a_cast_to_fp32", TensorProto.FLOAT, [2])] * 2)
    _drop_duplicate_nodes(graph)
    assert [n.op_type for n in graph.node] == ["Cast", "Relu"]
    assert [v.name for v in graph.value_info] == ["a_cast_to_fp32"]
    onnx.checker.check_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))


def test_different_nodes_writing_one_name_are_not_hidden() -> None:
    to32 = helper.make_node("Cast", ["a"], ["t"], to=TensorProto.FLOAT)
    to64 = helper.make_node("Cast", ["a"], ["t"], to=TensorProto.DOUBLE)
    graph = _graph([to32, to64, helper.make_node("Relu", ["t"], ["b"])])
    _drop_duplicate_nodes(graph)
    assert len(graph.node) == 3  # left for the checker to report, not silently picked
