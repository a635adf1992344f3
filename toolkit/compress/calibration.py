"""Calibration images for INT8: the model's own preprocessing, a fixed, hashed subset of the train split.

Feeds onnxruntime.quantization through its ``CalibrationDataReader`` interface. Images go through the
runtime's letterbox + normalisation (the sidecar's input spec), so calibration sees exactly the tensors the
deployed model sees. The calibration set's hash (file hashes in order) goes into the sidecar.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from edgevision.runtime.bundle import InputSpec
from edgevision.runtime.errors import UserError
from edgevision.runtime.fsutil import sha256_file, sha256_json
from edgevision.runtime.preprocess import letterbox, to_tensor

from ..data.coco import ImageRecord


def pick_images(records: Sequence[ImageRecord], n: int, where: str, *, offset: int = 0) -> list[Path]:
    """The first ``n`` images from ``offset`` (deterministic); too few -> ``UserError`` naming ``where``."""
    paths = [r.path for r in records[offset : offset + n]]
    if not paths:
        raise UserError(f"{where}: the calibration set is empty (the dataset's train split has no images)")
    if len(paths) < n:
        raise UserError(f"{where}: asks for {n} images but the train split has only {len(records) - offset} "
                        "available; lower it")
    return paths


def images_hash(paths: Sequence[Path]) -> str:
    return sha256_json([sha256_file(p) for p in paths])


def preprocess(path: Path, spec: InputSpec) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"{path}: cannot read calibration image")
    h, w = int(spec.shape[2]), int(spec.shape[3])
    boxed, _ = letterbox(image, (h, w), spec.pad_value)
    return to_tensor(boxed, spec)


class ImageReader(CalibrationDataReader):
    """Yields ``{input_name: [1,3,H,W]}`` feeds, one per image; ``rewind()`` starts over."""

    def __init__(self, paths: Sequence[Path], spec: InputSpec) -> None:
        self.paths, self.spec = list(paths), spec
        self._cache: dict[int, np.ndarray] = {}
        self._i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._i >= len(self.paths):
            return None
        if self._i not in self._cache:
            self._cache[self._i] = preprocess(self.paths[self._i], self.spec)
        feed = {self.spec.name: self._cache[self._i]}
        self._i += 1
        return feed

    def rewind(self) -> None:
        self._i = 0

    def batches(self) -> list[np.ndarray]:
        self.rewind()
        out = []
        while (feed := self.get_next()) is not None:
            out.append(feed[self.spec.name])
        self.rewind()
        return out
