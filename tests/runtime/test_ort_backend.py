"""OrtBackend and open_backend on a tiny ONNX graph built with onnx.helper."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from edgevision.runtime.backends import TensorSpec, open_backend
from edgevision.runtime.backends.onnxruntime import OrtBackend
from edgevision.runtime.errors import InternalError, MissingDependencyError, UserError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

CPU = ["CPUExecutionProvider"]
W = np.array([1.0, -2.0, 0.5], np.float32).reshape(1, 3, 1, 1)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """images [batch, 3, 4, 4] -> scaled = images * W + 1, pooled = mean over H, W -> [batch, 3]."""
    h = onnx.helper
    images = h.make_tensor_value_info("images", onnx.TensorProto.FLOAT, ["batch", 3, 4, 4])
    scaled = h.make_tensor_value_info("scaled", onnx.TensorProto.FLOAT, ["batch", 3, 4, 4])
    pooled = h.make_tensor_value_info("pooled", onnx.TensorProto.FLOAT, ["batch", 3])
    inits = [
        onnx.numpy_helper.from_array(W, "w"),
        onnx.numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        onnx.numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
    ]
    nodes = [
        h.make_node("Mul", ["images", "w"], ["m"]),
        h.make_node("Add", ["m", "one"], ["scaled"]),
        h.make_node("ReduceMean", ["scaled", "axes"], ["pooled"], keepdims=0),
    ]
    graph = h.make_graph(nodes, "tiny", [images], [scaled, pooled], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)], ir_version=8)
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("ort") / "tiny.onnx"
    onnx.save(model, str(path))
    return path


def test_infer_matches_numpy_with_dynamic_batch(model_path: Path) -> None:
    with OrtBackend(model_path, providers=CPU, intra_op_threads=1) as be:
        assert be.name == "onnxruntime" and be.providers == CPU
        assert be.inputs == [TensorSpec("images", ("batch", 3, 4, 4), "float32")]
        assert [o.name for o in be.outputs] == ["scaled", "pooled"]
        assert be.inputs[0].is_dynamic and be.outputs[1].shape == ("batch", 3)
        for batch in (1, 3):
            x = np.random.default_rng(batch).normal(size=(batch, 3, 4, 4)).astype(np.float32)
            out = be.infer({"images": x})
            np.testing.assert_allclose(out["scaled"], x * W + 1, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(out["pooled"], (x * W + 1).mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
        got = be.infer({"images": np.ones((1, 3, 4, 4), np.float64)})  # cast to the declared float32
        assert got["scaled"].dtype == np.float32
        with pytest.raises(UserError, match=r"expects \['images'\]"):
            be.infer({"input": x})
        with pytest.raises(UserError, match="inference failed"):
            be.infer({"images": np.ones((1, 2, 4, 4), np.float32)})
    with pytest.raises(InternalError, match="close"):
        be.infer({"images": x})


def test_open_backend_dispatch(model_path: Path, tmp_path: Path) -> None:
    be = open_backend(model_path, providers=CPU)
    assert isinstance(be, OrtBackend)
    be.close()
    with pytest.raises(MissingDependencyError, match=r"tensorrt is not installed.*python3-libnvinfer"):
        open_backend(tmp_path / "model.engine")
    with pytest.raises(MissingDependencyError):
        open_backend(model_path, kind="tensorrt")
    with pytest.raises(UserError, match="unknown backend 'tflite'"):
        open_backend(model_path, kind="tflite")


def test_bad_files_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    with pytest.raises(UserError, match="not found") as err:
        OrtBackend(missing)
    assert str(missing) in str(err.value)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"definitely not a protobuf")
    with pytest.raises(UserError, match="not a valid ONNX model") as err:
        OrtBackend(garbage, providers=CPU)
    assert str(garbage) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="not a file"):
        OrtBackend(tmp_path)


def test_provider_and_dependency_errors(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match="FooExecutionProvider"):
        OrtBackend(model_path, providers=["FooExecutionProvider"])
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgevision\[runtime\]'"):
        OrtBackend(model_path)
