"""Lazy imports of the runtime's heavy optional dependencies, so ``import edgevision.runtime`` stays cheap.

One place for the "import it, or say exactly what to install" rule (``errors.dependency_error``).
"""

from __future__ import annotations

from typing import Any

from .errors import dependency_error

__all__ = ["cv2"]


def cv2() -> Any:
    """The ``cv2`` module (opencv-python(-headless), the runtime extra)."""
    try:
        import cv2 as module
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise dependency_error(exc, "opencv (cv2)", "runtime") from exc
    return module
