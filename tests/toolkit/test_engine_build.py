"""Engine build: the "not on this device -> print the command" path, the TensorRT call sequence against a
fake ``tensorrt`` module, the CLI's error paths, and a real build where TensorRT and a GPU exist."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run_main

from edgevision.runtime.bundle import SIDECAR_NAME, InputSpec, OutputSpec, Sidecar, load_bundle
from edgevision.runtime.errors import MissingDependencyError, UserError
from edgevision.toolkit import engine_build
from edgevision.toolkit.devices import load_profile
from edgevision.toolkit.engine_build import DetectedEnv, build_engine, engine_stage, target_mismatch
from edgevision.toolkit.engine_plan import EnginePlan, plan_engine

ORIN_NANO = DetectedEnv(sm="8.7", tensorrt_version="10.3.0.30")
WORKSTATION = DetectedEnv(sm="9.0", tensorrt_version="10.3.0")


def _bundle(root: Path, precision: str = "fp32", shape: list[int | str] | None = None) -> Path:
    side = Sidecar(name="tiny", task="detect", class_names=["a"], precision=precision,  # type: ignore[arg-type]
                   input=InputSpec(shape=shape or [1, 3, 64, 64]), output=OutputSpec(num_classes=1))
    root.mkdir(parents=True, exist_ok=True)
    (root / SIDECAR_NAME).write_text(side.model_dump_json(indent=2))
    _tiny_onnx(root / "model.onnx", side.input.shape)
    return root


def _tiny_onnx(path: Path, shape: list[int | str]) -> None:
    """A real model the sidecar describes (``engine`` reads it on any machine): images -> [1, 4 + 1, 8]."""
    onnx = pytest.importorskip("onnx", reason="the engine tests' bundles are built with onnx.helper")
    import numpy as np

    h = onnx.helper
    images = h.make_tensor_value_info("images", onnx.TensorProto.FLOAT, shape)
    out = h.make_tensor_value_info("output0", onnx.TensorProto.FLOAT, [1, 5, 8])
    inits = [onnx.numpy_helper.from_array(np.zeros((1, 5, 8), np.float32), "head"),
             onnx.numpy_helper.from_array(np.zeros(1, np.float32), "z")]
    nodes = [h.make_node("ReduceMean", ["images"], ["m"], keepdims=0), h.make_node("Mul", ["m", "z"], ["m0"]),
             h.make_node("Add", ["head", "m0"], ["output0"])]
    model = h.make_model(h.make_graph(nodes, "tiny", [images], [out], inits),
                         opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))


def _plan(profile: str = "jetson-orin-nano-8gb", version: str = "10.3.0", **kw: Any) -> EnginePlan:
    args: dict[str, Any] = {"precision": "fp16", "onnx_kind": "fp32", "dla": False, "sparse_model": False,
                            "dynamic_batch": None, "input_shape": [1, 3, 64, 64], "workspace_mb": None,
                            "opt_level": None}
    args.update(kw)
    return plan_engine(load_profile(profile), version, **args)


def test_target_mismatch() -> None:
    plan = _plan()
    assert target_mismatch(plan, ORIN_NANO) == []
    reasons = target_mismatch(plan, WORKSTATION)
    assert reasons == ["GPU SM 9.0 here, profile jetson-orin-nano-8gb needs SM 8.7"]
    assert len(target_mismatch(plan, DetectedEnv(None, None))) == 2
    assert "TensorRT 8.5.2 here" in target_mismatch(plan, DetectedEnv("8.7", "8.5.2"))[0]


def test_not_on_device_returns_the_command(tmp_path: Path) -> None:
    root = _bundle(tmp_path / "b")
    before = (root / SIDECAR_NAME).read_text()
    outcome = engine_stage(load_bundle(root), _plan(opt_level=4), WORKSTATION)
    assert outcome.spec is None
    assert outcome.command == (f"edgevision engine {root} --device jetson-orin-nano-8gb --precision fp16 "
                               "--no-dla --workspace-mb 1024 --opt-level 4")
    assert (root / SIDECAR_NAME).read_text() == before
    assert sorted(p.name for p in root.iterdir()) == [SIDECAR_NAME, "model.onnx"]


def test_cli_prints_command_off_device(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_build, "detect_environment", lambda: WORKSTATION)
    root = _bundle(tmp_path / "b", precision="int8")
    code, out, err = run_main(["engine", str(root), "--device", "jetson-agx-orin-64gb", "--dla"], capsys)
    assert code == 0, err
    assert out.strip() == (f"edgevision engine {root} --device jetson-agx-orin-64gb --precision int8 --dla "
                           "--workspace-mb 4096")
    assert "not building here (GPU SM 9.0 here" in err


@pytest.mark.parametrize(("args", "message"), [
    (["--device", "jetson-nano", "--precision", "int8"], "jetson-nano cannot run int8"),
    (["--device", "jetson-orin-nano-8gb", "--dla"], "jetson-orin-nano-8gb has no DLA cores"),
    (["--device", "jetson-orin-nano-8gb", "--precision", "int8"], "needs a Q/DQ"),
    (["--device", "no-such-board"], "unknown device profile"),
])
def test_cli_errors(args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_build, "detect_environment", lambda: WORKSTATION)
    code, out, err = run_main(["engine", str(_bundle(tmp_path / "b")), *args], capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_missing_tensorrt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgevision\[tensorrt\]'"):
        build_engine(tmp_path / "m.onnx", _plan(), tmp_path / "m.engine", timing_cache=None, gpu_sm="8.7")


class _Rec:
    """Records attribute sets and calls made on it; enough of TensorRT's surface for the build sequence."""

    def __init__(self, log: list[Any], name: str, **attrs: Any) -> None:
        self.__dict__.update(_log=log, _name=name, **attrs)

    def __setattr__(self, key: str, value: Any) -> None:
        self._log.append((f"{self._name}.{key}", value))
        self.__dict__[key] = value


def _fake_trt(log: list[Any], parse_ok: bool = True) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0.30"  # type: ignore[attr-defined]
    enum = types.SimpleNamespace
    trt.NetworkDefinitionCreationFlag = enum(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)  # type: ignore[attr-defined]
    trt.BuilderFlag = enum(FP16="FP16", INT8="INT8", GPU_FALLBACK="GPU_FALLBACK",  # type: ignore[attr-defined]
                           SPARSE_WEIGHTS="SPARSE_WEIGHTS")
    trt.MemoryPoolType = enum(WORKSPACE="WORKSPACE")  # type: ignore[attr-defined]
    trt.DeviceType = enum(DLA="DLA", GPU="GPU")  # type: ignore[attr-defined]
    trt.ProfilingVerbosity = enum(DETAILED="DETAILED")  # type: ignore[attr-defined]
    trt.LayerInformationFormat = enum(JSON="JSON")  # type: ignore[attr-defined]

    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            pass

    def config() -> _Rec:
        cache = enum(serialize=lambda: b"cache-v2")
        return _Rec(log, "config",
                    set_memory_pool_limit=lambda pool, n: log.append(("workspace", pool, n)),
                    set_flag=lambda f: log.append(("flag", f)),
                    create_timing_cache=lambda blob: log.append(("cache-in", blob)) or cache,
                    set_timing_cache=lambda c, ignore: None, get_timing_cache=lambda: cache,
                    add_optimization_profile=lambda p: log.append(("profile", p.shapes)))

    def profile() -> Any:
        p = enum(shapes={})
        p.set_shape = lambda name, lo, opt, hi: p.shapes.__setitem__(name, (lo, opt, hi))
        return p

    class Builder:
        def __init__(self, logger: Any) -> None:
            pass

        def create_network(self, flags: int) -> str:
            log.append(("network-flags", flags))
            return "network"

        create_builder_config = staticmethod(config)
        create_optimization_profile = staticmethod(profile)

        def build_serialized_network(self, network: Any, cfg: Any) -> bytes:
            return b"PLAN"

    error = enum(node=lambda: 3, node_name=lambda: "/model/Foo", node_operator=lambda: "FooOp",
                 desc=lambda: "No importer registered for op: FooOp")

    class OnnxParser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, network: Any, logger: Any) -> None:
            pass

        def parse_from_file(self, path: str) -> bool:
            return parse_ok

        def get_error(self, i: int) -> Any:
            return error

    inspector = enum(get_engine_information=lambda fmt: '{"Layers": []}')
    engine = enum(create_engine_inspector=lambda: inspector)

    class Runtime:
        def __init__(self, logger: Any) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> Any:
            assert data == b"PLAN"
            return engine

    trt.Logger, trt.Builder, trt.OnnxParser, trt.Runtime = Logger, Builder, OnnxParser, Runtime  # type: ignore[attr-defined]
    return trt


def test_on_device_build_with_fake_tensorrt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[Any] = []
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt(log))
    root = _bundle(tmp_path / "b", shape=["batch", 3, 64, 64])
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"cache-v1")
    plan = _plan("jetson-agx-orin-64gb", precision="fp16", dla=True, opt_level=2, dynamic_batch=(1, 2, 4),
                 input_shape=["batch", 3, 64, 64])
    outcome = engine_stage(load_bundle(root), plan, DetectedEnv("8.7", "10.3.0.30"), timing_cache=cache)
    assert outcome.spec is not None and outcome.command is None
    engine = root / "model.jetson-agx-orin-64gb.fp16.dla0.engine"
    assert engine.read_bytes() == b"PLAN"
    assert json.loads((root / (engine.name + ".layers.json")).read_text()) == {"Layers": []}
    assert cache.read_bytes() == b"cache-v2"
    assert ("network-flags", 0) in log  # TensorRT 10: no EXPLICIT_BATCH, weakly typed
    assert ("workspace", "WORKSPACE", 4096 << 20) in log and ("cache-in", b"cache-v1") in log
    assert {("flag", "FP16"), ("flag", "GPU_FALLBACK"), ("config.default_device_type", "DLA"),
            ("config.DLA_core", 0), ("config.builder_optimization_level", 2)} <= set(
        x for x in log if not isinstance(x[-1], dict))
    assert ("profile", {"images": ((1, 3, 64, 64), (2, 3, 64, 64), (4, 3, 64, 64))}) in log
    side = load_bundle(root).sidecar
    assert [e.model_dump() for e in side.engines] == [outcome.spec.model_dump()]
    spec = outcome.spec
    assert (spec.file, spec.tensorrt_version, spec.gpu_sm, spec.precision, spec.dla_core) == (
        engine.name, "10.3.0.30", "8.7", "fp16", 0)
    assert spec.flags == ["fp16", "gpu_fallback"] and spec.onnx_hash and len(spec.onnx_hash) == 64


def test_parse_error_names_the_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt([], parse_ok=False))
    with pytest.raises(UserError, match=r"node #3 '/model/Foo' \(FooOp\): No importer registered"):
        build_engine(tmp_path / "m.onnx", _plan(), tmp_path / "m.engine", timing_cache=None, gpu_sm="8.7")
    assert not (tmp_path / "m.engine").exists()


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_real_build(tmp_path: Path) -> None:
    trt = pytest.importorskip("tensorrt", reason="TensorRT Python package not installed")
    onnx = pytest.importorskip("onnx", reason="onnx not installed (needed to build a test model)")
    sm = engine_build.detect_environment().sm
    if sm is None:
        pytest.skip("no CUDA GPU")
    h = onnx.helper
    x = h.make_tensor_value_info("images", onnx.TensorProto.FLOAT, ["batch", 3, 8, 8])
    y = h.make_tensor_value_info("out", onnx.TensorProto.FLOAT, ["batch", 3, 8, 8])
    graph = h.make_graph([h.make_node("Relu", ["images"], ["out"])], "tiny", [x], [y])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    src = tmp_path / "m.onnx"
    src.write_bytes(model.SerializeToString())
    plan = _plan("desktop-rtx", str(trt.__version__), precision="fp32", input_shape=["batch", 3, 8, 8],
                 dynamic_batch=(1, 2, 4))
    cache = tmp_path / "timing.cache"
    fields = build_engine(src, plan, tmp_path / "m.engine", timing_cache=cache, gpu_sm=sm)
    assert (tmp_path / "m.engine").stat().st_size > 0 and cache.stat().st_size > 0
    assert json.loads((tmp_path / "m.engine.layers.json").read_text())
    assert fields["tensorrt_version"] == trt.__version__


def test_cli_sparsity_defaults_from_the_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A bundle the prune stage made 2:4 sparse asks for sparse tensor cores without --sparse."""
    monkeypatch.setattr(engine_build, "detect_environment", lambda: WORKSTATION)
    root = _bundle(tmp_path / "b")
    side = json.loads((root / SIDECAR_NAME).read_text())
    side["extra"] = {"sparsity": {"pattern": "2:4", "layers": ["stage1.0.conv"]}}
    (root / SIDECAR_NAME).write_text(json.dumps(side))
    code, out, err = run_main(["engine", str(root), "--device", "jetson-agx-orin-64gb"], capsys)
    assert code == 0, err
    assert out.strip().endswith("--sparse") or " --sparse " in out
    code, out, _ = run_main(["engine", str(root), "--device", "jetson-agx-orin-64gb", "--no-sparse"], capsys)
    assert code == 0 and "--sparse" not in out
