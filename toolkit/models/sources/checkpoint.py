"""Checkpoint source (``model: {checkpoint: path}``): an edgevision checkpoint, adopted without training.

Whatever source the checkpoint itself came from (built-in, Ultralytics, module) travels in its
``meta.extra["source"]`` record, so its contract and skeleton are the original source's.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from edgevision.runtime.errors import UserError
from edgevision.runtime.fsutil import sha256_file

from .base import ModelSource, SourceInfo, contract_from_meta


class CheckpointSource(ModelSource):
    kind = "checkpoint"

    def __init__(self, cfg: Any) -> None:
        self.path = Path(cfg.checkpoint)
        self._info: SourceInfo | None = None

    def describe(self) -> SourceInfo:
        if self._info is None:
            from ...checkpoint import load_checkpoint

            if not self.path.is_file():
                raise UserError(f"model.checkpoint: {self.path}: file not found")
            _, meta = load_checkpoint(self.path)  # a foreign/corrupt file fails here, before any stage
            found = meta.extra.get("source")
            record: dict[str, Any] = found if isinstance(found, dict) else {}
            self._info = SourceInfo(
                kind=self.kind, task=meta.task, contract=contract_from_meta(meta),
                fingerprint=sha256_file(self.path), class_names=list(meta.class_names),
                num_keypoints=meta.num_keypoints,
                has_loss=bool(record.get("has_loss", True)),
                has_head_protocol=bool(record.get("has_head_protocol", True)),
                extra={"path": str(self.path), "origin": record.get("kind", "builtin")},
            )
        return self._info

    def to_checkpoint(self, dst: Path, *, class_names: list[str], num_keypoints: int,
                      keypoints: dict[str, Any] | None = None) -> dict[str, Any]:
        shutil.copyfile(self.path, dst)
        return {"source": str(self.path), "trained": False}
