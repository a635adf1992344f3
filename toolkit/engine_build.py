"""The thin part of the engine stage: hand an ``EnginePlan`` to TensorRT, on the target device only.

TensorRT plans run only on the GPU SM and TensorRT version they were built with, so ``engine_stage``
first compares this machine (``DetectedEnv``, from ``edgevision.runtime.doctor``) with the profile:
elsewhere it builds nothing and returns the exact command to run on the device. On the device,
``build_engine`` parses the ONNX, configures the builder per the plan, builds, deserializes the plan
and reads the ``IEngineInspector`` JSON; only when every step succeeded does it write the plain plan,
the layer information beside it and the persistent timing cache (each atomically), so a TensorRT call
that returns None (``build_serialized_network``, ``deserialize_cuda_engine``, ``get_timing_cache``,
``create_engine_inspector``; all declared nullable) or a refused timing cache (``set_timing_cache``
returns False) is a one-line error with nothing written. For a DLA plan the inspector JSON says how
many layers really run on the DLA (``dla_layer_count``). TensorRT is imported lazily.

Every call here is checked against NVIDIA's own bindings of 8.6.1, 10.3.0, 10.16.1 and 11.4.0 by
``tests/toolkit/test_engine_build.py`` (a fake ``tensorrt`` generated from the real surfaces,
``scripts/trt-surface``).

NVIDIA Python API used (same names in 8.5, 10.x and 11.x unless noted):

- ``Builder``, ``create_network`` (``1 << NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` before 10,
  ``STRONGLY_TYPED`` 9+), ``OnnxParser.parse_from_file``, ``num_errors``, ``get_error(i).desc()/.node()``:
  https://docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-843/api/python_api/parsers/Onnx/pyOnnx.html
- ``create_builder_config``, ``set_memory_pool_limit(MemoryPoolType.WORKSPACE, n)``, ``set_flag``,
  ``default_device_type``, ``DLA_core``, ``builder_optimization_level``, ``create_timing_cache``,
  ``set_timing_cache``, ``get_timing_cache().serialize()``, ``add_optimization_profile``:
  https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/BuilderConfig.html
- ``build_serialized_network``, ``Runtime.deserialize_cuda_engine``, ``create_engine_inspector``,
  ``get_engine_information(LayerInformationFormat.JSON)``:
  https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/advanced.html
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevision.runtime.backends.trt_plan import normalize_sm, rebuild_command
from edgevision.runtime.backends.trt_version import parse_trt_version, supports_strongly_typed_flag
from edgevision.runtime.bundle import SIDECAR_NAME, Bundle, EngineSpec
from edgevision.runtime.errors import MissingDependencyError, UserError
from edgevision.runtime.fsutil import atomic_write_bytes, atomic_write_text, sha256_file

from .engine_plan import EnginePlan, engine_name

__all__ = [
    "DetectedEnv", "EngineOutcome", "build_engine", "detect_environment", "device_command", "engine_stage",
    "target_mismatch",
]


@dataclass(frozen=True)
class DetectedEnv:
    """This machine as ``doctor`` sees it: GPU SM ("8.7") and TensorRT version, None when absent."""

    sm: str | None
    tensorrt_version: str | None


def detect_environment() -> DetectedEnv:
    """Ask ``edgevision.runtime.doctor`` (nvidia-smi / Tegra chip id; the installed tensorrt)."""
    from edgevision.runtime.doctor import collect, profile_query

    query = profile_query(collect(check_torch=False))
    return DetectedEnv(sm=query["sm"], tensorrt_version=query["tensorrt_version"])


def target_mismatch(plan: EnginePlan, env: DetectedEnv) -> list[str]:
    """Why this machine cannot build ``plan`` (empty when it can): SM and TensorRT major.minor must match."""
    reasons = []
    if env.sm is None:
        reasons.append("no CUDA GPU found")
    elif normalize_sm(env.sm) not in plan.target_sms:
        reasons.append(f"GPU SM {normalize_sm(env.sm)} here, profile {plan.profile} needs SM "
                       f"{' or '.join(plan.target_sms)}")
    if env.tensorrt_version is None:
        reasons.append("TensorRT is not installed here")
    elif parse_trt_version(env.tensorrt_version).major_minor != parse_trt_version(plan.tensorrt_version).major_minor:
        reasons.append(f"TensorRT {env.tensorrt_version} here, the plan is for TensorRT {plan.tensorrt_version}")
    return reasons


def device_command(bundle: str | Path, plan: EnginePlan, *, sparse: bool = False) -> str:
    """The exact ``edgevision engine`` command that builds ``plan`` on the device."""
    cmd = [rebuild_command(bundle, plan.profile), f"--precision {plan.precision}"]
    cmd.append("--dla" if plan.dla_core is not None else "--no-dla")
    cmd.append(f"--workspace-mb {plan.workspace_bytes >> 20}")
    if plan.opt_level is not None:
        cmd.append(f"--opt-level {plan.opt_level}")
    if sparse:
        cmd.append("--sparse")
    if plan.version_compatible:
        cmd.append("--version-compatible")
    if plan.hardware_compatible:
        cmd.append("--hardware-compatible")
    return " ".join(cmd)


def _import_trt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise MissingDependencyError("tensorrt", "tensorrt") from exc
    return trt


def _parse_error_line(parser: Any, onnx_path: Path) -> str:
    parts = []
    for i in range(int(parser.num_errors)):
        err = parser.get_error(i)
        node = int(err.node())
        name = getattr(err, "node_name", None)  # 8.6+: node_name() / node_operator()
        op = getattr(err, "node_operator", None)
        where = f"node #{node}" if node >= 0 else "graph"
        if callable(name) and name():
            where += f" {name()!r}"
        if callable(op) and op():
            where += f" ({op()})"
        parts.append(f"{where}: {err.desc()}")
    return f"{onnx_path}: TensorRT cannot parse the ONNX: " + ("; ".join(parts) or "unknown parser error")


def _set_dynamic_ranges(network: Any, ranges: dict[str, float], onnx_path: Path) -> None:
    """``ITensor.set_dynamic_range(-amax, amax)`` for every network tensor the Q/DQ scales cover."""
    if not ranges:
        return
    tensors = [network.get_input(i) for i in range(network.num_inputs)]
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        tensors += [layer.get_output(j) for j in range(layer.num_outputs)]
    for tensor in tensors:
        amax = ranges.get(tensor.name)
        if amax is not None and not tensor.set_dynamic_range(-amax, amax):
            raise UserError(f"{onnx_path}: TensorRT refused the INT8 range +-{amax:g} of tensor {tensor.name!r}")


def _config(trt: Any, builder: Any, plan: EnginePlan, cache_blob: bytes, cache_path: Path | None) -> Any:
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if plan.hardware_compatible:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    if plan.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
    if plan.opt_level is not None:
        config.builder_optimization_level = plan.opt_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # full layer info for the inspector
    cache = config.create_timing_cache(cache_blob)
    if cache is None or not config.set_timing_cache(cache, False):
        what = f"timing cache {cache_path}" if cache_blob else "an empty timing cache"
        raise UserError(f"TensorRT refused {what} (made by another TensorRT version or GPU?); delete it or pass "
                        "--timing-cache with a new file")
    if plan.profile_shapes:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in plan.profile_shapes.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
    return config


def build_engine(onnx_path: Path, plan: EnginePlan, out_path: Path, *, timing_cache: Path | None,
                 gpu_sm: str) -> dict[str, Any]:
    """Build ``plan`` from ``onnx_path`` into ``out_path`` (call on the target only; see ``engine_stage``).

    Returns the ``EngineSpec`` fields. Writes ``out_path`` (plain plan), ``<out_path>.layers.json``
    (inspector) and updates ``timing_cache`` when given.
    """
    trt = _import_trt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if plan.explicit_batch:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if plan.strongly_typed and supports_strongly_typed_flag(plan.tensorrt_version):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with tempfile.TemporaryDirectory() as tmp:
        ranges: dict[str, float] = {}
        source = onnx_path
        if plan.implicit_int8:
            from .engine_dla import qdq_to_dynamic_ranges

            source = Path(tmp) / "implicit-int8.onnx"
            ranges = qdq_to_dynamic_ranges(onnx_path, source)
        if not parser.parse_from_file(str(source)):
            raise UserError(_parse_error_line(parser, onnx_path))
    _set_dynamic_ranges(network, ranges, onnx_path)
    blob = timing_cache.read_bytes() if timing_cache is not None and timing_cache.is_file() else b""
    config = _config(trt, builder, plan, blob, timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"TensorRT failed to build an engine from {onnx_path} for {plan.profile} (see its log above)")
    data = bytes(memoryview(serialized))
    cache_data = None
    if timing_cache is not None:
        cache = config.get_timing_cache()
        if cache is None:
            raise UserError(f"TensorRT built {out_path.name} but returned no timing cache; nothing was written")
        cache_data = bytes(memoryview(cache.serialize()))
    runtime = trt.Runtime(logger)
    if plan.version_compatible:
        runtime.engine_host_code_allowed = True  # the plan embeds its lean runtime (host code)
    engine = runtime.deserialize_cuda_engine(data)
    inspector = engine.create_engine_inspector() if engine is not None else None
    if inspector is None:
        raise UserError(f"TensorRT built {out_path.name} but cannot load it back on this GPU; nothing was written")
    info = str(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    atomic_write_text(out_path.with_name(out_path.name + ".layers.json"), info)
    if cache_data is not None and timing_cache is not None:
        atomic_write_bytes(timing_cache, cache_data)
    atomic_write_bytes(out_path, data)  # last: a plan on disk means everything beside it is there too
    return {
        "file": out_path.name, "device_profile": plan.profile, "tensorrt_version": str(trt.__version__),
        "gpu_sm": normalize_sm(gpu_sm), "precision": plan.precision, "dla_core": plan.dla_core,
        "flags": plan.sidecar_flags, "onnx_hash": sha256_file(onnx_path), "calibration_hash": None,
        "dla_layers": dla_layer_count(info) if plan.dla_core is not None else None,
    }


def dla_layer_count(info_json: str) -> tuple[int, int] | None:
    """(layers on DLA, all layers) from ``IEngineInspector.get_engine_information(JSON)``; None if unreadable.

    TensorRT folds the layers it hands to a DLA into "{ForeignNode[first...last]}" layers; with DETAILED
    profiling verbosity each layer is a dict whose ``LayerType`` names the implementation. A layer counts
    as on DLA when its type says DLA, or when it is a ForeignNode that is not a GPU Myelin/kgen graph
    (GPU foreign nodes carry those types). Not yet checked against a DLA engine built on an Orin.
    """
    try:
        layers = json.loads(info_json).get("Layers", [])
    except (ValueError, AttributeError):
        return None
    on_dla = 0
    for layer in layers:
        name = str(layer.get("Name", "")) if isinstance(layer, dict) else str(layer)
        kind = str(layer.get("LayerType", "") or layer.get("ParameterType", "")) if isinstance(layer, dict) else ""
        if "dla" in kind.lower() or ("ForeignNode" in name and kind.lower() not in ("myelin", "kgen")):
            on_dla += 1
    return on_dla, len(layers)


@dataclass(frozen=True)
class EngineOutcome:
    """Either ``spec`` (built here and added to the sidecar) or ``command`` (run it on the device)."""

    spec: EngineSpec | None
    command: str | None
    reasons: tuple[str, ...] = ()
    dla_layers: tuple[int, int] | None = None  # (on DLA, all), from the engine inspector


def add_engine(bundle: Bundle, spec: EngineSpec) -> None:
    """Record ``spec`` in the bundle's sidecar (replacing an entry for the same file), atomically."""
    side = bundle.sidecar
    side.engines = [e for e in side.engines if e.file != spec.file] + [spec]
    atomic_write_text(bundle.root / SIDECAR_NAME, json.dumps(side.model_dump(mode="json"), indent=2) + "\n")


def engine_stage(bundle: Bundle, plan: EnginePlan, env: DetectedEnv, *, timing_cache: Path | None = None,
                 sparse: bool = False) -> EngineOutcome:
    """On the target device: build, add the engine to the sidecar. Elsewhere: the command to run there."""
    reasons = target_mismatch(plan, env)
    if reasons:
        return EngineOutcome(None, device_command(bundle.root, plan, sparse=sparse), tuple(reasons))
    assert env.sm is not None  # target_mismatch checked it
    out = bundle.root / engine_name(plan.profile, plan.precision, dla_core=plan.dla_core)
    fields = build_engine(bundle.model_path, plan, out, timing_cache=timing_cache, gpu_sm=env.sm)
    fields["calibration_hash"] = bundle.sidecar.provenance.calibration_hash
    dla_layers = fields.pop("dla_layers")
    spec = EngineSpec.model_validate(fields)
    add_engine(bundle, spec)
    return EngineOutcome(spec, None, dla_layers=dla_layers)
