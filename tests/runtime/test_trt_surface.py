"""The TensorRT version gates (``trt_version``) against NVIDIA's real bindings of each release, and the
generated fake ``tensorrt`` (``tests/trt_fake.py``) refusing what the real bindings refuse.

The surfaces in ``tests/trt_surfaces`` are dumped from the real pybind11 modules by ``scripts/trt-surface``;
``test_committed_surfaces_match_the_wheels`` re-dumps them where the wheels and stand-ins are cached.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from trt_fake import SURFACES, VERSIONS, FakeTrt, load_surface

from edgevision.runtime.backends.trt_version import capabilities

ROOT = Path(__file__).resolve().parents[2]


def _has(version: str, *keys: str) -> bool:
    fake = FakeTrt(version)
    return all(fake.has(k) for k in keys)


@pytest.mark.parametrize("version", VERSIONS)
def test_version_gates_match_the_real_bindings(version: str) -> None:
    """Each gate in trt_version says what the real module of that release has."""
    caps = capabilities(version)
    assert caps.supported
    assert caps.builder_precision_flags == _has(version, "BuilderFlag.FP16", "BuilderFlag.INT8")
    assert caps.int8_calibrator == _has(version, "IBuilderConfig.int8_calibrator")
    assert caps.strongly_typed_flag == _has(version, "NetworkDefinitionCreationFlag.STRONGLY_TYPED")
    if caps.explicit_batch_flag:
        assert _has(version, "NetworkDefinitionCreationFlag.EXPLICIT_BATCH")
    if not _has(version, "NetworkDefinitionCreationFlag.EXPLICIT_BATCH"):
        assert not caps.explicit_batch_flag
    assert caps.binding_api == _has(version, "ICudaEngine.get_binding_shape", "IExecutionContext.execute_async_v2")
    assert caps.builder_optimization_level == _has(version, "IBuilderConfig.builder_optimization_level")
    assert caps.version_compatible == _has(version, "BuilderFlag.VERSION_COMPATIBLE",
                                           "HardwareCompatibilityLevel.AMPERE_PLUS",
                                           "Runtime.engine_host_code_allowed")
    assert caps.named_tensor_api == _has(
        version, "ICudaEngine.num_io_tensors", "ICudaEngine.get_tensor_name", "ICudaEngine.get_tensor_mode",
        "ICudaEngine.get_tensor_shape", "ICudaEngine.get_tensor_dtype", "ICudaEngine.get_tensor_profile_shape",
        "IExecutionContext.set_input_shape", "IExecutionContext.set_tensor_address",
        "IExecutionContext.execute_async_v3", "IExecutionContext.get_tensor_shape")


@pytest.mark.parametrize("version", VERSIONS)
def test_real_enum_values_differ_between_releases(version: str) -> None:
    """Why the fake must come from the real module: STRONGLY_TYPED is 1 in 10.x and 0 in 11 (EXPLICIT_BATCH gone)."""
    flags = load_surface(version)["classes"]["NetworkDefinitionCreationFlag"]["members"]
    expected = {"8.6.1": {"EXPLICIT_BATCH": 0}, "11.4.0.106": {"STRONGLY_TYPED": 0}}.get(
        version, {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1})
    assert {k: v for k, v in flags.items() if k in ("EXPLICIT_BATCH", "STRONGLY_TYPED")} == expected


def test_fake_refuses_what_the_bindings_refuse() -> None:
    fake = FakeTrt("10.3.0")
    config = fake.make("IBuilderConfig")
    cache = fake.make("ITimingCache")
    with pytest.raises(TypeError, match="missing arguments \\['ignore_mismatch'\\]"):
        config.set_timing_cache(cache)  # arity from the pybind11 signature
    with pytest.raises(TypeError, match="expects BuilderFlag"):
        config.set_flag(0)  # pybind11 enums do not convert from int
    with pytest.raises(TypeError, match="expects BuilderFlag"):
        config.set_flag(fake.MemoryPoolType.WORKSPACE)  # nor from another enum
    with pytest.raises(TypeError, match="expects ITimingCache"):
        config.set_timing_cache(b"blob", False)
    with pytest.raises(AttributeError):
        config.max_workspace_size = 1 << 20  # removed in 10.0
    with pytest.raises(AttributeError, match="can't set"):
        fake.make("ICudaEngine").num_io_tensors = 3  # read-only property
    with pytest.raises(TypeError, match="No constructor"):
        fake.IBuilderConfig()
    with pytest.raises(TypeError, match="unexpected keyword argument 'stream'"):
        fake.make("IExecutionContext").execute_async_v3(stream=0)
    assert len(fake.mismatches) == 8
    assert not hasattr(FakeTrt("11.4.0.106").BuilderFlag, "FP16")  # weak typing removed in 11
    assert FakeTrt("8.6.1").make("IBuilderConfig").__class__.__name__ == "IBuilderConfig"


def test_fake_accepts_the_documented_calls() -> None:
    fake = FakeTrt("8.6.1")
    fake.script("IBuilderConfig.set_timing_cache", lambda self, cache, ignore_mismatch: True)
    fake.script("IExecutionContext.execute_async_v3", lambda self, stream_handle: True)
    assert fake.make("IBuilderConfig").set_timing_cache(fake.make("ITimingCache"), ignore_mismatch=False)
    assert fake.make("IExecutionContext").execute_async_v3(stream_handle=0)
    assert fake.Logger.WARNING == fake.ILogger.Severity.WARNING and int(fake.Logger.WARNING) == 2
    assert fake.nptype(fake.DataType.HALF).__name__ == "float16"
    with pytest.raises(TypeError):
        fake.nptype(fake.DataType.FP8)  # no numpy type: the real nptype raises TypeError
    assert fake.mismatches == []


def test_surfaces_are_complete() -> None:
    assert sorted(p.stem for p in SURFACES.glob("*.json")) == sorted(VERSIONS)
    for v in VERSIONS:
        s = load_surface(v)
        assert s["module_version"] == v and len(s["classes"]) > 100 and "Builder" in s["module"]


def _cached(version: str) -> bool:
    cache = ROOT / ".trt-surface"
    return (cache / "site" / version / "tensorrt_bindings" / "tensorrt.so").is_file() and (
        cache / "standin" / version).is_dir()


@pytest.mark.skipif(not all(_cached(v) for v in VERSIONS),
                    reason="bindings wheels / stand-ins not cached (run scripts/trt-surface fetch; needs gcc, nm, "
                           "and the package registry)")
@pytest.mark.skipif(shutil.which("nm") is None, reason="binutils (nm) not installed")
def test_committed_surfaces_match_the_wheels(tmp_path: Path) -> None:
    """Re-dump one release from the real module: the committed file is what NVIDIA's bindings expose."""
    version = "10.3.0"
    out = tmp_path / "s.json"
    env_script = (f"import importlib.util, runpy, sys; sys.argv=['x', {version!r}, {str(out)!r}]; "
                  f"runpy.run_path({str(ROOT / 'scripts' / 'trt_surface_dump.py')!r}, run_name='__main__')")
    cache = ROOT / ".trt-surface"
    env = {"PYTHONPATH": str(cache / "site" / version), "LD_LIBRARY_PATH": str(cache / "standin" / version),
           "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", env_script], env=env, check=True, timeout=120)
    assert json.loads(out.read_text()) == json.loads((SURFACES / f"{version}.json").read_text())


def test_guard_checks_a_hand_written_fake() -> None:
    """trt_guard.guard: what a hand-written fake is asked for, checked against a real surface."""
    from types import SimpleNamespace

    from trt_guard import guard

    class Context:
        def execute_async_v3(self, stream_handle: int) -> bool:
            return True

    class Engine:
        num_io_tensors = 2

        def create_execution_context(self) -> Context:
            return Context()

        def get_binding_shape(self, i: int) -> tuple[int, ...]:
            return (1,)

    class Runtime:
        def __init__(self, logger: object) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> Engine:
            return Engine()

    hand = SimpleNamespace(Runtime=Runtime, Logger=lambda *a: object(), __version__="10.3.0")
    for version, removed in (("8.6.1", False), ("10.3.0", True)):
        trt = guard(hand, version)
        engine = trt.Runtime(object()).deserialize_cuda_engine(b"plan")  # comes back as a guarded ICudaEngine
        assert engine.num_io_tensors == 2 and engine.create_execution_context().execute_async_v3(stream_handle=0)
        with pytest.raises(TypeError):
            engine.create_execution_context().execute_async_v3(0, 1)
        if removed:
            with pytest.raises(AttributeError):
                engine.get_binding_shape(0)  # the binding API is gone in 10
        else:
            assert engine.get_binding_shape(0) == (1,)
        assert len(trt.mismatches) == 1 + removed
