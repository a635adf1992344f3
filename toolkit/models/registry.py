"""Registry of built-in models, each carrying its preprocessing contract (timm-style).

A :class:`ModelSpec` says how to build a model and what its input must look like (size, mean/std,
colour order, letterbox pad value, strides, output layout); the export stage copies that contract into
the bundle sidecar, so the runtime never guesses. "Built-in" is one source among several: adapters for
outside models (Ultralytics checkpoints, ``package.module:factory``, ONNX files) register specs too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from edgevision.runtime.errors import UserError

from .edgedet import EdgeDet, EdgeDetConfig

Factory = Callable[[str, int, int], nn.Module]  # (size, num_classes, num_keypoints) -> module


@dataclass(frozen=True)
class ModelSpec:
    """A registered model family and its preprocessing/output contract."""

    name: str
    sizes: tuple[str, ...]
    task: str  # "detect" | "pose"
    factory: Factory = field(repr=False, compare=False)
    input_size: int = 320
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    rgb: bool = True
    pad_value: int = 114
    strides: tuple[int, ...] = (8, 16, 32)
    output_layout: str = "yolo"
    description: str = ""

    def preprocess_contract(self, input_size: int | None = None) -> dict[str, Any]:
        """The input block of the deployment sidecar (JSON-ready)."""
        d = asdict(self)
        out = {k: d[k] for k in ("mean", "std", "rgb", "pad_value", "strides", "output_layout")}
        out["input_size"] = int(input_size or self.input_size)
        out["letterbox"] = True
        out["mean"], out["std"], out["strides"] = list(self.mean), list(self.std), list(self.strides)
        return out


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add (or replace) a model family; returns the spec so it can be used as a one-liner."""
    _REGISTRY[spec.name] = spec
    return spec


def list_models() -> list[str]:
    """Names of every registered model family, sorted."""
    return sorted(_REGISTRY)


def get_model_spec(name: str) -> ModelSpec:
    """Spec by name; an unknown name is a :class:`UserError` listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def build_model(name: str, size: str, num_classes: int, num_keypoints: int = 0) -> nn.Module:
    """Fresh (randomly initialised) model of family ``name`` and size ``size``."""
    spec = get_model_spec(name)
    if size not in spec.sizes:
        raise UserError(f"model {name!r} has no size {size!r}; known sizes: {', '.join(spec.sizes)}")
    if num_classes < 1:
        raise UserError(f"model {name!r}: num_classes must be >= 1, got {num_classes}")
    if num_keypoints < 0:
        raise UserError(f"model {name!r}: num_keypoints must be >= 0, got {num_keypoints}")
    return spec.factory(size, num_classes, num_keypoints)


# width, depth, head hidden channels (all rounded to multiples of 8)
EDGEDET_SIZES: dict[str, EdgeDetConfig] = {
    "p": EdgeDetConfig.scaled(0.1875, 0.33, 32, max_ch=768),
    "n": EdgeDetConfig.scaled(0.25, 0.33, 32),
    "s": EdgeDetConfig.scaled(0.5, 0.33, 64),
    # Wide enough that convolutions dominate ONNX Runtime's CPU time, which is where INT8 pays off (the
    # quantize/compress recipes use it; measured ratios in recipes/quantize-detect.yaml).
    "m": EdgeDetConfig.scaled(0.75, 0.33, 96),
}


def _edgedet(size: str, num_classes: int, num_keypoints: int) -> nn.Module:
    return EdgeDet(EDGEDET_SIZES[size], num_classes, num_keypoints)


def _edgepose(size: str, num_classes: int, num_keypoints: int) -> nn.Module:
    if num_keypoints < 1:
        raise UserError("model 'edgepose' needs keypoints (num_keypoints >= 1); use 'edgedet' for detection")
    return EdgeDet(EDGEDET_SIZES[size], num_classes, num_keypoints)


register_model(
    ModelSpec(
        name="edgedet",
        sizes=tuple(EDGEDET_SIZES),
        task="detect",
        factory=_edgedet,
        input_size=256,
        description="compact anchor-free detector (C2f backbone, PAN neck, DFL head); yolo output layout",
    )
)

register_model(
    ModelSpec(
        name="edgepose",
        sizes=tuple(EDGEDET_SIZES),
        task="pose",
        factory=_edgepose,
        input_size=256,
        description="edgedet with a keypoint head: single-stage multi-person pose (YOLO-pose style); "
                    "yolo output layout [B, 4 + C + 3K, N]",
    )
)
