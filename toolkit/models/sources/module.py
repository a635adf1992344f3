"""``module:`` source: any ``torch.nn.Module`` from ``"package.module:factory"`` plus a declared contract.

The recipe names a factory (called with no arguments, under ``torch.manual_seed(0)`` so an untrained
model and the stage caches are reproducible), optionally a ``weights:`` state dict (``weights_only=True``),
the ``output_layout`` its eval-mode forward returns and its preprocessing (``input_size`` of the recipe,
``mean``/``std``, ``color``, ``pad_value``, ``strides``). At open time one dry forward at the declared input
size checks the layout: ``yolo`` is ``[1, 4 + C (+3K), N]`` with ``N = sum((S / s)^2)`` over the strides;
the channel count is checked against the dataset's classes (and keypoints) when the checkpoint is written.

What such a model can do in a build:

- export, INT8 PTQ, FP16, evaluate, bench: always (they only need the eval forward);
- prune: layers whose output channels define the layout are protected. A model may say which with a
  ``head_outputs()`` method like the built-ins; otherwise they are derived (``compress.prune.output_convs``:
  the convs the output tensor's autograd graph reaches first, walking back from the output);
- fine-tune, QAT and Taylor importance need a task loss: ``loss: "package.module:factory"``, called as
  ``factory(model)`` and returning ``loss(train_mode_output, targets) -> (total, items)`` with targets
  ``[T, 6]`` = image index, class, x1, y1, x2, y2 in input pixels. Without it a build may only quantize
  (and prune without fine-tuning);
- distillation's KD terms read raw DFL head maps: only models with the built-ins' head protocol
  (``model.head`` with ``nc``, ``nk``, ``reg_max``, ``strides``; ``head.training = True`` returns raw maps).

Checkpoints record the factory (``meta.extra["source"]``), whose rebuild is the skeleton the weights load
into, so a pruned module checkpoint still loads with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from edgevision.runtime.errors import InternalError, UserError
from edgevision.runtime.fsutil import sha256_file

from .base import Contract, ModelSource, SourceInfo, register_skeleton, source_record

if TYPE_CHECKING:
    from ...checkpoint import CheckpointMeta
    from ...recipe import Recipe


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def import_factory(spec: str, key: str) -> Callable[..., Any]:
    """``"package.module:attr"`` -> the callable; a failure is one line naming ``model.<key>``."""
    mod_name, _, attr = spec.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except Exception as exc:  # the user's module may raise anything at import time
        raise UserError(f"model.{key}: {spec!r}: module {mod_name!r} does not import ({_first_line(exc)})") from None
    fn = getattr(mod, attr, None)
    if fn is None:
        raise UserError(f"model.{key}: {spec!r}: module {mod_name!r} has no attribute {attr!r}")
    if not callable(fn):
        raise UserError(f"model.{key}: {spec!r}: {attr!r} is a {type(fn).__name__}, not a callable")
    return fn


def _module_file_hash(spec: str) -> str:
    found = importlib.util.find_spec(spec.partition(":")[0])
    origin = found.origin if found is not None else None
    return sha256_file(Path(origin)) if origin and Path(origin).is_file() else ""


class _ModuleLoss:
    """``model.task_loss(weights)`` for a module with ``loss:`` (see ``models.loss.make_loss``). A plain
    object holding the model, so a deep copy of the model (EMA, teacher) gets a loss bound to the copy."""

    def __init__(self, model: nn.Module, spec: str) -> None:
        self.model, self.spec = model, spec

    def __call__(self, weights: tuple[float, ...] = ()) -> Any:
        return import_factory(self.spec, "loss")(self.model)


def build_module(spec: str, loss: str | None = None) -> nn.Module:
    """Call the factory (seeded); a non-``nn.Module`` result is a one-line error."""
    factory = import_factory(spec, "module")
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        model = factory()
    except Exception as exc:  # the user's factory may raise anything
        raise UserError(f"model.module: {spec!r}: the factory raised {_first_line(exc)}") from None
    finally:
        torch.random.set_rng_state(state)
    if not isinstance(model, nn.Module):
        raise UserError(f"model.module: {spec!r} returned a {type(model).__name__}, not a torch.nn.Module")
    if loss is not None:
        object.__setattr__(model, "task_loss", _ModuleLoss(model, loss))  # a plain attribute, not a submodule
    return model.eval()


def load_weights(model: nn.Module, path: Path, spec: str) -> None:
    if not path.is_file():
        raise UserError(f"model.weights: {path}: file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or pickled-code file
        raise UserError(f"model.weights: {path}: not a loadable state dict ({_first_line(exc)})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"model.weights: {path}: expected a state dict (name -> tensor)")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise UserError(f"model.weights: {path}: does not fit {spec!r}: {detail}") from None


def yolo_shape(contract: Contract, channels: int | str) -> list[int | str]:
    n = sum((contract.input_size // s) ** 2 for s in contract.strides)
    return [1, channels, n]


def _fmt(shape: list[Any]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def dry_forward(model: nn.Module, contract: Contract, spec: str) -> list[int]:
    """One eval forward at the declared input size; the output must be one ``[1, channels, N]`` tensor."""
    x = torch.zeros(1, 3, contract.input_size, contract.input_size)
    try:
        with torch.no_grad():
            out = model.eval()(x)
    except Exception as exc:  # the user's forward may raise anything
        raise UserError(f"model.module: {spec!r}: forward on a [1, 3, {contract.input_size}, "
                        f"{contract.input_size}] input failed ({_first_line(exc)})") from None
    expected = yolo_shape(contract, "4 + C (+3K)")
    if not isinstance(out, torch.Tensor):
        raise UserError(f"model.module: {spec!r}: output_layout 'yolo' expects one tensor {_fmt(expected)}, "
                        f"forward returned a {type(out).__name__}")
    shape = [int(d) for d in out.shape]
    if len(shape) != 3 or shape[0] != 1 or shape[2] != expected[2] or shape[1] < 5:
        raise UserError(f"model.module: {spec!r}: output_layout 'yolo' at input {contract.input_size} with strides "
                        f"{list(contract.strides)} expects {_fmt(expected)}, got {_fmt(shape)}")
    return shape


def check_channels(shape: list[int], num_classes: int, num_keypoints: int, spec: str) -> None:
    want = 4 + num_classes + 3 * num_keypoints
    if shape[1] != want:
        what = f"4 + {num_classes} classes" + (f" + 3x{num_keypoints} keypoints" if num_keypoints else "")
        raise UserError(f"model.module: {spec!r}: output_layout 'yolo' for the dataset's {what} expects "
                        f"{_fmt([1, want, shape[2]])}, got {_fmt(shape)}")


def has_head_protocol(model: nn.Module) -> bool:
    head = getattr(model, "head", None)
    return isinstance(head, nn.Module) and all(hasattr(head, a) for a in ("nc", "nk", "reg_max", "strides"))


class ModuleSource(ModelSource):
    kind = "module"

    def __init__(self, recipe: Recipe, base: Path | None = None) -> None:
        self.recipe, self.cfg = recipe, recipe.model
        self.spec = str(self.cfg.module)
        for folder in (Path.cwd(), base):  # "package.module" may live beside the recipe or where it runs
            if folder is not None and str(folder) not in sys.path:
                sys.path.append(str(folder))
        self._info: SourceInfo | None = None
        self._model: nn.Module | None = None
        self._shape: list[int] = []

    def contract(self) -> Contract:
        c = self.cfg
        return Contract(input_size=self.recipe.input_size, mean=c.mean or (0.0, 0.0, 0.0),
                        std=c.std or (1.0, 1.0, 1.0), rgb=c.color != "bgr",
                        pad_value=114 if c.pad_value is None else c.pad_value,
                        strides=tuple(c.strides or (8, 16, 32)), output_layout=c.output_layout or "yolo")

    def describe(self) -> SourceInfo:
        if self._info is not None:
            return self._info
        contract = self.contract()
        if contract.output_layout != "yolo":
            raise UserError("model.output_layout: 'nms' modules are not supported yet; return the raw yolo layout "
                            "[B, 4 + C, N] (export.nms: true then puts NMS in the bundle)")
        if any(s < 1 or contract.input_size % s for s in contract.strides):
            raise UserError(f"model.strides: {list(contract.strides)} must divide input_size {contract.input_size}")
        if self.cfg.loss is not None:
            import_factory(self.cfg.loss, "loss")
        model = build_module(self.spec, self.cfg.loss)
        if self.cfg.weights is not None:
            load_weights(model, self.cfg.weights, self.spec)
        self._shape = dry_forward(model, contract, self.spec)
        self._model = model
        h = hashlib.sha256()
        h.update(json.dumps({"module": self.spec, "loss": self.cfg.loss, "contract": asdict(contract)},
                            sort_keys=True).encode())
        h.update(_module_file_hash(self.spec).encode())
        if self.cfg.loss is not None:
            h.update(_module_file_hash(self.cfg.loss).encode())
        for k, v in model.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        self._info = SourceInfo(
            kind=self.kind, task=self.recipe.task, contract=contract, fingerprint=h.hexdigest(),
            has_loss=self.cfg.loss is not None, has_head_protocol=has_head_protocol(model),
            extra={"module": self.spec, "output_shape": self._shape},
        )
        return self._info

    def to_checkpoint(self, dst: Path, *, class_names: list[str], num_keypoints: int,
                      keypoints: dict[str, Any] | None = None) -> dict[str, Any]:
        from ...checkpoint import CheckpointMeta, save_checkpoint

        info = self.describe()
        check_channels(self._shape, len(class_names), num_keypoints, self.spec)
        if self._model is None:  # describe() sets it
            raise InternalError("module source: describe() did not build the model")
        record = source_record(self.kind, info.contract, factory=self.spec, loss=self.cfg.loss,
                               has_loss=info.has_loss, has_head_protocol=info.has_head_protocol)
        extra: dict[str, Any] = {"source": record}
        if keypoints is not None:
            extra["keypoints"] = keypoints
        meta = CheckpointMeta(model=self.spec, size="", task=info.task, class_names=list(class_names),
                              input_size=info.contract.input_size, num_keypoints=num_keypoints, extra=extra)
        save_checkpoint(dst, self._model, meta)
        return {"source": self.spec, "weights": str(self.cfg.weights) if self.cfg.weights else None,
                "trained": False}


def _skeleton(meta: CheckpointMeta) -> nn.Module:
    record = meta.extra["source"]
    return build_module(str(record["factory"]), record.get("loss"))


register_skeleton("module", _skeleton)
