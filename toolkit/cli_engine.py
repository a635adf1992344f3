"""`edgevision engine BUNDLE --device PROFILE`: plan a TensorRT engine; build it on the device.

Planning (``engine_plan``) runs anywhere and turns impossible requests into one-line errors. On the
target device (detected SM and TensorRT match the profile) the engine is built and added to the
bundle's sidecar; elsewhere the command prints the exact line to run on the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgevision.runtime.backends.trt_plan import normalize_sm
from edgevision.runtime.backends.trt_version import MIN_SUPPORTED, parse_trt_version

if TYPE_CHECKING:
    from .devices import DeviceProfile

_PATH = click.Path(path_type=Path)
_KIND = {"int8": "qdq-int8", "fp16": "fp16", "fp32": "fp32"}


def _planning_version(profile: DeviceProfile, detected_sm: str | None, detected_trt: str | None,
                      given: str | None) -> str:
    """--tensorrt, else the TensorRT on this machine when it is the target, else the profile's oldest."""
    if given:
        return given
    if detected_trt and detected_sm and normalize_sm(detected_sm) in profile.sms:
        return detected_trt
    if profile.tensorrt is None:
        return str(MIN_SUPPORTED)
    return str(max(parse_trt_version(profile.tensorrt.min), MIN_SUPPORTED))


@click.command()
@click.argument("bundle", type=_PATH)
@click.option("--device", "device", required=True, help="Device profile (see `edgevision devices`).")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default=None,
              help="Engine precision (default: from the bundle's ONNX and the profile).")
@click.option("--dla/--no-dla", default=False, show_default=True, help="Run on DLA core 0 with GPU fallback.")
@click.option("--sparse/--no-sparse", default=None,
              help="Let TensorRT use 2:4 sparse tensor cores (default: on when the bundle records 2:4 sparsity).")
@click.option("--workspace-mb", type=click.IntRange(16), default=None, help="Builder workspace (default: profile).")
@click.option("--opt-level", type=click.IntRange(0, 5), default=None, help="Builder optimization level 0-5.")
@click.option("--tensorrt", "tensorrt_version", default=None,
              help="Plan for this TensorRT version (default: the one on the device).")
@click.option("--version-compatible", is_flag=True, help="Plan runs on this or a newer TensorRT (8.6+).")
@click.option("--hardware-compatible", is_flag=True, help="Plan runs on any Ampere+ discrete GPU (not Jetson).")
@click.option("--timing-cache", type=_PATH, default=None,
              help="Persistent timing cache file (default: BUNDLE/../.trt-timing-<profile>.cache).")
def engine(bundle: Path, device: str, precision: str | None, dla: bool, sparse: bool | None, workspace_mb: int | None,
           opt_level: int | None, tensorrt_version: str | None, version_compatible: bool, hardware_compatible: bool,
           timing_cache: Path | None) -> None:
    """Build a TensorRT engine of BUNDLE for device profile PROFILE, on that device.

    Elsewhere it checks the request and prints the exact command to run on the device.
    """
    from edgevision.runtime.bundle import load_bundle
    from edgevision.runtime.bundle_check import verify_model_file

    from .devices import load_profile
    from .engine_build import detect_environment, engine_stage
    from .engine_plan import plan_engine

    profile = load_profile(device)
    b = load_bundle(bundle)
    verify_model_file(b)  # on any machine: an empty, truncated or mismatched model.onnx is an error here
    env = detect_environment()
    side = b.sidecar
    if sparse is None:
        sparse = bool(side.extra.get("sparsity"))
    plan = plan_engine(
        profile, _planning_version(profile, env.sm, env.tensorrt_version, tensorrt_version),
        precision=precision, onnx_kind=_KIND[side.precision], dla=dla, sparse_model=sparse, dynamic_batch=None,
        input_shape=side.input.shape, input_name=side.input.name, workspace_mb=workspace_mb, opt_level=opt_level,
        version_compatible=version_compatible, hardware_compatible=hardware_compatible,
    )
    for note in plan.notes:
        click.echo(f"note: {note}", err=True)
    cache = timing_cache or b.root.parent / f".trt-timing-{profile.name}.cache"
    outcome = engine_stage(b, plan, env, timing_cache=cache, sparse=sparse)
    if outcome.spec is not None:
        click.echo(f"built {b.root / outcome.spec.file} (TensorRT {outcome.spec.tensorrt_version}, "
                   f"SM {outcome.spec.gpu_sm}, {outcome.spec.precision})")
        if outcome.dla_layers is not None:
            on_dla, total = outcome.dla_layers
            click.echo(f"DLA core {outcome.spec.dla_core}: {on_dla} of {total} engine layers run on the DLA "
                       f"({total - on_dla} on the GPU)", err=on_dla == 0)
        return
    click.echo(f"not building here ({'; '.join(outcome.reasons)}); "
               f"copy the bundle to a {profile.name} device and run:", err=True)
    click.echo(outcome.command)
