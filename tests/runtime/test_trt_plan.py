"""TensorRT backend decisions without TensorRT: buffer planning through the EngineView seam, version
gates, and the sidecar/engine compatibility check (these run everywhere)."""

from __future__ import annotations

import importlib.util
import shlex
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Tuple

import pytest

from edgevision.runtime.backends import open_backend
from edgevision.runtime.backends import trt_version as tv
from edgevision.runtime.backends.trt_plan import (
    FLAG_HARDWARE_COMPATIBLE,
    FLAG_VERSION_COMPATIBLE,
    TensorInfo,
    check_engine_compat,
    normalize_sm,
    plan_buffers,
    rebuild_command,
    resolve_input_shapes,
)
from edgevision.runtime.bundle import EngineSpec
from edgevision.runtime.errors import MissingDependencyError, UserError

Shape = Tuple[int, ...]  # typing.Tuple: these tests also run on Python 3.8


class FakeView:
    """An engine as TensorRT would describe it; ``outputs_for`` plays shape inference."""

    def __init__(self, infos: Sequence[TensorInfo], outputs_for: Callable[[Mapping[str, Shape]], dict[str, Shape]]):
        self.infos = list(infos)
        self.outputs_for = outputs_for
        self.asked: list[dict[str, Shape]] = []

    def tensors(self) -> Sequence[TensorInfo]:
        return self.infos

    def output_shapes(self, input_shapes: Mapping[str, Shape]) -> Mapping[str, Shape]:
        self.asked.append(dict(input_shapes))
        return self.outputs_for(input_shapes)


def _yolo(batch: int = 1, dynamic: bool = False, in_dtype: str = "float32") -> FakeView:
    shape = (-1 if dynamic else batch, 3, 640, 640)
    profile = ((1, 3, 640, 640), (4, 3, 640, 640), (8, 3, 640, 640)) if dynamic else None
    infos = [
        TensorInfo("images", True, shape, in_dtype, profile),
        TensorInfo("output0", False, (shape[0], 84, 8400), "float32"),
    ]
    return FakeView(infos, lambda s: {"output0": (s["images"][0], 84, 8400)})


def test_static_engine_plan() -> None:
    plan = plan_buffers(_yolo())
    (inp,), (out,) = plan.inputs, plan.outputs
    assert (inp.name, inp.alloc_shape, inp.dtype, inp.is_dynamic) == ("images", (1, 3, 640, 640), "float32", False)
    assert inp.nbytes == 3 * 640 * 640 * 4 and inp.size == 3 * 640 * 640
    assert (out.alloc_shape, out.nbytes) == ((1, 84, 8400), 84 * 8400 * 4)
    assert plan.total_bytes == inp.nbytes + out.nbytes
    assert inp.tensor_spec().shape == (1, 3, 640, 640) and not inp.tensor_spec().is_dynamic
    assert plan.get("output0") is out


def test_dynamic_batch_allocates_profile_max() -> None:
    view = _yolo(dynamic=True, in_dtype="float16")
    plan = plan_buffers(view)
    inp, out = plan.inputs[0], plan.outputs[0]
    assert view.asked == [{"images": (8, 3, 640, 640)}]  # outputs inferred at the profile max
    assert inp.alloc_shape == (8, 3, 640, 640) and inp.min_shape == (1, 3, 640, 640)
    assert inp.nbytes == 8 * 3 * 640 * 640 * 2  # float16
    assert inp.dynamic_axes == (0,) and out.dynamic_axes == (0,)
    assert out.alloc_shape == (8, 84, 8400)
    spec = inp.tensor_spec()
    assert spec.shape == ("batch", 3, 640, 640) and spec.dtype == "float16" and spec.is_dynamic


def test_dynamic_height_width_named_as_unknown() -> None:
    infos = [
        TensorInfo("x", True, (1, 3, -1, -1), "uint8", ((1, 3, 32, 32), (1, 3, 64, 64), (1, 3, 128, 96))),
        TensorInfo("y", False, (1, -1), "int32"),
    ]
    plan = plan_buffers(FakeView(infos, lambda s: {"y": (1, s["x"][2] * s["x"][3])}))
    assert plan.inputs[0].tensor_spec().shape == (1, 3, "?", "?")
    assert plan.inputs[0].nbytes == 3 * 128 * 96
    assert plan.outputs[0].alloc_shape == (1, 128 * 96) and plan.outputs[0].nbytes == 128 * 96 * 4


def test_multiple_outputs_nms_layout() -> None:
    infos = [
        TensorInfo("images", True, (-1, 3, 320, 320), "float32", ((1, 3, 320, 320),) * 2 + ((2, 3, 320, 320),)),
        TensorInfo("num_dets", False, (-1, 1), "int32"),
        TensorInfo("boxes", False, (-1, 100, 4), "float32"),
        TensorInfo("scores", False, (-1, 100), "float32"),
        TensorInfo("classes", False, (-1, 100), "int32"),
    ]

    def infer(s: Mapping[str, Shape]) -> dict[str, Shape]:
        b = s["images"][0]
        return {"num_dets": (b, 1), "boxes": (b, 100, 4), "scores": (b, 100), "classes": (b, 100)}

    plan = plan_buffers(FakeView(infos, infer))
    assert [o.name for o in plan.outputs] == ["num_dets", "boxes", "scores", "classes"]
    assert [o.nbytes for o in plan.outputs] == [8, 2 * 400 * 4, 800, 800]


def test_type_numpy_cannot_hold_is_refused() -> None:
    infos = [TensorInfo("x", True, (1, 4), "float32"), TensorInfo("y", False, (1, 4), "fp8")]
    with pytest.raises(UserError, match=r"'y' has type fp8.*rebuild"):
        plan_buffers(FakeView(infos, lambda s: {"y": (1, 4)}))


def test_data_dependent_output_refused() -> None:
    infos = [TensorInfo("x", True, (1, 4), "float32"), TensorInfo("idx", False, (-1, 2), "int64")]
    with pytest.raises(UserError, match="data-dependent shape"):
        plan_buffers(FakeView(infos, lambda s: {"idx": (-1, 2)}))


def test_dynamic_input_without_profile_refused() -> None:
    infos = [TensorInfo("x", True, (-1, 4), "float32"), TensorInfo("y", False, (-1, 4), "float32")]
    with pytest.raises(UserError, match="no optimization profile"):
        plan_buffers(FakeView(infos, lambda s: {"y": s["x"]}))


def test_engine_without_inputs_or_outputs() -> None:
    with pytest.raises(UserError, match="no inputs"):
        plan_buffers(FakeView([TensorInfo("y", False, (1,), "float32")], lambda s: {}))
    with pytest.raises(UserError, match="no outputs"):
        plan_buffers(FakeView([TensorInfo("x", True, (1,), "float32")], lambda s: {}))


def test_resolve_input_shapes_within_profile() -> None:
    plan = plan_buffers(_yolo(dynamic=True))
    assert resolve_input_shapes(plan, {"images": (3, 3, 640, 640)}) == {"images": (3, 3, 640, 640)}
    assert resolve_input_shapes(plan, {"images": [8, 3, 640, 640]}) == {"images": (8, 3, 640, 640)}


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((9, 3, 640, 640), r"axis 0 = 9 is outside the engine's optimization profile \[1, 8\]"),
        ((0, 3, 640, 640), r"axis 0 = 0 is outside"),
        ((1, 3, 320, 640), r"axis 2 must be 640, got shape \[1, 3, 320, 640\]"),
        ((3, 640, 640), r"expected 4-D \['batch', 3, 640, 640\]"),
    ],
)
def test_resolve_input_shapes_errors(shape: Shape, message: str) -> None:
    plan = plan_buffers(_yolo(dynamic=True))
    with pytest.raises(UserError, match=message):
        resolve_input_shapes(plan, {"images": shape})


def test_resolve_input_names() -> None:
    plan = plan_buffers(_yolo())
    with pytest.raises(UserError, match=r"missing \['images'\], unexpected \['image'\]"):
        resolve_input_shapes(plan, {"image": (1, 3, 640, 640)})


# ---- version gates -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8.5.2.2", tv.TrtVersion(8, 5, 2, 2)),
        ("8.6.1", tv.TrtVersion(8, 6, 1)),
        ("10.3.0", tv.TrtVersion(10, 3, 0)),
        ("11.0.0", tv.TrtVersion(11, 0, 0)),
        ("10.3", tv.TrtVersion(10, 3)),
        ("8.6.1.post1", tv.TrtVersion(8, 6, 1)),
        ("10.3.0.30+cuda12", tv.TrtVersion(10, 3, 0, 30)),
        ("v10.1.0", tv.TrtVersion(10, 1, 0)),
    ],
)
def test_parse_trt_version(text: str, expected: tv.TrtVersion) -> None:
    assert tv.parse_trt_version(text) == expected


@pytest.mark.parametrize("bad", ["", "ten", "10", "latest"])
def test_parse_trt_version_rejects(bad: str) -> None:
    with pytest.raises(UserError, match="not a TensorRT version"):
        tv.parse_trt_version(bad)


def test_version_string_and_order() -> None:
    assert str(tv.parse_trt_version("8.5.2.2")) == "8.5.2.2" and str(tv.TrtVersion(10, 3)) == "10.3.0"
    assert tv.parse_trt_version("8.5.2.2") < tv.parse_trt_version("8.6.1") < tv.parse_trt_version("10.3.0")


GATES = ["named_tensor_api", "binding_api", "builder_precision_flags", "int8_calibrator", "strongly_typed_only",
         "strongly_typed_flag", "explicit_batch_flag", "builder_optimization_level", "version_compatible"]


@pytest.mark.parametrize(
    ("version", "row"),
    [   #           named  bind   flags  calib  strong flag   expl   level  vcompat
        ("8.5.2.2", (True, True, True, True, False, False, True, False, False)),
        ("8.6.1", (True, True, True, True, False, False, True, True, True)),
        ("10.3.0", (True, False, True, True, False, True, False, True, True)),
        ("11.0.0", (True, False, False, False, True, True, False, True, True)),
    ],
)  # fmt: skip
def test_capability_table(version: str, row: tuple[bool, ...]) -> None:
    caps = tv.capabilities(version)
    assert caps.supported
    assert {g: getattr(caps, g) for g in GATES} == dict(zip(GATES, row)) and len(GATES) == len(row)
    assert tv.has_builder_precision_flags(version) is row[2]
    assert tv.supports_named_tensor_api(version) is row[0]
    assert tv.strongly_typed_only(version) is row[4]


def test_supported_range() -> None:
    assert not tv.is_supported("8.4.3") and tv.is_supported("8.5.1") and tv.is_supported("11.4.1")
    assert not tv.is_supported("12.0")
    with pytest.raises(UserError, match=r"TensorRT 8.4.3 is not supported: edgevision runs TensorRT 8.5 to 11.x"):
        tv.require_supported("8.4.3")
    assert tv.require_supported("10.3.0") == tv.TrtVersion(10, 3, 0)


# ---- sidecar engine vs this device ---------------------------------------------------------------


def _engine(version: str = "10.3.0", sm: str = "8.7", flags: list[str] | None = None) -> EngineSpec:
    return EngineSpec(
        file="model.jetson-orin-nano-8gb.engine", device_profile="jetson-orin-nano-8gb", tensorrt_version=version,
        gpu_sm=sm, precision="fp16", flags=flags or [],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("sm", "expected"), [("8.7", "8.7"), ("87", "8.7"), ("sm_87", "8.7"), ("SM87", "8.7"), ("120", "12.0"),
                         ((8, 6), "8.6"), ("10.0", "10.0"), (" 7.2 ", "7.2")],
)  # fmt: skip
def test_normalize_sm(sm: str | tuple[int, int], expected: str) -> None:
    assert normalize_sm(sm) == expected


@pytest.mark.parametrize("bad", ["", "8", "ampere", "8.x"])
def test_normalize_sm_rejects(bad: str) -> None:
    with pytest.raises(UserError, match="compute capability"):
        normalize_sm(bad)


def test_matching_engine_passes() -> None:
    check_engine_compat(_engine(), "10.3.0", (8, 7))
    check_engine_compat(_engine(), "10.3.0.30", "87")  # the build number is compared only when both record one
    check_engine_compat(_engine("10.3.0.30"), "10.3.0.30", "8.7")


@pytest.mark.parametrize("found", ["10.3.1.5", "10.3.0.26", "10.4.0"])
def test_another_release_is_refused(found: str) -> None:
    """TensorRT deserializes a plain plan only on the release that built it (patch and build included)."""
    with pytest.raises(UserError, match=f"TensorRT 10.3.0.30 expected, {found} found"):
        check_engine_compat(_engine("10.3.0.30"), found, "8.7")


def test_tensorrt_mismatch_names_found_expected_and_rebuild() -> None:
    with pytest.raises(UserError) as err:
        check_engine_compat(_engine("10.3.0"), "8.6.1", "8.7", bundle="runs/bundle")
    msg = str(err.value)
    assert "model.jetson-orin-nano-8gb.engine" in msg
    assert "TensorRT 10.3.0 expected, 8.6.1 found" in msg
    # same GPU: the engine's own profile is the one to rebuild for
    assert msg.endswith("rebuild it on this device: edgevision engine runs/bundle --device jetson-orin-nano-8gb")


def test_sm_mismatch_names_found_expected_and_rebuild() -> None:
    with pytest.raises(UserError) as err:
        check_engine_compat(_engine(), "10.3.0", (8, 6), bundle="/data/b")
    msg = str(err.value)
    assert "GPU SM 8.7 expected, SM 8.6 found" in msg and "TensorRT" in msg
    assert "edgevision engine /data/b --device PROFILE" in msg and "edgevision doctor" in msg
    with pytest.raises(UserError, match=r"edgevision engine /data/b --device desktop-rtx$"):
        check_engine_compat(_engine(), "10.3.0", (8, 6), bundle="/data/b", this_profile="desktop-rtx")


def test_both_mismatches_reported_together() -> None:
    with pytest.raises(UserError, match=r"TensorRT 8.5.2.2 expected, 10.3.0 found; GPU SM 7.2 expected, SM 8.9 found"):
        check_engine_compat(_engine("8.5.2.2", "7.2"), "10.3.0", "8.9")


def test_version_compatible_plans_run_on_newer_tensorrt() -> None:
    vc = _engine("8.6.1", flags=[FLAG_VERSION_COMPATIBLE])
    check_engine_compat(vc, "10.3.0", "8.7")
    check_engine_compat(vc, "8.6.2", "8.7")
    with pytest.raises(UserError, match=r"TensorRT 8\.6\.1 expected, 8\.5\.2 found"):
        check_engine_compat(vc, "8.5.2", "8.7")
    with pytest.raises(UserError):  # 8.5 could not build version-compatible plans: exact match needed
        check_engine_compat(_engine("8.5.2", flags=[FLAG_VERSION_COMPATIBLE]), "8.6.1", "8.7")
    with pytest.raises(UserError):  # 8 -> 11 is no supported pair (the 11.4 support matrix)
        check_engine_compat(vc, "11.1.0", "8.7")
    check_engine_compat(_engine("10.3.0", flags=[FLAG_VERSION_COMPATIBLE]), "11.1.0", "8.7")  # 10 -> 11 is


def test_hardware_compatible_plans_run_on_ampere_and_newer() -> None:
    hc = _engine("10.3.0", "8.6", flags=[FLAG_HARDWARE_COMPATIBLE])
    check_engine_compat(hc, "10.3.0", "8.9")
    check_engine_compat(hc, "10.3.0", "9.0")
    with pytest.raises(UserError, match=r"GPU SM 8\.6 expected, SM 7\.5 found"):
        check_engine_compat(hc, "10.3.0", "7.5")
    with pytest.raises(UserError, match=r"GPU SM 8\.6 expected, SM 8\.7 found"):  # JetPack: no hardware compat
        check_engine_compat(hc, "10.3.0", "8.7")


def test_rebuild_command() -> None:
    assert rebuild_command("runs/b", "jetson-nano") == "edgevision engine runs/b --device jetson-nano"
    hostile = "runs/a b;$(rm -rf ~)"
    assert shlex.split(rebuild_command(hostile, "jetson-nano")) == ["edgevision", "engine", hostile, "--device",
                                                                    "jetson-nano"]


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_missing_tensorrt_is_a_clear_error(tmp_path: Path) -> None:
    plan = tmp_path / "model.engine"
    plan.write_bytes(b"not a plan")
    with pytest.raises(MissingDependencyError, match=r"python3-libnvinfer.*--system-site-packages"):
        open_backend(plan)  # .engine -> tensorrt (JetPack's module, not a pip extra)
    with pytest.raises(MissingDependencyError, match="tensorrt is not installed"):
        open_backend(plan, kind="tensorrt", sidecar_engine=_engine())
