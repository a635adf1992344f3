"""The one shape every backend has: ``infer(feed) -> outputs`` (Polygraphy's runner habit).

ONNX Runtime and TensorRT (and, later, an HTTP client) implement ``Backend`` so that the pipeline, the
benchmark, the toolkit's evaluation and a backend-vs-backend comparator never care which engine runs.
Shapes in ``TensorSpec`` keep dynamic dimensions as strings (``"batch"``, ``"?"``) so a caller can see
which axes it may vary; the batch axis is dynamic whenever the model allows it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..preprocess import InputSpecLike, Letterbox

__all__ = ["Backend", "TensorSpec"]


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: ``shape`` holds ints for fixed and strings for dynamic dimensions."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str  # numpy dtype name, e.g. "float32", "float16", "int64"

    @property
    def is_dynamic(self) -> bool:
        return any(not isinstance(d, int) for d in self.shape)


class Backend(ABC):
    """A loaded model. Use as a context manager or call ``close()`` to free device memory."""

    name: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @abstractmethod
    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once: ``feed`` maps every input name to an array (leading axis = batch)."""

    #: True where ``infer_image`` preprocesses a raw frame on the device (TensorRT: one CUDA kernel).
    device_preprocess: bool = False

    def infer_image(self, image: np.ndarray, spec: InputSpecLike | None = None, *, pad_value: int = 114,
                    size: tuple[int, int] | None = None) -> tuple[dict[str, np.ndarray], Letterbox]:
        """One HxWx3 uint8 BGR frame -> outputs, preprocessed on the device (only if ``device_preprocess``)."""
        raise NotImplementedError(f"{self.name}: no on-device preprocessing; use preprocess + infer")

    @abstractmethod
    def close(self) -> None:
        """Release the session / engine; idempotent."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
