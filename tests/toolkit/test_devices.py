"""Device profiles: the shipped YAML validates, encodes the hardware facts, and bad files fail clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgevision.runtime.errors import UserError
from edgevision.toolkit.devices import (
    DeviceProfile,
    VersionRange,
    list_profiles,
    load_profile,
    match_profile,
    profile_names,
    profile_supports,
)

REQUIRED = {
    "jetson-nano",
    "jetson-xavier-nx",
    "jetson-agx-xavier",
    "jetson-orin-nano-8gb",
    "jetson-orin-nx-16gb",
    "jetson-agx-orin-64gb",
    "desktop-rtx",
    "x86-cpu",
}


def _nano_dict() -> dict[str, Any]:
    return {
        "name": "my-board",
        "description": "test board",
        "kind": "jetson",
        "gpu_sm": "5.3",
        "memory_gb": 4,
        "supports": {"fp16": True, "int8": False},
        "jetpack": {"min": "4.6.1", "max": "4.6"},
        "tensorrt": {"min": "8.2", "max": "8.2"},
        "backend": "tensorrt",
        "default_precision": "fp16",
    }


def _write(tmp_path: Path, data: dict[str, Any], stem: str = "my-board") -> Path:
    path = tmp_path / f"{stem}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_every_shipped_profile_validates() -> None:
    profiles = list_profiles()
    names = [p.name for p in profiles]
    assert set(names) >= REQUIRED
    assert names == sorted(names) == profile_names()
    for p in profiles:
        assert profile_supports(p, p.default_precision)
        assert load_profile(p.name) == p


def test_jetson_nano_facts() -> None:
    nano = load_profile("jetson-nano")
    assert nano.kind == "jetson" and nano.sms == ["5.3"]
    assert not profile_supports(nano, "int8") and profile_supports(nano, "fp16")
    assert nano.default_precision == "fp16" and nano.dla_cores == 0 and not nano.supports.sparsity
    assert nano.tensorrt is not None and nano.tensorrt.contains("8.2.1.8")
    for newer in ("8.5.2", "10.3.0"):
        assert not nano.tensorrt.contains(newer)
    assert nano.jetpack is not None and nano.jetpack.contains("4.6.4") and not nano.jetpack.contains("5.1")


@pytest.mark.parametrize(
    ("name", "sm", "dla"),
    [
        ("jetson-xavier-nx", "7.2", 2),
        ("jetson-agx-xavier", "7.2", 2),
        ("jetson-orin-nano-8gb", "8.7", 0),
        ("jetson-orin-nx-16gb", "8.7", 2),
        ("jetson-agx-orin-64gb", "8.7", 2),
    ],
)
def test_jetson_sm_and_dla(name: str, sm: str, dla: int) -> None:
    p = load_profile(name)
    assert p.sms == [sm] and p.dla_cores == dla
    assert profile_supports(p, "int8") and p.default_precision == "int8"
    assert p.supports.sparsity == (sm == "8.7")  # 2:4 sparse tensor cores: Ampere+ only
    assert p.tensorrt is not None and p.tensorrt.contains("8.5.2")
    assert p.tensorrt.contains("10.3.0") == (sm == "8.7")  # Xavier stops at JetPack 5.1 / TensorRT 8.5


def test_desktop_and_cpu_facts() -> None:
    desk = load_profile("desktop-rtx")
    assert desk.kind == "desktop" and set(desk.sms) == {"8.6", "8.9"}
    assert profile_supports(desk, "int8") and profile_supports(desk, "fp16") and desk.supports.sparsity
    assert desk.backend == "tensorrt" and desk.jetpack is None
    cpu = load_profile("x86-cpu")
    assert cpu.kind == "cpu" and cpu.sms == [] and cpu.backend == "onnxruntime"
    assert cpu.default_precision == "fp32" and cpu.tensorrt is None and cpu.dla_cores == 0


def test_profile_supports_rejects_unknown_precision() -> None:
    with pytest.raises(UserError, match="fp32, fp16, int8"):
        profile_supports(load_profile("x86-cpu"), "int4")
    assert profile_supports(load_profile("x86-cpu"), "FP32")


def test_unknown_name_lists_known_profiles() -> None:
    with pytest.raises(UserError) as err:
        load_profile("jetson-tx2")
    msg = str(err.value)
    assert "jetson-tx2" in msg and all(name in msg for name in REQUIRED)


def test_user_directory(tmp_path: Path) -> None:
    _write(tmp_path, _nano_dict())
    assert [p.name for p in list_profiles(tmp_path)] == ["my-board"]
    assert load_profile("my-board", tmp_path).sms == ["5.3"]
    with pytest.raises(UserError, match="my-board"):
        load_profile("jetson-nano", tmp_path)
    with pytest.raises(UserError, match="not found"):
        list_profiles(tmp_path / "absent")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"gpu_ram": 4}, "gpu_ram: unknown key"),
        ({"gpu_sm": "sm_53"}, "gpu_sm: "),
        ({"gpu_sm": 8.7}, "quote"),
        ({"dla_cores": -1}, "dla_cores: "),
        ({"supports": {"fp16": True, "int8": True}}, "supports.int8: SM 5.3"),
        ({"supports": {"fp16": True, "int8": False, "sparsity": True}}, "supports.sparsity"),
        ({"tensorrt": {"min": "8.2", "max": "10"}}, "TensorRT 10+"),
        ({"tensorrt": {"min": "8.5", "max": "8.2"}}, "tensorrt: "),
        ({"default_precision": "int8"}, "default_precision"),
        ({"jetpack": None}, "jetpack"),
        ({"name": "other-board"}, "must match the file name"),
    ],
)
def test_invalid_profile_names_file_and_key(tmp_path: Path, change: dict[str, Any], needle: str) -> None:
    path = _write(tmp_path, {**_nano_dict(), **change})
    with pytest.raises(UserError) as err:
        load_profile("my-board", tmp_path)
    msg = str(err.value)
    assert str(path) in msg and needle in msg and "\n" not in msg


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nsupports: {fp16: true\n")
    with pytest.raises(UserError, match=r"broken\.yaml: line \d+: malformed YAML"):
        list_profiles(tmp_path)


def test_cross_kind_rules() -> None:
    base = {**_nano_dict(), "kind": "cpu", "gpu_sm": None, "jetpack": None, "tensorrt": None}
    with pytest.raises(ValueError, match="onnxruntime"):
        DeviceProfile.model_validate(base)
    desk = {**_nano_dict(), "kind": "desktop", "gpu_sm": ["8.6"], "jetpack": None, "dla_cores": 2}
    with pytest.raises(ValueError, match="dla_cores"):
        DeviceProfile.model_validate(desk)


def test_version_range_semantics() -> None:
    r = VersionRange(min="8.5", max="10")
    assert r.contains("8.5") and r.contains("8.5.2.2") and r.contains("10.16.2")
    assert not r.contains("8.4.1") and not r.contains("11.0")
    assert VersionRange(min="5.1.1", max="7.2").contains("7.2.2")
    assert VersionRange(min="8.5").contains("99")
    with pytest.raises(ValueError):
        VersionRange(min="8.5", max="8.4")


def test_match_profile() -> None:
    names = lambda ps: [p.name for p in ps]  # noqa: E731
    assert names(match_profile("8.7", "10.3.0.30", True, 7.4)) == ["jetson-orin-nano-8gb"]
    assert names(match_profile("8.7", "10.3.0", True, 15.3)) == ["jetson-orin-nx-16gb"]
    assert names(match_profile("8.7", "11.4.1", True, None)) == ["jetson-agx-orin-64gb"]
    assert len(match_profile("8.7", None, True, None)) == 3
    assert names(match_profile("5.3", "8.2.1.8", True, 3.9)) == ["jetson-nano"]
    assert names(match_profile("7.2", "8.5.2.2", True, 7.6)) == ["jetson-xavier-nx"]
    assert names(match_profile("8.9", "10.16.0+cuda13", False, 23.5)) == ["desktop-rtx"]
    assert match_profile("9.0", None, False, None) == []  # datacenter Hopper: no shipped profile
    assert names(match_profile(None, None, False, None)) == ["x86-cpu"]


def test_import_stays_lean() -> None:
    code = "import sys, edgevision.toolkit.devices; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
