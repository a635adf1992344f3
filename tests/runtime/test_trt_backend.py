"""TrtBackend on a real GPU: builds tiny engines from ONNX graphs with TensorRT's builder, then runs them.

Skipped with the reason where TensorRT, pycuda or a CUDA GPU is absent. The decisions these tests lean on
(buffer planning, shape checks, engine/sidecar compatibility) are tested without TensorRT in
test_trt_plan.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu]

trt = pytest.importorskip("tensorrt", reason="TensorRT Python package not installed")
cuda = pytest.importorskip("pycuda.driver", reason="pycuda not installed")
onnx = pytest.importorskip("onnx", reason="onnx not installed (needed to build test engines)")


def _gpu_count() -> int:
    try:
        cuda.init()
        return int(cuda.Device.count())
    except Exception:
        return 0


if _gpu_count() == 0:
    pytest.skip("no CUDA GPU", allow_module_level=True)

from edgevision.runtime.backends import TensorSpec, open_backend  # noqa: E402
from edgevision.runtime.backends.tensorrt import TrtBackend  # noqa: E402
from edgevision.runtime.backends.trt_version import needs_explicit_batch_flag  # noqa: E402
from edgevision.runtime.bundle import EngineSpec  # noqa: E402
from edgevision.runtime.errors import UserError  # noqa: E402
from edgevision.runtime.preprocess import letterbox, to_tensor  # noqa: E402

W = np.array([1.0, -2.0, 0.5], np.float32).reshape(1, 3, 1, 1)


def _model(dims: list[Any]) -> bytes:
    """images [dims] -> scaled = images * W + 1, pooled = mean over H, W -> [N, 3]."""
    h = onnx.helper
    images = h.make_tensor_value_info("images", onnx.TensorProto.FLOAT, dims)
    scaled = h.make_tensor_value_info("scaled", onnx.TensorProto.FLOAT, dims)
    pooled = h.make_tensor_value_info("pooled", onnx.TensorProto.FLOAT, [dims[0], 3])
    inits = [
        onnx.numpy_helper.from_array(W, "w"),
        onnx.numpy_helper.from_array(np.ones((1,), np.float32), "one"),
        onnx.numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
    ]
    nodes = [
        h.make_node("Mul", ["images", "w"], ["mul"]),
        h.make_node("Add", ["mul", "one"], ["scaled"]),
        h.make_node("ReduceMean", ["scaled", "axes"], ["pooled"], keepdims=0),
    ]
    graph = h.make_graph(nodes, "tiny", [images], [scaled, pooled], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _build(onnx_bytes: bytes, path: Path, profile: tuple[tuple[int, ...], ...] | None = None) -> Path:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    explicit = needs_explicit_batch_flag(trt.__version__)  # TensorRT < 10 needs EXPLICIT_BATCH for ONNX
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if explicit else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_bytes), [str(parser.get_error(i)) for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    if profile is not None:
        opt = builder.create_optimization_profile()
        opt.set_shape("images", *profile)
        config.add_optimization_profile(opt)
    plan = builder.build_serialized_network(network, config)
    assert plan is not None
    path.write_bytes(bytes(plan))
    return path


def _sm() -> str:
    return "{}.{}".format(*cuda.Device(0).compute_capability())


def _spec(file: str, version: str | None = None, sm: str | None = None) -> EngineSpec:
    return EngineSpec(file=file, device_profile="desktop-rtx", tensorrt_version=version or trt.__version__,
                      gpu_sm=sm or _sm(), precision="fp32")  # fmt: skip


@pytest.fixture(scope="module")
def dynamic_engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trt") / "tiny.engine"
    return _build(_model(["batch", 3, 4, 4]), path, ((1, 3, 4, 4), (2, 3, 4, 4), (4, 3, 4, 4)))


@pytest.fixture(scope="module")
def image_engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trt") / "image.engine"
    return _build(_model([1, 3, 64, 96]), path)


def _expected(x: np.ndarray) -> dict[str, np.ndarray]:
    scaled = x * W + 1
    return {"scaled": scaled, "pooled": scaled.mean(axis=(2, 3))}


def test_io_specs_and_dynamic_batch(dynamic_engine: Path) -> None:
    with TrtBackend(dynamic_engine, sidecar_engine=_spec(dynamic_engine.name)) as be:
        assert be.name == "tensorrt"
        assert be.inputs == [TensorSpec("images", ("batch", 3, 4, 4), "float32")]
        assert [o.name for o in be.outputs] == ["scaled", "pooled"]
        rng = np.random.default_rng(0)
        for batch in (1, 3, 4, 2):
            x = rng.standard_normal((batch, 3, 4, 4)).astype(np.float32)
            out = be.infer({"images": x})
            for name, want in _expected(x).items():
                np.testing.assert_allclose(out[name], want, rtol=1e-5, atol=1e-5)
        with pytest.raises(UserError, match=r"outside the engine's optimization profile \[1, 4\]"):
            be.infer({"images": np.zeros((5, 3, 4, 4), np.float32)})
        with pytest.raises(UserError, match="missing"):
            be.infer({"x": np.zeros((1, 3, 4, 4), np.float32)})


def test_open_backend_by_suffix_and_float64_feed(dynamic_engine: Path) -> None:
    with open_backend(dynamic_engine) as be:
        x = np.ones((2, 3, 4, 4))  # float64: cast to the engine's float32
        np.testing.assert_allclose(be.infer({"images": x})["pooled"], _expected(x.astype(np.float32))["pooled"])


def test_infer_from_another_thread(dynamic_engine: Path) -> None:
    import threading

    be = TrtBackend(dynamic_engine)
    result: dict[str, Any] = {}
    t = threading.Thread(target=lambda: result.update(be.infer({"images": np.ones((1, 3, 4, 4), np.float32)})))
    t.start()
    t.join()
    np.testing.assert_allclose(result["pooled"], [[2.0, -1.0, 1.5]])
    be.close()
    be.close()  # idempotent


@pytest.mark.parametrize(("version", "sm", "message"), [
    ("7.0.0", None, r"TensorRT 7.0.0 expected"),
    (None, "1.0", r"GPU SM 1.0 expected"),
])  # fmt: skip
def test_mismatched_sidecar_is_refused(dynamic_engine: Path, version: str | None, sm: str | None, message: str) -> None:
    with pytest.raises(UserError, match=message) as err:
        TrtBackend(dynamic_engine, sidecar_engine=_spec(dynamic_engine.name, version, sm))
    assert f"edgevision engine {dynamic_engine.parent} --device" in str(err.value)


def test_not_a_plan_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.engine"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(UserError, match="could not deserialize"):
        TrtBackend(bad)
    with pytest.raises(UserError, match="not found"):
        TrtBackend(tmp_path / "missing.engine")


def test_infer_image_matches_cpu_preprocessing(image_engine: Path) -> None:
    from types import SimpleNamespace

    spec = SimpleNamespace(mean=[0.1, 0.2, 0.3], std=[0.5, 0.6, 0.7], color="rgb", scale=1 / 255, dtype="float32")
    rng = np.random.default_rng(1)
    with TrtBackend(image_engine) as be:
        for shape in [(48, 64), (120, 90), (64, 96)]:
            frame = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
            out, lb = be.infer_image(frame, spec, pad_value=114)
            lb_img, lb_cpu = letterbox(frame, (64, 96), pad_value=114)
            assert lb == lb_cpu
            x = to_tensor(lb_img, spec)
            np.testing.assert_allclose(out["scaled"], _expected(x)["scaled"], atol=1e-4)
