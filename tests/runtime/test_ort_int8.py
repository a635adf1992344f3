"""The in-memory int8 -> uint8 activation rewrite that lets ONNX Runtime's x86 CPU fuse Q/DQ convolutions:
it must be exact (same outputs bit for bit), touch only activation Q/DQ pairs, and leave other models alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevision.runtime.backends import ort_int8
from edgevision.runtime.backends.ort_int8 import cpu_has_vnni, needs_u8_activations, ort_cpu_model


def _qdq_net(path: Path) -> Path:
    """x -> Q/DQ -> Conv(int8 weights) -> Q/DQ -> Sigmoid -> Q/DQ -> y  (symmetric int8, zero points 0)."""
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (8, 3, 3, 3)).astype(np.int8)
    scales = (("s0", 0.02), ("s1", 0.05), ("s2", 0.008))
    inits = [numpy_helper.from_array(np.array(s, np.float32), n) for n, s in scales]
    inits += [numpy_helper.from_array(np.array(0, np.int8), "z"), numpy_helper.from_array(w, "w"),
              numpy_helper.from_array(np.full(8, 0.003, np.float32), "ws"),
              numpy_helper.from_array(np.zeros(8, np.int8), "wz"),
              numpy_helper.from_array(rng.normal(size=8).astype(np.float32), "b")]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s0", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s0", "z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["c", "s1", "z"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "s1", "z"], ["cd"]),
        helper.make_node("Sigmoid", ["cd"], ["sg"]),
        helper.make_node("QuantizeLinear", ["sg", "s2", "z"], ["sq"]),
        helper.make_node("DequantizeLinear", ["sq", "s2", "z"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def _run(model: str | bytes, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_rewrite_is_exact_and_only_touches_activations(tmp_path: Path) -> None:
    path = _qdq_net(tmp_path / "m.onnx")
    rewritten = ort_cpu_model(path, u8=True)
    assert rewritten is not None
    x = np.random.default_rng(1).normal(scale=2.0, size=(1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(_run(rewritten, x), _run(str(path), x))
    model = onnx.load_from_string(rewritten)
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":  # every activation pair now uses uint8 zero point 128
            zp = inits[node.input[2]]
            assert zp.data_type == TensorProto.UINT8 and int(numpy_helper.to_array(zp)) == 128
    weight_dq = next(n for n in model.graph.node if n.input[0] == "w")
    assert inits[weight_dq.input[2]].data_type == TensorProto.INT8  # weights stay signed
    assert "z" not in inits  # the old zero point is not left behind


def test_float_and_corrupt_models_are_left_alone(tmp_path: Path) -> None:
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(tmp_path / "f.onnx"))
    assert ort_cpu_model(tmp_path / "f.onnx", u8=True) is None
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    assert ort_cpu_model(tmp_path / "bad.onnx", u8=True) is None


def test_without_hints_or_u8_nothing_changes(tmp_path: Path) -> None:
    assert ort_cpu_model(_qdq_net(tmp_path / "m.onnx"), u8=False) is None  # ARM: signed pairs run as they are


@pytest.mark.parametrize(("providers", "expected_on_x86"), [
    (["CPUExecutionProvider"], True), (["CUDAExecutionProvider", "CPUExecutionProvider"], False)])
def test_only_the_cpu_provider_gets_the_rewrite(providers: list[str], expected_on_x86: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import platform

    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(ort_int8, "cpu_has_vnni", lambda: True)
    assert needs_u8_activations(providers) is expected_on_x86
    monkeypatch.setattr(ort_int8, "cpu_has_vnni", lambda: False)  # AVX2 u8 x s8 saturates: keep int8
    assert needs_u8_activations(providers) is False
    monkeypatch.setattr(ort_int8, "cpu_has_vnni", lambda: True)
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")  # ARM kernels take int8 activations natively
    assert needs_u8_activations(providers) is False


@pytest.mark.parametrize(("flags", "expected"), [
    ("fpu sse avx2 fma", False), ("fpu avx2 avx512f avx512_vnni", True), ("fpu avx2 avx_vnni", True),
    ("fpu avx2 amx_int8 amx_tile", True)])
def test_vnni_is_read_from_the_cpu_flags(tmp_path: Path, flags: str, expected: bool) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n")
    assert cpu_has_vnni.__wrapped__(str(info)) is expected
    assert cpu_has_vnni.__wrapped__(str(tmp_path / "missing")) is False
