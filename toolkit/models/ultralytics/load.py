"""Read an Ultralytics ``.pt`` checkpoint (YOLOv8 / YOLO11, detect or pose) and rebuild it as an edgevision model.

Ultralytics checkpoints are pickles of their own module objects: reading one needs
``torch.load(weights_only=False)``, which runs code from the file. It is done here and only here, only on the
path the user named (recipe ``model.ultralytics``); nothing else in edgevision unpickles. From the loaded
object only plain facts are kept — the model yaml (a dict), class names, ``kpt_shape``, the training
``imgsz``, the Ultralytics version that wrote it — and the state dict. The network itself is rebuilt from the
yaml by the *installed* Ultralytics (``DetectionModel`` / ``PoseModel``) and the weights loaded into it, so
edgevision checkpoints never pickle code and a checkpoint from another Ultralytics version either fits (same
parameter names and shapes) or fails with one line naming the file and both versions.

Ultralytics is an optional dependency (AGPL-3.0; depended on, never copied), imported lazily with the install
hint; ``YOLO_OFFLINE=1`` is set before the import so it never reaches the network.
"""

from __future__ import annotations

import copy
import hashlib
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import torch
from torch import nn

from edgevision.runtime.errors import UserError

from .net import UltralyticsNet

INSTALL_HINT = "pip install 'edgevision[ultralytics]'"
TASKS = ("detect", "pose")


def require_ultralytics() -> ModuleType:
    """``import ultralytics`` (offline), or a :class:`UserError` with the install hint."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    try:
        import ultralytics
    except ImportError as exc:
        raise UserError(f"model.ultralytics needs the Ultralytics package ({exc}); install it with: {INSTALL_HINT}") \
            from None
    return ultralytics


@dataclass
class UltralyticsCheckpoint:
    """Plain facts and weights read from one Ultralytics ``.pt``."""

    path: Path
    task: str
    yaml: dict[str, Any]
    class_names: list[str]
    imgsz: int
    kpt_shape: tuple[int, int] | None
    strides: tuple[int, ...]
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    written_by: str  # Ultralytics version in the file ("unknown" when absent)
    sha256: str

    @property
    def nc(self) -> int:
        return len(self.class_names)

    def source_meta(self) -> dict[str, Any]:
        """``meta.extra["source"]`` of the edgevision checkpoint: enough to rebuild the skeleton."""
        return {"kind": "ultralytics", "yaml": copy.deepcopy(self.yaml), "nc": self.nc,
                "kpt_shape": list(self.kpt_shape) if self.kpt_shape else None, "task": self.task,
                "strides": list(self.strides),
                "file": str(self.path), "sha256": self.sha256, "written_by": self.written_by}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _unpickle(path: Path) -> Any:
    ul = require_ultralytics()
    try:
        # Runs code from the file (a pickle): only ever the path the user named in the recipe.
        return torch.load(path, map_location="cpu", weights_only=False)
    except (ModuleNotFoundError, AttributeError, ImportError) as exc:
        raise UserError(f"{path}: written by an Ultralytics version that this one ({ul.__version__}) cannot load "
                        f"({type(exc).__name__}: {exc}); re-save it with Ultralytics {ul.__version__}, or install "
                        "the version that trained it") from None
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, TypeError, OSError) as exc:
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__})") from None


def _imgsz(ckpt: dict[str, Any], model: nn.Module) -> int:
    args = ckpt.get("train_args") or getattr(model, "args", None) or {}
    v = args.get("imgsz", 640) if isinstance(args, dict) else getattr(args, "imgsz", 640)
    if isinstance(v, list | tuple):
        v = max(int(x) for x in v)
    try:
        return int(v)
    except (TypeError, ValueError):
        return 640


def read_checkpoint(path: Path) -> UltralyticsCheckpoint:
    """Read ``path``; every way it can be wrong is a one-line :class:`UserError` naming the file."""
    if not path.is_file():
        raise UserError(f"model.ultralytics: {path}: file not found")
    blob = _unpickle(path)
    if isinstance(blob, dict) and blob.get("format") == "edgevision-checkpoint":
        raise UserError(f"{path}: an edgevision checkpoint, not an Ultralytics one; use model.checkpoint")
    model = None
    if isinstance(blob, dict):
        model = blob.get("ema") or blob.get("model")
    if not isinstance(model, nn.Module) or not isinstance(getattr(model, "yaml", None), dict) \
            or not isinstance(getattr(model, "model", None), nn.Sequential):
        raise UserError(f"{path}: not an Ultralytics checkpoint (expected a dict with an Ultralytics 'model' or "
                        "'ema' network, as YOLO training writes best.pt)")
    ckpt = cast(dict[str, Any], blob)
    written_by = str(ckpt.get("version", "unknown"))
    task = str(getattr(model, "task", "") or _guess_task(model))
    if task not in TASKS:
        raise UserError(f"{path}: an Ultralytics {task!r} model; edgevision takes {' and '.join(TASKS)} models")
    head: Any = cast(nn.Sequential, model.model)[-1]
    if getattr(head, "end2end", False) or getattr(head, "one2one_cv2", None) is not None:
        raise UserError(f"{path}: an end-to-end (NMS-free, YOLOv10/YOLO26-style) head; edgevision takes YOLOv8 / "
                        "YOLO11 detect and pose heads")
    if type(head).__name__ not in ("Detect", "Pose"):
        raise UserError(f"{path}: head {type(head).__name__} is not a YOLOv8 / YOLO11 Detect or Pose head")
    kpt = getattr(head, "kpt_shape", None)
    kpt_shape = (int(kpt[0]), int(kpt[1])) if kpt is not None else None
    if kpt_shape is not None and kpt_shape[1] != 3:
        raise UserError(f"{path}: kpt_shape {list(kpt_shape)}: edgevision's pose layout needs visibility "
                        "(kpt_shape [K, 3])")
    names = getattr(model, "names", None) or {i: f"class{i}" for i in range(int(head.nc))}
    class_names = [str(names[i]) for i in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]
    if len(class_names) != int(head.nc):
        raise UserError(f"{path}: {len(class_names)} class names but the head predicts {int(head.nc)} classes")
    yaml = copy.deepcopy(cast(dict[str, Any], model.yaml))
    state = {k: v.float() if v.is_floating_point() else v for k, v in model.float().state_dict().items()}
    return UltralyticsCheckpoint(path=path, task=task, yaml=yaml, class_names=class_names,
                                 imgsz=_imgsz(ckpt, model), kpt_shape=kpt_shape, state_dict=state,
                                 strides=tuple(int(v) for v in cast(torch.Tensor, head.stride).tolist()),
                                 written_by=written_by, sha256=_sha256(path))


def _guess_task(model: nn.Module) -> str:
    head = type(cast(nn.Sequential, model.model)[-1]).__name__.lower()
    return {"detect": "detect", "pose": "pose", "segment": "segment", "obb": "obb", "classify": "classify"}.get(
        head, head)


def build_ultralytics(yaml: dict[str, Any], nc: int, kpt_shape: tuple[int, int] | list[int] | None) -> nn.Module:
    """A fresh Ultralytics ``DetectionModel`` / ``PoseModel`` from its yaml dict (random weights)."""
    require_ultralytics()
    from ultralytics.nn.tasks import DetectionModel, PoseModel

    cfg = copy.deepcopy(yaml)
    if kpt_shape is not None:
        return PoseModel(cfg, nc=nc, data_kpt_shape=tuple(int(v) for v in kpt_shape), verbose=False)
    return DetectionModel(cfg, nc=nc, verbose=False)


def net_from_source(source: dict[str, Any]) -> UltralyticsNet:
    """The unpruned :class:`UltralyticsNet` a checkpoint with ``meta.extra["source"] = source`` loads into."""
    kpt = source.get("kpt_shape")
    return UltralyticsNet(build_ultralytics(source["yaml"], int(source["nc"]), tuple(kpt) if kpt else None))


def net_from_checkpoint(ck: UltralyticsCheckpoint) -> UltralyticsNet:
    """Rebuild ``ck``'s network with the installed Ultralytics and load its weights (then split-free)."""
    import ultralytics

    ul = build_ultralytics(ck.yaml, ck.nc, ck.kpt_shape)
    try:
        ul.load_state_dict(ck.state_dict)
    except RuntimeError as exc:
        raise UserError(f"{ck.path}: its weights do not fit the network Ultralytics {ultralytics.__version__} "
                        f"builds from its yaml (file written by Ultralytics {ck.written_by}): "
                        f"{str(exc).splitlines()[0]}") from None
    return UltralyticsNet(ul.eval()).eval()


def load_net_checkpoint(path: Path) -> tuple[nn.Module, Any]:
    """Load an edgevision checkpoint of an Ultralytics model (``weights_only=True``): the skeleton rebuilt from
    ``meta.extra["source"]``, narrowed to a pruned state dict, weights loaded. What ``checkpoint.load_checkpoint``
    does for sources registered with ``register_skeleton``."""
    from ...checkpoint import FORMAT, CheckpointMeta, resize_to_state_dict
    from ..sources.base import rebuild_skeleton

    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise UserError(f"{path}: not an edgevision checkpoint")
    meta = CheckpointMeta(**blob["meta"])
    from ..sources import ultralytics as _register  # noqa: F401  (registers the skeleton)

    model = rebuild_skeleton(str(meta.extra.get("source", {}).get("kind")), meta)
    if meta.extra.get("pruned"):
        resize_to_state_dict(model, blob["state_dict"], path)
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:
        raise UserError(f"{path}: weights do not fit the rebuilt Ultralytics network: {str(exc).splitlines()[0]}") \
            from None
    return model.eval(), meta
