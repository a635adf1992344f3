"""The TensorRT Q/DQ checker on hand-built graphs: what TensorRT accepts passes, each rule violation is named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevision.runtime.errors import UserError
from edgevision.toolkit.compress.qdq_check import check_qdq, require_tensorrt_qdq


def qdq_conv(*, act_zp: int = 0, act_type: int = TensorProto.INT8, w: np.ndarray | None = None, axis: int = 0,
             n_scales: int = 4, bias_int32: bool = False, opset: int = 17, act_scales: int = 1) -> onnx.ModelProto:
    """x -> Q -> DQ -> Conv(DQ(w_int8), bias) -> y, the pattern onnxruntime.quantization writes."""
    w = np.ones((4, 3, 3, 3), np.int8) if w is None else w
    zp_np = np.array(act_zp, dtype=np.int8 if act_type == TensorProto.INT8 else np.uint8)
    inits = [
        numpy_helper.from_array(np.full(act_scales, 0.1, np.float32).reshape(() if act_scales == 1 else -1), "xs"),
        numpy_helper.from_array(zp_np, "xz"),
        numpy_helper.from_array(w, "w_q"),
        numpy_helper.from_array(np.full(n_scales, 0.01, np.float32), "ws"),
        numpy_helper.from_array(np.zeros(n_scales, np.int8), "wz"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="q_x"),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dq_x"),
        helper.make_node("DequantizeLinear", ["w_q", "ws", "wz"], ["wd"], name="dq_w", axis=axis),
    ]
    conv_inputs = ["xd", "wd"]
    if bias_int32:
        inits += [numpy_helper.from_array(np.zeros(4, np.int32), "b_q"),
                  numpy_helper.from_array(np.full(4, 0.001, np.float32), "bs")]
        nodes.append(helper.make_node("DequantizeLinear", ["b_q", "bs"], ["bd"], name="dq_b"))
        conv_inputs.append("bd")
    nodes.append(helper.make_node("Conv", conv_inputs, ["y"], name="conv", pads=[1, 1, 1, 1]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def test_tensorrt_style_model_passes(tmp_path: Path) -> None:
    model = qdq_conv()
    report = check_qdq(model)
    assert report.ok, report.problems
    assert (report.q_nodes, report.dq_nodes, report.per_channel_weights) == (1, 2, 1)
    onnx.save(model, str(tmp_path / "m.onnx"))
    assert require_tensorrt_qdq(tmp_path / "m.onnx").ok


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"act_zp": 3}, "zero point must be 0"),
        ({"act_type": TensorProto.UINT8, "act_zp": 128}, "zero point type UINT8"),
        ({"bias_int32": True}, "dequantizes INT32"),
        ({"axis": 1, "n_scales": 3}, "needs axis 0"),
        ({"n_scales": 2}, "2 scales for 4 channels"),
        ({"w": np.full((4, 3, 3, 3), -128, np.int8)}, "[-127, 127]"),
        ({"opset": 11}, "opset 11 < 13"),
        ({"act_scales": 2}, "must be per-tensor"),
    ],
)
def test_each_violation_is_named(kwargs: dict, problem: str) -> None:
    report = check_qdq(qdq_conv(**kwargs))
    assert not report.ok
    assert any(problem in p for p in report.problems), report.problems


def test_float_model_is_not_an_int8_model(tmp_path: Path) -> None:
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(tmp_path / "f.onnx"))
    with pytest.raises(UserError, match=r"f\.onnx: not a TensorRT-compatible Q/DQ model: no QuantizeLinear"):
        require_tensorrt_qdq(tmp_path / "f.onnx")
