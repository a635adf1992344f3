"""``model: {ultralytics: path/to/best.pt}``: an Ultralytics YOLOv8 / YOLO11 detect or pose checkpoint.

Task, class names, ``kpt_shape`` and the training ``imgsz`` come from the checkpoint (the recipe's
``input_size`` may override the size). The checkpoint is unpickled once, lazily, by
:func:`~edgevision.toolkit.models.ultralytics.load.read_checkpoint` (see there why and how safely); the
edgevision checkpoint written by :meth:`UltralyticsSource.to_checkpoint` holds the split-free network's
state dict plus ``meta.extra["source"]`` (yaml dict, nc, kpt_shape), from which the skeleton registered
below rebuilds the module with the installed Ultralytics — no pickled code in edgevision checkpoints.
The preprocessing contract is Ultralytics': RGB, x/255 (mean 0, std 1), letterbox padded with 114.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgevision.runtime.errors import UserError

from .base import Contract, ModelSource, SourceInfo, register_skeleton

if TYPE_CHECKING:
    from torch import nn

    from ...checkpoint import CheckpointMeta
    from ..ultralytics.load import UltralyticsCheckpoint

KIND = "ultralytics"


class UltralyticsSource(ModelSource):
    kind = KIND

    def __init__(self, path: Path, input_size: int | None = None) -> None:
        self.path = Path(path)
        self.input_size = input_size
        self._ck: UltralyticsCheckpoint | None = None

    def checkpoint(self) -> UltralyticsCheckpoint:
        if self._ck is None:
            from ..ultralytics.load import read_checkpoint

            self._ck = read_checkpoint(self.path)
        return self._ck

    def describe(self) -> SourceInfo:
        ck = self.checkpoint()
        size = int(self.input_size or ck.imgsz)
        strides = ck.strides
        if size % max(strides):
            raise UserError(f"model.ultralytics: input size {size} is not a multiple of the largest stride "
                            f"{max(strides)}")
        import ultralytics

        return SourceInfo(
            kind=KIND, task=ck.task, contract=Contract(input_size=size, strides=strides), fingerprint=ck.sha256,
            class_names=list(ck.class_names), num_keypoints=ck.kpt_shape[0] if ck.kpt_shape else 0,
            extra={"file": str(self.path), "written_by": ck.written_by, "ultralytics": ultralytics.__version__,
                   "imgsz": ck.imgsz, "scale": ck.yaml.get("scale")},
        )

    def to_checkpoint(self, dst: Path, *, class_names: list[str], num_keypoints: int,
                      keypoints: dict[str, Any] | None = None) -> dict[str, Any]:
        from ...checkpoint import CheckpointMeta, save_checkpoint
        from ..ultralytics.load import net_from_checkpoint

        ck = self.checkpoint()
        if len(class_names) != ck.nc:
            raise UserError(f"model.ultralytics: {self.path} predicts {ck.nc} classes {ck.class_names} but the "
                            f"dataset has {len(class_names)}")
        nk = ck.kpt_shape[0] if ck.kpt_shape else 0
        if num_keypoints != nk:
            raise UserError(f"model.ultralytics: {self.path} predicts {nk} keypoints but the dataset has "
                            f"{num_keypoints}")
        net = net_from_checkpoint(ck)
        extra: dict[str, Any] = {"source": ck.source_meta()}
        if keypoints is not None:
            extra["keypoints"] = keypoints
        info = self.describe()
        meta = CheckpointMeta(model=KIND, size=str(ck.yaml.get("scale") or self.path.stem), task=ck.task,
                              class_names=list(class_names), input_size=info.contract.input_size,
                              num_keypoints=nk, extra=extra)
        save_checkpoint(dst, net, meta)
        return {"source": KIND, "file": str(self.path), "sha256": ck.sha256, "written_by": ck.written_by,
                "task": ck.task, "split_free_blocks": net.split_free, "checkpoint": str(dst)}


def open_ultralytics(cfg: Any, input_size: int | None = None) -> UltralyticsSource:
    """The source for a recipe ``model`` section with ``ultralytics: path``; ``input_size`` (or the section's
    own ``input_size``, when it has one) overrides the checkpoint's training size."""
    path = getattr(cfg, "ultralytics", None)
    if path is None:
        raise UserError("model.ultralytics: no checkpoint path given")
    return UltralyticsSource(Path(path), input_size or getattr(cfg, "input_size", None))


def _skeleton(meta: CheckpointMeta) -> nn.Module:
    from ..ultralytics.load import net_from_source

    source = meta.extra.get("source")
    if not isinstance(source, dict) or "yaml" not in source:
        raise UserError("checkpoint: model source 'ultralytics' without its yaml in meta.extra['source']")
    return net_from_source(source)


register_skeleton(KIND, _skeleton)
