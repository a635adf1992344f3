"""TensorRT Q/DQ placement: no pair between a conv and its SiLU in the artifact, and the runtime's CPU
backend restores the removed pairs so ONNX Runtime runs exactly the model onnxruntime.quantization wrote."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from edgevision.runtime.backends.onnxruntime import OrtBackend
from edgevision.runtime.backends.ort_int8 import ORT_CPU_QDQ_KEY, cpu_has_vnni, ort_cpu_model
from edgevision.toolkit.compress.qdq_check import check_qdq
from edgevision.toolkit.compress.qdq_place import fusion_blockers, to_tensorrt_placement

RNG = np.random.default_rng(0)


def _silu_net(path: Path) -> Path:
    """x -> Conv -> SiLU (Sigmoid, Mul) -> Conv -> SiLU -> Concat(with the first SiLU) -> Conv -> y."""
    def w(o: int, i: int) -> np.ndarray:
        return (RNG.normal(size=(o, i, 3, 3)) * 0.3).astype(np.float32)

    bias = RNG.normal(size=8).astype(np.float32)
    inits = [numpy_helper.from_array(w(8, 3), "w0"), numpy_helper.from_array(w(8, 8), "w1"),
             numpy_helper.from_array(w(4, 16), "w2"), numpy_helper.from_array(bias, "b0")]
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c0"], ["s0"], name="sig0"),
        helper.make_node("Mul", ["c0", "s0"], ["a0"], name="mul0"),
        helper.make_node("Conv", ["a0", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c1"], ["s1"], name="sig1"),
        helper.make_node("Mul", ["c1", "s1"], ["a1"], name="mul1"),
        helper.make_node("Concat", ["a0", "a1"], ["cat"], name="cat", axis=1),
        helper.make_node("Conv", ["cat", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


class _Reader(CalibrationDataReader):
    def __init__(self) -> None:
        self.feeds = iter([{"x": RNG.normal(size=(1, 3, 16, 16)).astype(np.float32)} for _ in range(8)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


@pytest.fixture()
def ort_placed(tmp_path: Path) -> Path:
    """The net as onnxruntime.quantization writes it (the quantize stage's settings): Q/DQ everywhere."""
    logging.getLogger().setLevel(logging.ERROR)
    dst = tmp_path / "ort.onnx"
    quantize_static(str(_silu_net(tmp_path / "f.onnx")), str(dst), _Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})
    return dst


def _run(model: str | bytes, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _quantized_tensors(model: onnx.ModelProto) -> set[str]:
    inits = {i.name for i in model.graph.initializer}
    return {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits}


def test_placement_leaves_pairs_only_on_layer_inputs(ort_placed: Path, tmp_path: Path) -> None:
    model = onnx.load(str(ort_placed))
    before = _quantized_tensors(model)
    assert {"c0", "s0", "c1", "s1"} <= before  # onnxruntime splits conv from SiLU and SiLU itself
    assert set(fusion_blockers(model)) == {"c0", "s0", "c1", "s1"}
    assert any("block TensorRT's conv+bias+activation fusion" in p for p in check_qdq(model).problems)

    report = to_tensorrt_placement(model)
    assert sorted(report.removed) == ["c0", "c1", "s0", "s1"]
    after = _quantized_tensors(model)
    assert after == before - {"c0", "s0", "c1", "s1"}
    assert {"x", "a0", "a1"} <= after  # every conv input is still quantized
    assert check_qdq(model).ok, check_qdq(model).problems
    hint = json.loads({p.key: p.value for p in model.metadata_props}[ORT_CPU_QDQ_KEY])
    assert sorted(t for t, _ in hint) == ["c0", "c1", "s0", "s1"]
    onnx.checker.check_model(model)


@pytest.mark.parametrize("u8", [False, True])
def test_cpu_backend_restores_the_calibrated_model_exactly(ort_placed: Path, tmp_path: Path, u8: bool) -> None:
    if u8 and not cpu_has_vnni():
        pytest.skip("uint8 activations are exact only on VNNI kernels; this CPU's u8 x s8 path saturates at int16")
    model = onnx.load(str(ort_placed))
    to_tensorrt_placement(model)
    trt = tmp_path / "trt.onnx"
    onnx.save(model, str(trt))
    restored = ort_cpu_model(trt, u8=u8)
    assert restored is not None
    onnx.checker.check_model(onnx.load_from_string(restored))
    for _ in range(3):
        x = RNG.normal(scale=2.0, size=(1, 3, 16, 16)).astype(np.float32)
        reference = _run(str(ort_placed), x)
        np.testing.assert_array_equal(_run(restored, x), reference)
        as_tensorrt = _run(str(trt), x)  # fewer roundings: close to, not equal to, the CPU result
        assert not np.array_equal(as_tensorrt, reference)
        assert np.abs(as_tensorrt - reference).max() < 0.1 * np.abs(reference).max()


def test_the_backend_applies_it_unless_asked_for_the_literal_graph(ort_placed: Path, tmp_path: Path) -> None:
    model = onnx.load(str(ort_placed))
    to_tensorrt_placement(model)
    trt = tmp_path / "trt.onnx"
    onnx.save(model, str(trt))
    x = RNG.normal(size=(1, 3, 16, 16)).astype(np.float32)
    with OrtBackend(trt, providers=["CPUExecutionProvider"]) as be:
        np.testing.assert_array_equal(be.infer({"x": x})["y"], _run(str(ort_placed), x))
    with OrtBackend(trt, providers=["CPUExecutionProvider"], cpu_int8_rewrites=False) as literal:
        np.testing.assert_array_equal(literal.infer({"x": x})["y"], _run(str(trt), x))  # TensorRT's placement
