"""Image folders, globs and single images, in natural order (2 before 10)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..lazy import cv2 as _cv2
from .base import IMAGE_SUFFIXES, Source, log


class ImageSource(Source):
    """Images from a sorted list of files; unreadable files are skipped with a warning."""

    def __init__(self, uri: str, files: list[Path], *, loop: bool = False, fps: float | None = None,
                 **kw: Any) -> None:
        super().__init__(uri, fps=fps, pace=fps is not None, **kw)
        self.files, self._loop, self._i = files, loop, 0
        self._last = ""
        self.is_live = fps is not None
        self.frame_count = len(files)

    def _read(self) -> np.ndarray | None:
        cv2 = _cv2()
        misses = 0
        while misses < len(self.files):
            if self._i >= len(self.files):
                if not self._loop:
                    return None
                self._i = 0
            path = self.files[self._i]
            self._i += 1
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is not None:
                self._last = path.name
                return np.asarray(img)
            misses += 1
            log.warning("%s: not a readable image, skipped", path)
        return None

    def _frame_name(self) -> str:
        return self._last


def _natural_key(p: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(p))]


def _image_files(uri: str, paths: list[Path]) -> list[Path]:
    files = sorted((p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), key=_natural_key)
    if not files:
        raise UserError(f"{uri}: no images found ({', '.join(IMAGE_SUFFIXES)})")
    return files

