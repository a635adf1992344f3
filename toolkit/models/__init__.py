"""Built-in models (registry + the edgedet detector), its loss, and helpers.

Light on purpose: importing this package imports torch (through the model code) but nothing heavier.
"""

from __future__ import annotations

from .registry import ModelSpec, build_model, get_model_spec, list_models, register_model

__all__ = ["ModelSpec", "build_model", "get_model_spec", "list_models", "register_model"]
