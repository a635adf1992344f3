"""Which model file and backend a bundle runs with here: its ONNX on ONNX Runtime, or one of its TensorRT plans.

A bundle's sidecar lists the engines built for it (``engines``: file, TensorRT version, GPU SM, device profile,
flags). A plan deserializes only on the GPU architecture and the exact TensorRT release it was built with
(``trt_plan.check_engine_compat`` decides; version-compatible plans relax the release), so the runtime picks the
engine that matches this machine instead of handing TensorRT a file it cannot read:

- ``tensorrt``: the matching engine, else a one-line ``UserError`` naming what was found and expected and the
  ``edgevision engine ...`` command that rebuilds it on this device;
- ``auto``: a matching engine when TensorRT, pycuda and a GPU are present, else the ONNX model on ONNX Runtime
  (logging why a listed engine was passed over);
- ``onnxruntime``: the ONNX model.

A plain plan file can be run too (``model_plan.load_model`` reads the sidecar beside it and pins that engine).
Among several matching engines: a plan built for this very release before a version-compatible one, the GPU
before a DLA core, then the sidecar's order. Probing TensorRT happens only when the bundle lists engines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bundle import Bundle, EngineSpec
from ..errors import InternalError, MissingDependencyError, UserError
from .base import Backend
from .trt_plan import FLAG_VERSION_COMPATIBLE, check_engine_compat, normalize_sm, rebuild_command

__all__ = ["BackendChoice", "choose_backend", "pick_engine"]

log = logging.getLogger("edgevision.backends")
_ORT_ONLY_OPTS = ("intra_op_threads", "providers", "spin", "cpu_int8_rewrites")


@dataclass(frozen=True)
class BackendChoice:
    """The backend kind ("onnxruntime" | "tensorrt"), the file it opens and, for TensorRT, the sidecar entry."""

    kind: str
    path: Path
    engine: EngineSpec | None = None
    bundle_dir: Path | None = None

    def open(self, **opts: Any) -> Backend:
        """Open the backend (in the thread that will run it: TensorRT makes its CUDA context there)."""
        from . import open_backend

        if self.kind != "tensorrt":
            return open_backend(self.path, "onnxruntime", **opts)
        opts = {k: v for k, v in opts.items() if k not in _ORT_ONLY_OPTS}
        return open_backend(self.path, "tensorrt", sidecar_engine=self.engine, bundle_dir=self.bundle_dir, **opts)


def _probe() -> tuple[str, str]:
    from .tensorrt import probe

    return probe()


def pick_engine(bundle: Bundle, tensorrt_version: str, gpu_sm: str) -> EngineSpec:
    """The bundle's engine for this TensorRT and SM (module docstring's order), else a ``UserError`` whose
    one line says why the nearest engine cannot run and how to rebuild it here."""
    engines: list[EngineSpec] = list(bundle.sidecar.engines)
    root = bundle.root
    if not engines:
        raise UserError(
            f"{root}: the bundle has no TensorRT engine; build one on this device: "
            f"{rebuild_command(root, 'PROFILE')} (`edgevision doctor` names the profile that matches this device)"
        )
    fits: list[EngineSpec] = []
    for e in engines:
        try:
            check_engine_compat(e, tensorrt_version, gpu_sm, bundle=root)
        except UserError:
            continue
        fits.append(e)
    if fits:
        return min(fits, key=lambda e: (FLAG_VERSION_COMPATIBLE in e.flags, e.dla_core is not None))
    here = normalize_sm(gpu_sm)
    nearest = next((e for e in engines if _sm(e) == here), engines[0])
    others = f" (nor {len(engines) - 1} other engine(s))" if len(engines) > 1 else ""
    try:
        check_engine_compat(nearest, tensorrt_version, gpu_sm, bundle=root)
    except UserError as exc:
        raise UserError(f"{root}: no TensorRT engine of this bundle runs here{others}: {exc}") from None
    raise InternalError(f"{root}: engine {nearest.file} was refused, then accepted")  # pragma: no cover


def _sm(e: EngineSpec) -> str:
    try:
        return normalize_sm(e.gpu_sm)
    except UserError:
        return e.gpu_sm


def _pinned(bundle: Bundle) -> EngineSpec | None:
    name = bundle.engine_file
    if name is None:
        return None
    for e in bundle.sidecar.engines:
        if e.file == name:
            return e
    raise UserError(
        f"{bundle.root / name}: the sidecar beside it ({bundle.root}/edgevision.json) lists no engine {name!r}; "
        "run a plan that `edgevision engine` built (it records the plan's TensorRT version and GPU in the sidecar)"
    )


def choose_backend(bundle: Bundle, kind: str = "auto") -> BackendChoice:
    """What ``kind`` ("auto" | "onnxruntime" | "tensorrt") runs for ``bundle`` on this machine (module docstring)."""
    from . import KINDS

    if kind not in KINDS:
        raise UserError(f"unknown backend {kind!r}; choose one of {', '.join(KINDS)}")
    onnx = BackendChoice("onnxruntime", bundle.model_path)
    pinned = _pinned(bundle)
    if kind == "onnxruntime":
        if pinned is not None:
            raise UserError(f"{bundle.root / pinned.file}: a TensorRT plan cannot run on ONNX Runtime; pass the "
                            f"bundle {bundle.root} to run its {bundle.sidecar.model_file}")
        return onnx
    if kind == "auto" and not bundle.sidecar.engines:
        return onnx
    try:
        trt_version, sm = _probe()
    except (MissingDependencyError, UserError) as exc:
        if kind == "tensorrt" or pinned is not None:
            raise
        log.info("%s: not using its TensorRT engines (%s); running %s on ONNX Runtime", bundle.root, exc,
                 bundle.sidecar.model_file)
        return onnx
    if pinned is not None:
        check_engine_compat(pinned, trt_version, sm, bundle=bundle.root)
        engine = pinned
    else:
        try:
            engine = pick_engine(bundle, trt_version, sm)
        except UserError as exc:
            if kind == "tensorrt":
                raise
            log.warning("%s; running %s on ONNX Runtime instead", exc, bundle.sidecar.model_file)
            return onnx
    path = bundle.root / engine.file
    if not path.is_file():
        raise UserError(f"{path}: TensorRT engine listed in {bundle.root}/edgevision.json is missing")
    return BackendChoice("tensorrt", path, engine, bundle.root)
