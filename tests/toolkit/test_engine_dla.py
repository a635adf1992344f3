"""INT8 on DLA: Q/DQ removed, scales as dynamic ranges (engine_dla), checked with ONNX Runtime as reference,
and the builder's set_dynamic_range calls under the real TensorRT 8.6.1 / 10.x surfaces."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from test_engine_build import _script_build
from trt_fake import FakeTrt

from edgevision.runtime.bundle import SIDECAR_NAME, InputSpec, OutputSpec, Sidecar, load_bundle
from edgevision.toolkit.devices import load_profile
from edgevision.toolkit.engine_build import DetectedEnv, engine_stage
from edgevision.toolkit.engine_dla import qdq_to_dynamic_ranges
from edgevision.toolkit.engine_plan import plan_engine

onnx = pytest.importorskip("onnx", reason="onnx not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (the reference)")

S_IN, S_OUT = 0.02, 0.25
W_SCALE = np.array([0.01, 0.02], np.float32)


def _qdq_model(path: Path) -> np.ndarray:
    """images -Q/DQ-> Conv(W: int8 initializer -> DQ per channel) -> Relu -Q/DQ-> out. Returns float W."""
    h, nh = onnx.helper, onnx.numpy_helper
    rng = np.random.default_rng(0)
    w_q = rng.integers(-127, 128, (2, 3, 3, 3)).astype(np.int8)
    inits = [nh.from_array(np.float32(S_IN), "s_in"), nh.from_array(np.int8(0), "z_in"),
             nh.from_array(w_q, "w_q"), nh.from_array(W_SCALE, "w_s"), nh.from_array(np.zeros(2, np.int8), "w_z"),
             nh.from_array(np.float32(S_OUT), "s_out"), nh.from_array(np.int8(0), "z_out")]
    nodes = [h.make_node("QuantizeLinear", ["images", "s_in", "z_in"], ["images_q"], name="q_in"),
             h.make_node("DequantizeLinear", ["images_q", "s_in", "z_in"], ["images_dq"], name="dq_in"),
             h.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"], name="dq_w", axis=0),
             h.make_node("Conv", ["images_dq", "w"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
             h.make_node("Relu", ["conv"], ["relu"], name="relu"),
             h.make_node("QuantizeLinear", ["relu", "s_out", "z_out"], ["relu_q"], name="q_out"),
             h.make_node("DequantizeLinear", ["relu_q", "s_out", "z_out"], ["out"], name="dq_out")]
    x = h.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    y = h.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [1, 2, 8, 8])
    model = h.make_model(h.make_graph(nodes, "qdq", [x], [y], inits), opset_imports=[h.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return w_q.astype(np.float32) * W_SCALE.reshape(2, 1, 1, 1)


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {"images": x})[0])


def test_qdq_becomes_dynamic_ranges(tmp_path: Path) -> None:
    w = _qdq_model(tmp_path / "q.onnx")
    ranges = qdq_to_dynamic_ranges(tmp_path / "q.onnx", tmp_path / "f.onnx")
    assert ranges == pytest.approx({"images": S_IN * 127, "relu": S_OUT * 127})
    model = onnx.load(str(tmp_path / "f.onnx"))
    assert {n.op_type for n in model.graph.node} == {"Conv", "Relu", "Identity"}  # Identity keeps "out"
    x = np.random.default_rng(1).uniform(-2, 2, (1, 3, 8, 8)).astype(np.float32)
    ref = np.zeros((1, 2, 8, 8), np.float32)  # the float network, computed here: conv(pad 1) + relu
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for i in range(8):
        for j in range(8):
            ref[0, :, i, j] = np.tensordot(w, xp[0, :, i:i + 3, j:j + 3], axes=([1, 2, 3], [0, 1, 2]))
    np.testing.assert_allclose(_run(tmp_path / "f.onnx", x), np.maximum(ref, 0), rtol=1e-5, atol=1e-5)
    # the Q/DQ model differs from it only by the INT8 rounding the ranges describe
    np.testing.assert_allclose(_run(tmp_path / "q.onnx", x), np.maximum(ref, 0), atol=1.0)


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0", "10.16.1.11"])
def test_dla_int8_build_sets_dynamic_ranges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    fake = FakeTrt(version)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    root = tmp_path / "b"
    root.mkdir()
    side = Sidecar(name="q", task="detect", class_names=["a"], precision="int8",
                   input=InputSpec(shape=[1, 3, 8, 8]), output=OutputSpec(num_classes=1))
    (root / SIDECAR_NAME).write_text(side.model_dump_json())
    _qdq_model(root / "model.onnx")
    _script_build(fake, layers=[{"Name": "{ForeignNode[conv...relu]}", "LayerType": "DLA"}])
    parsed: list[str] = []  # now the network as the parser would leave it: 3 layers, their output tensors
    layers = {"conv": ["conv"], "relu": ["relu"], "out": ["out"]}
    fake.script("Builder.create_network", lambda self, flags: fake.make(
        "INetworkDefinition", num_inputs=1, num_layers=len(layers)))
    fake.script("INetworkDefinition.get_input", lambda self, i: fake.make("ITensor", name="images"))
    fake.script("INetworkDefinition.get_layer", lambda self, i: fake.make(
        "ILayer", num_outputs=1, name=list(layers)[i]))
    fake.script("ILayer.get_output", lambda self, j: fake.make("ITensor", name=layers[self.name][j]))
    fake.script("ITensor.set_dynamic_range", lambda self, lo, hi: True)
    fake.script("OnnxParser.parse_from_file", lambda self, path: parsed.append(path) or True)
    plan = plan_engine(load_profile("jetson-agx-orin-64gb"), version, precision="int8", onnx_kind="qdq-int8",
                       dla=True, sparse_model=False, dynamic_batch=None, input_shape=[1, 3, 8, 8],
                       workspace_mb=None, opt_level=None)
    outcome = engine_stage(load_bundle(root), plan, DetectedEnv("8.7", version))
    assert outcome.spec is not None and outcome.spec.file.endswith(".int8.dla0.engine")
    assert outcome.dla_layers == (1, 1)
    calls = [v for name, a in fake.calls if name == "ITensor.set_dynamic_range" for v in a]
    assert calls == pytest.approx([-S_IN * 127, S_IN * 127, -S_OUT * 127, S_OUT * 127])  # images, relu
    assert parsed and not parsed[0].endswith("model.onnx")  # TensorRT parsed the Q/DQ-free copy
    assert fake.mismatches == []
