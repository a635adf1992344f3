"""Engine build: the "not on this device -> print the command" path, the TensorRT call sequence under each
TensorRT release's real surface (a fake ``tensorrt`` generated from NVIDIA's bindings of 8.6.1, 10.3.0,
10.16.1 and 11.4.0, ``tests/trt_fake.py``: a wrong name, arity or enum fails the test), the CLI's error
paths, and a real build where TensorRT and a GPU exist."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run_main
from trt_fake import VERSIONS, FakeTrt

from edgevision.runtime.bundle import SIDECAR_NAME, InputSpec, OutputSpec, Sidecar, load_bundle
from edgevision.runtime.errors import MissingDependencyError, UserError
from edgevision.toolkit import engine_build
from edgevision.toolkit.devices import load_profile
from edgevision.toolkit.engine_build import DetectedEnv, build_engine, dla_layer_count, engine_stage, target_mismatch
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
    root = _bundle(tmp_path / "b")
    code, out, err = run_main(["engine", str(root), "--device", "jetson-agx-orin-64gb", "--dla",
                               "--version-compatible", "--tensorrt", "10.3.0"], capsys)
    assert code == 0, err
    assert out.strip() == (f"edgevision engine {root} --device jetson-agx-orin-64gb --precision fp16 --dla "
                           "--workspace-mb 4096 --version-compatible")
    assert "not building here (GPU SM 9.0 here" in err


@pytest.mark.parametrize(("args", "message"), [
    (["--device", "jetson-nano", "--precision", "int8"], "jetson-nano cannot run int8"),
    (["--device", "jetson-orin-nano-8gb", "--dla"], "jetson-orin-nano-8gb has no DLA cores"),
    (["--device", "jetson-orin-nano-8gb", "--precision", "int8"], "needs a Q/DQ"),
    (["--device", "no-such-board"], "unknown device profile"),
    (["--device", "jetson-agx-orin-64gb", "--hardware-compatible", "--tensorrt", "10.3"], "not supported on Jetson"),
])
def test_cli_errors(args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_build, "detect_environment", lambda: WORKSTATION)
    code, out, err = run_main(["engine", str(_bundle(tmp_path / "b")), *args], capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_cli_refuses_qdq_on_dla(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_build, "detect_environment", lambda: WORKSTATION)
    root = _bundle(tmp_path / "b", precision="int8")
    code, out, err = run_main(["engine", str(root), "--device", "jetson-agx-orin-64gb", "--dla", "--tensorrt", "11.0"],
                              capsys)
    message = "DLA takes only implicit quantization, not a Q/DQ ONNX, and TensorRT 11.0.0 has no implicit INT8"
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_missing_tensorrt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgevision\[tensorrt\]'"):
        build_engine(tmp_path / "m.onnx", _plan(), tmp_path / "m.engine", timing_cache=None, gpu_sm="8.7")


def _onnx_kind(version: str) -> str:
    return "fp16" if version.startswith("11") else "fp32"  # TensorRT 11 takes FP16 only from an FP16 ONNX


def _script_build(fake: FakeTrt, *, parse_ok: bool = True, built: bool = True, cache_ok: bool = True,
                  cache_back: bool = True, loads: bool = True, layers: Any = ()) -> None:
    """What TensorRT returns in a build; the surface (names, arity, enums) comes from the real bindings."""
    fake.script("Builder.create_network", lambda self, flags: fake.make("INetworkDefinition"))
    fake.script("Builder.create_builder_config", lambda self: fake.make("IBuilderConfig"))
    fake.script("Builder.create_optimization_profile", lambda self: fake.make("IOptimizationProfile"))
    fake.script("IOptimizationProfile.set_shape", lambda self, name, lo, opt, hi: None)
    fake.script("IBuilderConfig.set_memory_pool_limit", lambda self, pool, n: None)
    fake.script("IBuilderConfig.set_flag", lambda self, flag: None)
    fake.script("IBuilderConfig.add_optimization_profile", lambda self, p: 0)
    cache = fake.make("ITimingCache")
    fake.script("ITimingCache.serialize", lambda self: fake.make("IHostMemory", b"cache-v2"))
    fake.script("IBuilderConfig.create_timing_cache", lambda self, blob: cache)
    fake.script("IBuilderConfig.set_timing_cache", lambda self, c, ignore: cache_ok)
    fake.script("IBuilderConfig.get_timing_cache", lambda self: cache if cache_back else None)
    fake.script("OnnxParser.parse_from_file", lambda self, path: parse_ok)
    fake.script("OnnxParser.num_errors", lambda self: 0 if parse_ok else 1)
    error = {"node": 3, "desc": "No importer registered for op: FooOp", "node_name": "/model/Foo",
             "node_operator": "FooOp"}
    for name, value in error.items():
        if fake.has(f"ParserError.{name}"):  # node_name / node_operator: 10.x and later
            fake.script(f"ParserError.{name}", lambda self, v=value: v)
    fake.script("OnnxParser.get_error", lambda self, i: fake.make("ParserError"))
    fake.script("Builder.build_serialized_network",
                lambda self, net, cfg: fake.make("IHostMemory", b"PLAN") if built else None)
    info = json.dumps({"Layers": list(layers), "Bindings": ["images", "out"]})
    fake.script("EngineInspector.get_engine_information", lambda self, fmt: info)
    fake.script("ICudaEngine.create_engine_inspector", lambda self: fake.make("EngineInspector"))
    fake.script("Runtime.deserialize_cuda_engine",
                lambda self, data: fake.make("ICudaEngine") if loads and bytes(data) == b"PLAN" else None)


def _calls(fake: FakeTrt, key: str) -> list[tuple[Any, ...]]:
    return [args for name, args in fake.calls if name == key]


@pytest.fixture(params=VERSIONS)
def fake(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTrt]:
    trt = FakeTrt(request.param)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    yield trt
    assert trt.mismatches == [], f"calls that TensorRT {trt.surface_version} would refuse"


# create_network flags with the real enum values: 8.6 needs EXPLICIT_BATCH (value 0); 10.x weakly typed
# gets 0; 11 is strongly typed and STRONGLY_TYPED is value 0 there (1 in 10.x).
NETWORK_FLAGS = {"8.6.1": 1, "10.3.0": 0, "10.16.1.11": 0, "11.4.0.106": 1}


def test_on_device_build(tmp_path: Path, fake: FakeTrt) -> None:
    version = fake.surface_version
    _script_build(fake)
    root = _bundle(tmp_path / "b", shape=["batch", 3, 64, 64])
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"cache-v1")
    plan = _plan("desktop-rtx", version, precision="fp16", onnx_kind=_onnx_kind(version), opt_level=2,
                 dynamic_batch=(1, 2, 4), input_shape=["batch", 3, 64, 64], version_compatible=True,
                 hardware_compatible=True)
    outcome = engine_stage(load_bundle(root), plan, DetectedEnv("8.6", version), timing_cache=cache)
    assert outcome.spec is not None and outcome.command is None and outcome.dla_layers is None
    engine = root / "model.desktop-rtx.fp16.engine"
    assert engine.read_bytes() == b"PLAN" and cache.read_bytes() == b"cache-v2"
    assert json.loads((root / (engine.name + ".layers.json")).read_text())["Bindings"] == ["images", "out"]
    assert _calls(fake, "Builder.create_network") == [(NETWORK_FLAGS[version],)]
    assert _calls(fake, "IBuilderConfig.set_memory_pool_limit") == [(fake.MemoryPoolType.WORKSPACE, 4096 << 20)]
    assert _calls(fake, "IBuilderConfig.create_timing_cache") == [(b"cache-v1",)]
    want_flags = [fake.BuilderFlag.VERSION_COMPATIBLE]
    if not version.startswith("11"):
        want_flags.insert(0, fake.BuilderFlag.FP16)
    assert [a[0] for a in _calls(fake, "IBuilderConfig.set_flag")] == want_flags
    assert _calls(fake, "IBuilderConfig.builder_optimization_level=") == [(2,)]
    level = fake.HardwareCompatibilityLevel.AMPERE_PLUS
    assert _calls(fake, "IBuilderConfig.hardware_compatibility_level=") == [(level,)]
    assert _calls(fake, "Runtime.engine_host_code_allowed=") == [(True,)]  # version-compatible plans need it
    assert _calls(fake, "IOptimizationProfile.set_shape") == [("images", (1, 3, 64, 64), (2, 3, 64, 64),
                                                               (4, 3, 64, 64))]
    spec = load_bundle(root).sidecar.engines[0]
    assert spec == outcome.spec
    assert (spec.file, spec.tensorrt_version, spec.gpu_sm, spec.precision) == (engine.name, version, "8.6", "fp16")
    assert {"version_compatible", "hardware_compatible"} <= set(spec.flags)


def test_dla_build_reports_layers_on_dla(tmp_path: Path, fake: FakeTrt) -> None:
    version = fake.surface_version
    layers = [{"Name": "{ForeignNode[/model.0/conv/Conv.../model.9/Concat]}", "LayerType": "DLA"},
              {"Name": "images to nvm", "LayerType": "Reformat"},
              {"Name": "{ForeignNode[/head/Sigmoid]}", "LayerType": "Myelin"}]
    _script_build(fake, layers=layers)
    root = _bundle(tmp_path / "b", shape=["batch", 3, 64, 64])
    plan = _plan("jetson-agx-orin-64gb", version, precision="fp16", onnx_kind=_onnx_kind(version), dla=True,
                 input_shape=["batch", 3, 64, 64])
    outcome = engine_stage(load_bundle(root), plan, DetectedEnv("8.7", version))
    assert outcome.dla_layers == (1, 3)
    assert _calls(fake, "IBuilderConfig.default_device_type=") == [(fake.DeviceType.DLA,)]
    assert _calls(fake, "IBuilderConfig.DLA_core=") == [(0,)]
    assert _calls(fake, "IOptimizationProfile.set_shape") == [("images",) + ((1, 3, 64, 64),) * 3]  # static
    assert fake.BuilderFlag.GPU_FALLBACK in [a[0] for a in _calls(fake, "IBuilderConfig.set_flag")]


@pytest.mark.parametrize(("failure", "message"), [
    ({"built": False}, "failed to build an engine"),
    ({"cache_back": False}, "returned no timing cache; nothing was written"),
    ({"loads": False}, "cannot load it back on this GPU; nothing was written"),
    ({"cache_ok": False}, r"refused timing cache .*timing.cache \(made by another TensorRT"),
])  # fmt: skip
def test_none_and_false_returns_write_nothing(tmp_path: Path, fake: FakeTrt, failure: dict[str, bool],
                                              message: str) -> None:
    _script_build(fake, **failure)
    root = _bundle(tmp_path / "b")
    before = (root / SIDECAR_NAME).read_text()
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"cache-v1")
    version = fake.surface_version
    plan = _plan("desktop-rtx", version, precision="fp16", onnx_kind=_onnx_kind(version))
    with pytest.raises(UserError, match=message) as err:
        engine_stage(load_bundle(root), plan, DetectedEnv("8.6", version), timing_cache=cache)
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in root.iterdir()) == [SIDECAR_NAME, "model.onnx"]
    assert (root / SIDECAR_NAME).read_text() == before and cache.read_bytes() == b"cache-v1"


def test_dla_layer_count_reads_inspector_json() -> None:
    assert dla_layer_count(json.dumps({"Layers": ["conv1", "{ForeignNode[a...b]}"]})) == (1, 2)
    assert dla_layer_count(json.dumps({"Layers": [{"Name": "conv", "LayerType": "CaskConvolution"}]})) == (0, 1)
    assert dla_layer_count("not json") is None


def test_parse_error_names_the_node(tmp_path: Path, fake: FakeTrt) -> None:
    _script_build(fake, parse_ok=False)
    version = fake.surface_version
    plan = _plan("desktop-rtx", version, precision="fp16", onnx_kind=_onnx_kind(version))
    # 8.6's ParserError has no node_name()/node_operator(): the message names the node by index only
    where = "node #3" if version == "8.6.1" else r"node #3 '/model/Foo' \(FooOp\)"
    with pytest.raises(UserError, match=where + r": No importer registered"):
        build_engine(tmp_path / "m.onnx", plan, tmp_path / "m.engine", timing_cache=None, gpu_sm="8.6")
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
