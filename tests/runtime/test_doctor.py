"""`doctor`: lean import, the shape of the report, Jetson / nvidia-smi / torch detection without hardware."""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from edgevision.runtime import doctor

KEYS = {
    "python", "platform", "jetson", "memory", "numpy", "onnxruntime", "opencv",
    "tensorrt", "pycuda", "torch", "nvidia-smi", "cuda-capability",
}
HEAVY = ("torch", "cv2", "onnxruntime", "tensorrt", "pycuda")


def test_import_does_not_load_heavy_modules() -> None:
    code = f"import sys, edgevision.runtime.doctor; bad = [m for m in {HEAVY!r} if m in sys.modules]; " \
        "assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_collect_with_torch_hidden_runs_in_subprocess() -> None:
    code = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None  # torch "not installed": any import of it would fail
        from edgevision.runtime.doctor import collect, format_report
        info = collect()
        assert info["torch"]["ok"] is False and "not installed" in info["torch"]["detail"]
        assert sys.modules["torch"] is None
        print(format_report(info))
    """)
    cmd = [sys.executable, "-c", code]
    out = subprocess.run(cmd, check=True, timeout=120, capture_output=True, text=True)
    assert "component" in out.stdout and "torch" in out.stdout


def test_collect_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    info = doctor.collect()
    assert set(info) == KEYS
    for entry in info.values():
        assert {"name", "version", "ok", "detail"} <= set(entry)
        assert isinstance(entry["ok"], bool) and isinstance(entry["detail"], str)
        assert entry["version"] is None or isinstance(entry["version"], str)
    assert info["python"]["ok"] and info["numpy"]["ok"]
    table = doctor.format_report(info).splitlines()
    assert table[0].split() == ["component", "version", "ok", "detail"] and len(table) == len(KEYS) + 2
    assert "is_jetson" in str(info["jetson"]["extra"])
    query = doctor.profile_query(info)
    assert set(query) == {"sm", "tensorrt_version", "is_jetson", "total_memory_gb"}


def test_jetson_detection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n")
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\x00")
    compatible = tmp_path / "compatible"
    compatible.write_bytes(b"nvidia,p3768-0000+p3767-0005-super\x00nvidia,p3767-0005\x00nvidia,tegra234\x00")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:        7802172 kB\nMemFree:  100 kB\n")
    for attr, path in [("NV_TEGRA_RELEASE", release), ("DT_MODEL", model),
                       ("DT_COMPATIBLE", compatible), ("MEMINFO", meminfo)]:
        monkeypatch.setattr(doctor, attr, path)
    monkeypatch.setattr(doctor.shutil, "which", lambda _name: None)  # no nvidia-smi
    info = doctor.collect(check_torch=False)
    assert info["jetson"]["extra"]["is_jetson"] and info["jetson"]["version"] == "36.4.3"
    assert info["cuda-capability"]["version"] == "8.7" and "tegra234" in info["cuda-capability"]["detail"]
    query = doctor.profile_query(info)
    assert query["is_jetson"] and query["sm"] == "8.7" and 7.0 < query["total_memory_gb"] < 7.5

    from edgevision.toolkit.devices import match_profile

    matches = match_profile(**{**query, "tensorrt_version": "10.3.0"})
    assert [p.name for p in matches] == ["jetson-orin-nano-8gb"]


@pytest.mark.skipif(os.name != "posix", reason="fake nvidia-smi is a shell script")
def test_nvidia_smi_parsing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA GeForce RTX 3090, 550.54.14, 24576, 8.6'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    gpus = doctor.query_nvidia_smi()
    assert gpus == [{"name": "NVIDIA GeForce RTX 3090", "driver": "550.54.14", "memory_mib": "24576",
                     "compute_cap": "8.6"}]
    monkeypatch.setattr(doctor, "DT_COMPATIBLE", tmp_path / "absent")
    info = doctor.collect(check_torch=False)
    assert info["nvidia-smi"]["ok"] and info["nvidia-smi"]["version"] == "550.54.14"
    assert info["cuda-capability"]["version"] == "8.6"


def test_torch_branch_with_fake_module(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("torch")
    fake.__spec__ = importlib.machinery.ModuleSpec("torch", None)
    fake.__version__ = "9.9.9"  # type: ignore[attr-defined]
    fake.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
        is_available=lambda: True, get_device_capability=lambda _i=0: (8, 9)
    )
    monkeypatch.setitem(sys.modules, "torch", fake)
    monkeypatch.setattr(doctor.shutil, "which", lambda _name: None)
    monkeypatch.setattr(doctor, "DT_COMPATIBLE", Path("/nonexistent/compatible"))
    info = doctor.collect()
    assert info["torch"]["version"] == "9.9.9" and info["torch"]["extra"]["cuda"] is True
    assert info["cuda-capability"]["version"] == "8.9" and "torch" in info["cuda-capability"]["detail"]


def test_parse_gstreamer() -> None:
    info = "  Video I/O:\n    FFMPEG:         YES\n    GStreamer:                   YES (1.16.3)\n"
    assert doctor.parse_gstreamer(info) == (True, "YES (1.16.3)")
    assert doctor.parse_gstreamer("    GStreamer:                   NO\n") == (False, "NO")
    assert doctor.parse_gstreamer("") == (False, "NO")
