"""Environment report behind ``edgevision doctor``: what is installed and what hardware this is.

``collect()`` returns one entry per component, each ``{"name", "version", "ok", "detail", "extra"}``
(``version`` may be None; ``extra`` holds machine-readable facts such as the ONNX Runtime providers).
Importing this module imports only the standard library; optional packages (onnxruntime, cv2,
tensorrt, pycuda, torch) are imported inside ``collect()`` and only when installed, so importing it never
loads torch or initialises CUDA. ``format_report()`` renders a plain-text table (no rich: it is not a
runtime dependency). ``profile_query()`` turns a report into the arguments of the toolkit's
``match_profile`` (the runtime never imports the toolkit).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

Entry = Dict[str, Any]  # typing.Dict: a runtime alias on Python 3.8

NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")
DT_MODEL = Path("/proc/device-tree/model")
DT_COMPATIBLE = Path("/proc/device-tree/compatible")
MEMINFO = Path("/proc/meminfo")
SMI_TIMEOUT_S = 5.0

# Tegra SoC -> GPU compute capability (https://developer.nvidia.com/cuda-gpus and .../cuda-legacy-gpus):
# T210 = Jetson Nano/TX1 (5.3), T186 = TX2 (6.2), T194 = Xavier (7.2), T234 = Orin (8.7).
TEGRA_SM = {"tegra210": "5.3", "tegra186": "6.2", "tegra194": "7.2", "tegra234": "8.7"}


def _entry(name: str, version: str | None, ok: bool, detail: str, **extra: Any) -> Entry:
    return {"name": name, "version": version, "ok": ok, "detail": detail, "extra": extra}


def _present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _dist_version(*dists: str) -> tuple[str, str] | None:
    """(distribution, version) of the first installed distribution among ``dists``."""
    for dist in dists:
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return None


def _missing(name: str, hint: str) -> Entry:
    return _entry(name, None, False, f"not installed ({hint})")


def _python() -> Entry:
    ok = sys.version_info >= (3, 8)  # the runtime: 3.8 is JetPack 5's Python; the toolkit needs 3.10
    detail = sys.executable + ("" if sys.version_info >= (3, 10) else
                               " (runtime only: the toolkit needs >= 3.10)" if ok else " (needs >= 3.8)")
    return _entry("python", platform.python_version(), ok, detail)


def _platform() -> Entry:
    system, machine = platform.system(), platform.machine()
    version = f"{system} {machine}"
    return _entry("platform", version, True, platform.platform(), system=system, machine=machine)


def _jetson() -> Entry:
    release = _read(NV_TEGRA_RELEASE)
    model = (_read(DT_MODEL) or "").strip("\x00\n ") or None
    compatible = [c for c in (_read(DT_COMPATIBLE) or "").split("\x00") if c]
    is_jetson = release is not None or bool(model and "jetson" in model.lower())
    l4t = None
    if release:
        m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", release)
        l4t = f"{m.group(1)}.{m.group(2)}" if m else None
    chip = next((c.split(",")[-1] for c in compatible if c.split(",")[-1] in TEGRA_SM), None)
    detail = (model or "NVIDIA Jetson") if is_jetson else "not a Jetson"
    if l4t:
        detail += f", L4T {l4t}"
    return _entry("jetson", l4t, True, detail, is_jetson=is_jetson, model=model, l4t=l4t, chip=chip)


def _memory(is_jetson: bool) -> Entry:
    text = _read(MEMINFO) or ""
    m = re.search(r"^MemTotal:\s+(\d+)\s+kB", text, re.MULTILINE)
    if not m:
        return _entry("memory", None, True, "unknown (no /proc/meminfo)", total_gb=None)
    gib = int(m.group(1)) / 2**20
    shared = " (shared by CPU and GPU)" if is_jetson else ""
    return _entry("memory", None, True, f"{gib:.1f} GiB RAM{shared}", total_gb=round(gib, 2))


def _numpy() -> Entry:
    found = _dist_version("numpy")
    return _entry("numpy", found[1], True, "") if found else _missing("numpy", "pip install numpy")


def _onnxruntime() -> Entry:
    if not _present("onnxruntime"):
        hint = "pip install 'edgevision[runtime]'; on Jetson: NVIDIA's onnxruntime-gpu wheel"
        return _missing("onnxruntime", hint)
    try:
        import onnxruntime as ort

        providers = list(ort.get_available_providers())
    except Exception as exc:
        return _entry("onnxruntime", None, False, f"import failed: {exc}", providers=[])
    dist = _dist_version("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml")
    detail = "providers: " + ", ".join(providers) + (f" ({dist[0]})" if dist else "")
    return _entry("onnxruntime", str(ort.__version__), True, detail, providers=providers)


def parse_gstreamer(build_info: str) -> tuple[bool, str]:
    """(has GStreamer, the build line's value) from ``cv2.getBuildInformation()``."""
    m = re.search(r"^\s*GStreamer:\s*(.+?)\s*$", build_info, re.MULTILINE)
    value = m.group(1) if m else "NO"
    return value.upper().startswith("YES"), value


def _opencv(is_jetson: bool) -> Entry:
    if not _present("cv2"):
        hint = "apt install python3-opencv (system build has GStreamer)" if is_jetson else (
            "pip install 'edgevision[runtime]'")
        return _missing("opencv", hint)
    try:
        import cv2

        gst, value = parse_gstreamer(cv2.getBuildInformation())
    except Exception as exc:
        return _entry("opencv", None, False, f"import failed: {exc}", gstreamer=False)
    detail = f"GStreamer: {value}"
    if is_jetson and not gst:
        detail += " — CSI/GStreamer cameras need the system OpenCV, not a pip wheel"
    return _entry("opencv", str(cv2.__version__), True, detail, gstreamer=gst)


def _tensorrt() -> Entry:
    if not _present("tensorrt"):
        return _missing("tensorrt", "on Jetson it comes with JetPack (python3-libnvinfer; make the venv with "
                        "--system-site-packages); elsewhere pip install tensorrt")
    dist = _dist_version("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11")
    try:
        import tensorrt

        version = str(getattr(tensorrt, "__version__", "") or (dist[1] if dist else "")) or None
    except Exception as exc:
        return _entry("tensorrt", dist[1] if dist else None, False, f"import failed: {exc}")
    return _entry("tensorrt", version, True, "")


def _pycuda() -> Entry:
    if not _present("pycuda"):
        return _missing("pycuda", "pip install 'edgevision[tensorrt]'")
    dist = _dist_version("pycuda")
    try:
        import pycuda.driver as drv  # loads libcuda; does not call cuInit or create a context

        detail = "built for CUDA " + ".".join(str(p) for p in drv.get_version())
    except Exception as exc:
        return _entry("pycuda", dist[1] if dist else None, False, f"import failed: {exc}")
    return _entry("pycuda", dist[1] if dist else None, True, detail)


def _torch() -> Entry:
    if not _present("torch"):
        return _missing("torch", "only the toolkit needs it: pip install 'edgevision[toolkit]'")
    try:
        import torch

        cuda = bool(torch.cuda.is_available())
        cap = ".".join(str(p) for p in torch.cuda.get_device_capability(0)) if cuda else None
    except Exception as exc:
        return _entry("torch", None, False, f"import failed: {exc}", cuda=False, capability=None)
    detail = f"CUDA available (capability {cap})" if cuda else "CUDA not available"
    return _entry("torch", str(torch.__version__), True, detail, cuda=cuda, capability=cap)


def query_nvidia_smi(timeout: float = SMI_TIMEOUT_S) -> list[dict[str, str]]:
    """One dict per GPU (name, driver, memory_mib, compute_cap) from nvidia-smi; [] when unavailable."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    fields = ["name", "driver_version", "memory.total", "compute_cap"]
    for wanted in (fields, fields[:3]):  # old drivers lack compute_cap
        try:
            proc = subprocess.run(
                [smi, f"--query-gpu={','.join(wanted)}", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=timeout, check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return []
        if proc.returncode == 0:
            keys = ["name", "driver", "memory_mib", "compute_cap"][: len(wanted)]
            rows = [[c.strip() for c in line.split(",")] for line in proc.stdout.splitlines() if line.strip()]
            return [dict(zip(keys, row)) for row in rows if len(row) == len(keys)]
    return []


def _nvidia_smi(gpus: list[dict[str, str]]) -> Entry:
    if not gpus:
        return _entry("nvidia-smi", None, False, "no nvidia-smi or no GPU reported", gpus=[])
    first = gpus[0]
    more = f" (+{len(gpus) - 1} more)" if len(gpus) > 1 else ""
    detail = f"{first.get('name')}, {first.get('memory_mib', '?')} MiB{more}"
    return _entry("nvidia-smi", first.get("driver"), True, detail, gpus=gpus)


def _capability(gpus: list[dict[str, str]], jetson: Entry, torch_entry: Entry) -> Entry:
    smi_cap = gpus[0].get("compute_cap") if gpus else None
    sources = [
        (smi_cap if smi_cap and re.match(r"^\d+\.\d$", smi_cap) else None, "nvidia-smi"),
        (TEGRA_SM.get(jetson["extra"].get("chip") or ""), f"Tegra SoC {jetson['extra'].get('chip')}"),
        (torch_entry["extra"].get("capability"), "torch"),
    ]
    for sm, source in sources:
        if sm:
            return _entry("cuda-capability", sm, True, f"SM {sm} (from {source})")
    return _entry("cuda-capability", None, False, "no CUDA GPU found")


def collect(*, check_torch: bool = True) -> dict[str, Entry]:
    """Everything ``doctor`` reports, keyed by component. ``check_torch=False`` skips importing torch."""
    jetson = _jetson()
    is_jetson = bool(jetson["extra"]["is_jetson"])
    gpus = query_nvidia_smi()
    torch_entry = _torch() if check_torch else _entry("torch", None, False, "not checked", capability=None)
    info = {
        "python": _python(),
        "platform": _platform(),
        "jetson": jetson,
        "memory": _memory(is_jetson),
        "numpy": _numpy(),
        "onnxruntime": _onnxruntime(),
        "opencv": _opencv(is_jetson),
        "tensorrt": _tensorrt(),
        "pycuda": _pycuda(),
        "torch": torch_entry,
        "nvidia-smi": _nvidia_smi(gpus),
    }
    info["cuda-capability"] = _capability(gpus, jetson, torch_entry)
    return info


def profile_query(info: dict[str, Entry]) -> dict[str, Any]:
    """Keyword arguments for ``edgevision.toolkit.devices.match_profile`` from a ``collect()`` report."""
    is_jetson = bool(info["jetson"]["extra"].get("is_jetson"))
    trt = info["tensorrt"]
    return {
        "sm": info["cuda-capability"]["version"],
        "tensorrt_version": trt["version"] if trt["ok"] else None,
        "is_jetson": is_jetson,
        "total_memory_gb": info["memory"]["extra"].get("total_gb") if is_jetson else None,
    }


def format_report(info: dict[str, Entry]) -> str:
    """A plain-text table: component, version, ok, detail."""
    rows = [("component", "version", "ok", "detail")]
    rows += [(e["name"], e["version"] or "-", "yes" if e["ok"] else "no", e["detail"]) for e in info.values()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3] for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 6)
    return "\n".join(line.rstrip() for line in lines)
