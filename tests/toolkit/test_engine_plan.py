"""Engine planning without TensorRT: profile x TensorRT version x precision -> flags, or a clear error."""

from __future__ import annotations

from typing import Any

import pytest

from edgevision.runtime.errors import UserError
from edgevision.toolkit.devices import load_profile, profile_names
from edgevision.toolkit.engine_plan import EnginePlan, engine_name, plan_engine

VERSIONS = ["8.5.2", "10.3.0", "11.0.0"]
PRECISIONS = ["fp32", "fp16", "int8"]
# Which of VERSIONS each shipped TensorRT profile covers (devices/*.yaml `tensorrt:` ranges).
IN_RANGE = {
    "desktop-rtx": {"8.5.2", "10.3.0", "11.0.0"},
    "jetson-agx-orin-64gb": {"8.5.2", "10.3.0", "11.0.0"},
    "jetson-orin-nano-8gb": {"8.5.2", "10.3.0"},
    "jetson-orin-nx-16gb": {"8.5.2", "10.3.0"},
    "jetson-xavier-nx": {"8.5.2"},
    "jetson-agx-xavier": {"8.5.2"},
    "jetson-nano": set(),
}
SHAPE = [1, 3, 640, 640]


def _onnx_kind(precision: str, version: str) -> str:
    if precision == "int8":
        return "qdq-int8"
    return "fp16" if precision == "fp16" and version.startswith("11") else "fp32"


def _plan(profile: str, version: str, **kw: Any) -> EnginePlan:
    args: dict[str, Any] = {"precision": None, "onnx_kind": "fp32", "dla": False, "sparse_model": False,
                            "dynamic_batch": None, "input_shape": SHAPE, "workspace_mb": None, "opt_level": None}
    args.update(kw)
    return plan_engine(load_profile(profile), version, **args)


def test_matrix_covers_every_tensorrt_profile() -> None:
    trt_profiles = {n for n in profile_names() if load_profile(n).backend == "tensorrt"}
    assert trt_profiles == set(IN_RANGE)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", sorted(IN_RANGE))
def test_matrix(name: str, version: str, precision: str) -> None:
    profile = load_profile(name)
    kw = {"precision": precision, "onnx_kind": _onnx_kind(precision, version)}
    if not getattr(profile.supports, precision):
        with pytest.raises(UserError, match=f"cannot run {precision}"):
            _plan(name, version, **kw)
        return
    if version not in IN_RANGE[name]:
        with pytest.raises(UserError, match="TensorRT"):
            _plan(name, version, **kw)
        return
    plan = _plan(name, version, **kw)
    assert plan.precision == precision and plan.profile == name
    assert plan.explicit_batch == version.startswith("8")
    if version.startswith("11"):
        assert plan.strongly_typed and plan.builder_flags == ()
    else:
        expected = {"fp32": (), "fp16": ("FP16",), "int8": ("FP16", "INT8")}[precision]
        assert not plan.strongly_typed and plan.builder_flags == expected
    assert plan.dla_core is None and plan.profile_shapes == {}
    assert plan.workspace_bytes == (profile.workspace_mb or 1024) << 20
    assert plan.target_sms == tuple(profile.sms)


def test_int8_on_jetson_nano_is_refused() -> None:
    with pytest.raises(UserError, match=r"jetson-nano cannot run int8.*--precision fp16"):
        _plan("jetson-nano", "8.5.2", precision="int8", onnx_kind="qdq-int8")


def test_jetson_nano_tensorrt_is_too_old_for_edgevision() -> None:
    with pytest.raises(UserError, match=r"8\.5 to 11\.x"):
        _plan("jetson-nano", "8.2.1", precision="fp16")


def test_dla_on_orin_nano_is_refused() -> None:
    with pytest.raises(UserError, match="jetson-orin-nano-8gb has no DLA"):
        _plan("jetson-orin-nano-8gb", "10.3.0", precision="fp16", dla=True)


def test_dla_plan_on_agx_orin() -> None:
    plan = _plan("jetson-agx-orin-64gb", "10.3.0", precision="fp16", onnx_kind="fp32", dla=True)
    assert plan.dla_core == 0 and "GPU_FALLBACK" in plan.builder_flags and "FP16" in plan.builder_flags
    assert "gpu_fallback" in plan.sidecar_flags


def test_dla_int8_is_implicit_quantization() -> None:
    """DLA takes implicit quantization only: a Q/DQ network named .dla0 would silently run on the GPU, so on
    TensorRT <= 10 the Q/DQ scales become dynamic ranges; TensorRT 11 has no implicit INT8: refused."""
    plan = _plan("jetson-agx-orin-64gb", "10.3.0", precision="int8", onnx_kind="qdq-int8", dla=True)
    assert plan.implicit_int8 and plan.precision == "int8" and plan.dla_core == 0
    assert set(plan.builder_flags) >= {"INT8", "FP16", "GPU_FALLBACK"}
    assert not _plan("jetson-agx-orin-64gb", "10.3.0", precision="int8", onnx_kind="qdq-int8").implicit_int8
    with pytest.raises(UserError, match=r"not a Q/DQ ONNX, and TensorRT 11.0.0 has no implicit INT8.*--no-dla"):
        _plan("jetson-agx-orin-64gb", "11.0.0", precision="int8", onnx_kind="qdq-int8", dla=True)


def test_dla_takes_static_shapes_only() -> None:
    dyn = ["batch", 3, 64, 64]
    with pytest.raises(UserError, match=r"DLA takes static shapes only: .* \(1, 2, 4\) has min != max"):
        _plan("jetson-agx-orin-64gb", "10.3.0", precision="fp16", dla=True, input_shape=dyn, dynamic_batch=(1, 2, 4))
    plan = _plan("jetson-agx-orin-64gb", "10.3.0", precision="fp16", dla=True, input_shape=dyn)
    assert plan.profile_shapes == {"images": ((1, 3, 64, 64),) * 3}
    assert any("fixed at 1" in n for n in plan.notes)
    fixed = _plan("jetson-agx-orin-64gb", "10.3.0", precision="fp16", dla=True, input_shape=dyn,
                  dynamic_batch=(2, 2, 2))
    assert fixed.profile_shapes == {"images": ((2, 3, 64, 64),) * 3}
    gpu = _plan("jetson-agx-orin-64gb", "10.3.0", precision="fp16", input_shape=dyn, dynamic_batch=(1, 2, 4))
    assert gpu.profile_shapes["images"][2][0] == 4


def test_version_and_hardware_compatible_flags() -> None:
    plan = _plan("desktop-rtx", "10.3.0", precision="fp16", version_compatible=True, hardware_compatible=True)
    assert "VERSION_COMPATIBLE" in plan.builder_flags and plan.hardware_compatible
    assert {"version_compatible", "hardware_compatible"} <= set(plan.sidecar_flags)  # the names the runtime reads
    assert "hardware_compatible" not in _plan("desktop-rtx", "10.3.0", precision="fp16").sidecar_flags
    with pytest.raises(UserError, match=r"not supported on Jetson \(jetson-agx-orin-64gb, SM 8.7\)"):
        _plan("jetson-agx-orin-64gb", "10.3.0", precision="fp16", hardware_compatible=True)
    with pytest.raises(UserError, match=r"need TensorRT 8\.6 or newer"):
        _plan("jetson-agx-orin-64gb", "8.5.2", precision="fp16", version_compatible=True)
    assert "VERSION_COMPATIBLE" in _plan("jetson-agx-orin-64gb", "10.3.0", precision="fp16",
                                         version_compatible=True).builder_flags


def test_dla_needs_reduced_precision() -> None:
    with pytest.raises(UserError, match="DLA runs fp16 or int8"):
        _plan("jetson-agx-orin-64gb", "10.3.0", precision="fp32", dla=True)


def test_version_outside_profile_range() -> None:
    with pytest.raises(UserError, match="outside device profile jetson-orin-nano-8gb's range"):
        _plan("jetson-orin-nano-8gb", "11.0.0", precision="fp32")


def test_int8_without_qdq_on_trt11() -> None:
    with pytest.raises(UserError, match=r"Q/DQ.*strongly typed"):
        _plan("desktop-rtx", "11.0.0", precision="int8", onnx_kind="fp32")


def test_int8_without_qdq_on_trt10_has_no_calibrator() -> None:
    with pytest.raises(UserError, match=r"Q/DQ.*explicit quantization"):
        _plan("desktop-rtx", "10.3.0", precision="int8", onnx_kind="fp32")


def test_fp16_on_trt11_needs_fp16_onnx() -> None:
    with pytest.raises(UserError, match=r"strongly typed.*FP16 ONNX"):
        _plan("desktop-rtx", "11.0.0", precision="fp16", onnx_kind="fp32")
    assert _plan("desktop-rtx", "10.3.0", precision="fp16", onnx_kind="fp32").builder_flags == ("FP16",)


def test_qdq_onnx_builds_int8_only() -> None:
    with pytest.raises(UserError, match="builds an int8 engine"):
        _plan("desktop-rtx", "10.3.0", precision="fp16", onnx_kind="qdq-int8")


def test_default_precision() -> None:
    # orin nano defaults to int8, but a plain ONNX cannot give int8: fp16 with a note
    plan = _plan("jetson-orin-nano-8gb", "10.3.0")
    assert plan.precision == "fp16" and any("Q/DQ" in n for n in plan.notes)
    assert _plan("jetson-orin-nano-8gb", "10.3.0", onnx_kind="qdq-int8").precision == "int8"
    assert _plan("desktop-rtx", "11.0.0", onnx_kind="fp16").precision == "fp16"


def test_sparsity_flag_or_note() -> None:
    assert "SPARSE_WEIGHTS" in _plan("desktop-rtx", "10.3.0", precision="fp16", sparse_model=True).builder_flags
    plan = _plan("jetson-xavier-nx", "8.5.2", precision="fp16", sparse_model=True)
    assert "SPARSE_WEIGHTS" not in plan.builder_flags
    assert any("sparsity skipped" in n for n in plan.notes)


def test_dynamic_batch_profile_shapes() -> None:
    shape = ["batch", 3, 320, 320]
    plan = _plan("desktop-rtx", "10.3.0", input_shape=shape, dynamic_batch=(1, 4, 8))
    assert plan.profile_shapes == {"images": ((1, 3, 320, 320), (4, 3, 320, 320), (8, 3, 320, 320))}
    default = _plan("jetson-orin-nano-8gb", "10.3.0", input_shape=shape)
    assert default.profile_shapes["images"][2] == (4, 3, 320, 320)  # profile max_batch
    with pytest.raises(UserError, match="min <= opt <= max"):
        _plan("desktop-rtx", "10.3.0", input_shape=shape, dynamic_batch=(4, 2, 8))
    with pytest.raises(UserError, match="fixed batch"):
        _plan("desktop-rtx", "10.3.0", dynamic_batch=(1, 2, 4))
    with pytest.raises(UserError, match="only the batch dimension"):
        _plan("desktop-rtx", "10.3.0", input_shape=[1, 3, "h", "w"])
    noted = _plan("jetson-orin-nano-8gb", "10.3.0", input_shape=shape, dynamic_batch=(1, 1, 16))
    assert any("max_batch" in n for n in noted.notes)


def test_workspace_and_opt_level() -> None:
    plan = _plan("desktop-rtx", "10.3.0", workspace_mb=256, opt_level=5)
    assert plan.workspace_bytes == 256 << 20 and plan.opt_level == 5
    old = _plan("desktop-rtx", "8.5.2", opt_level=4)
    assert old.opt_level is None and any("optimization level" in n for n in old.notes)
    with pytest.raises(UserError, match="0 to 5"):
        _plan("desktop-rtx", "10.3.0", opt_level=7)


def test_cpu_profile_has_no_engine() -> None:
    with pytest.raises(UserError, match="onnxruntime, not TensorRT"):
        _plan("x86-cpu", "10.3.0")


def test_engine_name() -> None:
    assert engine_name(load_profile("desktop-rtx"), "fp16") == "model.desktop-rtx.fp16.engine"
    assert engine_name("jetson-agx-orin-64gb", "int8", dla_core=0) == "model.jetson-agx-orin-64gb.int8.dla0.engine"
