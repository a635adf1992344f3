"""Run a bare ``.onnx`` file (no bundle): synthesise its sidecar from the model's metadata and flags.

Exporters write what the runtime needs into ONNX ``metadata_props``. Ultralytics (YOLOv8/11) writes
``task``, ``names`` (a Python dict literal, ``"{0: 'person', 1: 'bicycle'}"``, parsed with
``ast.literal_eval``, never ``eval``), ``imgsz`` (``"[640, 640]"``, h, w), ``stride`` and for pose
``kpt_shape`` (``"[17, 3]"``) and, when the model has them, ``kpt_names``; a 17-keypoint model without
names gets COCO's names, skeleton and OKS sigmas (``runtime.keypoints``), as every YOLO-pose export is
COCO-keypoint shaped; its preprocessing is fixed (RGB, x/255, letterbox padded with 114), which is
the ``InputSpec`` default. Whatever the metadata lacks comes from the model's own tensor shapes or from
explicit overrides (the ``--imgsz``/``--names``/``--task`` flags of ``edgevision run`` and ``bench``), and
explicit overrides win. The result is an in-memory ``Bundle`` whose root is the ONNX file's folder.

The metadata and I/O shapes are read through ONNX Runtime with graph optimisation off (the runtime has no
dependency on the ``onnx`` package).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backends.base import TensorSpec
from .bundle import MAX_INPUT_SIDE, MAX_KEYPOINTS, Bundle, Sidecar, parse_sidecar
from .errors import UserError
from .keypoints import default_keypoint_spec

__all__ = ["OnnxInfo", "bundle_from_onnx", "parse_names", "read_onnx_info", "sidecar_from_onnx"]

_DTYPES = ("float32", "float16", "uint8")


@dataclass(frozen=True)
class OnnxInfo:
    """What ``read_onnx_info`` found: I/O tensors and the ``metadata_props`` key/value strings."""

    path: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    metadata: dict[str, str]


def read_onnx_info(path: str | Path) -> OnnxInfo:
    """I/O specs and metadata of an ONNX file (opened by ONNX Runtime without graph optimisation)."""
    from .backends.onnxruntime import _first_line, _ort, _spec

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: ONNX file not found")
    ort = _ort()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises bare pybind error types
        raise UserError(f"{p}: not a valid ONNX model ({_first_line(exc)})") from None
    meta = dict(sess.get_modelmeta().custom_metadata_map)
    return OnnxInfo(p, [_spec(a) for a in sess.get_inputs()], [_spec(a) for a in sess.get_outputs()], meta)


MAX_LITERAL_CHARS = 1_000_000  # 100,000 class names of ~8 characters; a parse bound, not a limit users meet


def _literal(value: str, key: str, source: str) -> Any:
    """A Python or JSON literal. Hostile metadata (nested 200,000 deep, megabytes long) is one ``UserError``:
    both parsers recurse, and ``RecursionError``/``MemoryError`` are caught with the syntax errors."""
    if len(value) > MAX_LITERAL_CHARS:
        raise UserError(f"{source}: metadata {key!r} is {len(value)} characters long (at most {MAX_LITERAL_CHARS})")
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
        try:
            return json.loads(value)
        except (ValueError, RecursionError, MemoryError):
            raise UserError(f"{source}: metadata {key!r} is not a Python/JSON literal: {value[:60]!r}") from None


def parse_names(value: str | Sequence[str] | dict[Any, str], source: str = "names") -> list[str]:
    """Class names from a dict literal ``{0: 'a', 1: 'b'}``, a list, a dict, or a comma-separated string."""
    obj: Any = value
    if isinstance(value, str):
        text = value.strip()
        obj = _literal(text, "names", source) if text[:1] in "{[(" else [n.strip() for n in text.split(",")]
    if isinstance(obj, dict):
        try:
            items = sorted((int(k), str(v)) for k, v in obj.items())
        except (TypeError, ValueError, OverflowError):
            raise UserError(f"{source}: class-name keys must be integers 0..C-1") from None
        if [k for k, _ in items] != list(range(len(items))):
            ids = [k for k, _ in items]
            raise UserError(f"{source}: class ids must be 0..{len(items) - 1} without gaps, got {ids!r:.80}")
        return [v for _, v in items]
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(n, str) and n for n in obj):
        return [str(n) for n in obj]
    raise UserError(f"{source}: expected class names as a dict {{0: 'name', ...}} or a list, got {value!r:.60}")


def _imgsz(value: Any, source: str) -> tuple[int, int]:
    v = _literal(value, "imgsz", source) if isinstance(value, str) else value
    if isinstance(v, int):
        v = [v, v]
    if not (isinstance(v, (list, tuple)) and len(v) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) and 0 < x <= MAX_INPUT_SIDE for x in v)):
        raise UserError(f"{source}: imgsz must be one int or [h, w] in [1, {MAX_INPUT_SIDE}], got {value!r:.60}")
    return int(v[0]), int(v[1])


def _keypoints(meta: dict[str, str], nk: int, src: str) -> dict[str, Any]:
    """Sidecar ``keypoints``: Ultralytics' ``kpt_names`` metadata (``{0: [...]}`` per class, or a list) when
    present and of the right length, else ``default_keypoint_spec`` (COCO's names, skeleton and sigmas for
    17 keypoints). Names equal to COCO's get COCO's skeleton and sigmas too."""
    spec = default_keypoint_spec(nk)
    raw = _literal(meta["kpt_names"], "kpt_names", src) if "kpt_names" in meta else None
    if isinstance(raw, dict) and raw:
        raw = raw[sorted(raw)[0]] if all(isinstance(k, int) for k in raw) else list(raw.values())
    if isinstance(raw, (list, tuple)) and len(raw) == nk and all(isinstance(n, str) for n in raw):
        names = [str(n) for n in raw]
        if names != spec["names"]:
            spec = {"names": names, "skeleton": [], "sigmas": []}
    return spec


def sidecar_from_onnx(
    info: OnnxInfo,
    *,
    names: Sequence[str] | None = None,
    num_classes: int | None = None,
    imgsz: int | tuple[int, int] | None = None,
    task: str | None = None,
    color: str | None = None,
) -> Sidecar:
    """Sidecar for a bare ONNX model from its metadata, its tensor shapes and explicit overrides."""
    src, meta = str(info.path), info.metadata
    task = task or meta.get("task", "detect")
    if task not in ("detect", "pose"):
        raise UserError(f"{src}: task {task!r} is not supported (detect or pose)")
    if len(info.inputs) != 1:
        raise UserError(f"{src}: expected one image input, the model has {[i.name for i in info.inputs]}")
    inp, out = info.inputs[0], info.outputs[0]
    if inp.dtype not in _DTYPES or len(inp.shape) != 4:
        raise UserError(f"{src}: input {inp.name!r} must be NCHW {'/'.join(_DTYPES)}, "
                        f"got {inp.dtype} {list(inp.shape)}")
    if len(out.shape) == 3 and out.shape[-1] == 6 and isinstance(out.shape[1], int) and out.shape[1] <= 1000:
        raise UserError(f"{src}: output {list(out.shape)} looks like an end-to-end [B, N, 6] head (NMS inside); "
                        "export with nms=False (raw [B, 4 + C, N] head)")
    if imgsz is not None:
        hw = _imgsz(imgsz, "--imgsz")
    elif "imgsz" in meta:
        hw = _imgsz(meta["imgsz"], f"{src}: metadata imgsz")
    elif all(isinstance(d, int) for d in inp.shape[2:]):
        hw = (int(inp.shape[2]), int(inp.shape[3]))
    else:
        raise UserError(f"{src}: input size is dynamic {list(inp.shape)} and not in the metadata; pass --imgsz")
    nk = 0
    if task == "pose":
        kpt = _literal(meta["kpt_shape"], "kpt_shape", src) if "kpt_shape" in meta else None
        if not (isinstance(kpt, (list, tuple)) and len(kpt) == 2 and kpt[1] == 3 and isinstance(kpt[0], int)
                and 1 <= kpt[0] <= MAX_KEYPOINTS):
            raise UserError(f"{src}: pose models need metadata kpt_shape [K, 3] (x, y, visibility; K in "
                            f"[1, {MAX_KEYPOINTS}]), got {kpt!r:.60}")
        nk = int(kpt[0])
    channels = out.shape[1] if len(out.shape) == 3 and isinstance(out.shape[1], int) else None
    if names is not None:
        class_names = list(names)
    elif "names" in meta:
        class_names = parse_names(meta["names"], f"{src}: metadata names")
    else:
        n = num_classes or (channels - 4 - 3 * nk if channels is not None else 0)
        if n < 1:
            raise UserError(f"{src}: cannot tell the number of classes (no names metadata, output "
                            f"{list(out.shape)}); pass --names")
        class_names = [f"class{i}" for i in range(n)]
    nc = len(class_names)
    if channels is not None and channels != 4 + nc + 3 * nk:
        origin = "--names" if names is not None else "metadata names" if "names" in meta else "num_classes"
        raise UserError(f"{src}: output {out.name!r} has {channels} channels, expected 4 + {nc} classes"
                        + (f" + 3x{nk} keypoints" if nk else "")
                        + f" = {4 + nc + 3 * nk} (yolo layout [B, 4 + C, N]; classes from {origin})")
    raw_stride = str(meta.get("stride", "32")).strip()
    stride = int(raw_stride) if raw_stride.isdigit() and 1 <= len(raw_stride) <= 4 and int(raw_stride) else 32
    data: dict[str, Any] = {
        "name": info.path.stem,
        "task": task,
        "model_file": info.path.name,
        "class_names": class_names,
        "keypoints": _keypoints(meta, nk, src) if nk else None,
        "input": {"name": inp.name, "shape": [inp.shape[0], 3, hw[0], hw[1]], "dtype": inp.dtype,
                  "color": color or "rgb"},
        "output": {"layout": "yolo", "names": [out.name], "num_classes": nc, "num_keypoints": nk,
                   "strides": [s for s in (8, 16, 32, 64) if s <= stride] or [stride]},
        "extra": {"origin": "bare-onnx",
                  "metadata": {k: meta[k] for k in ("author", "version", "task", "imgsz", "stride") if k in meta}},
    }
    return parse_sidecar(data, f"{src} (synthesised sidecar)")


def bundle_from_onnx(path: str | Path, **overrides: Any) -> Bundle:
    """An in-memory ``Bundle`` for a bare ONNX file (see ``sidecar_from_onnx`` for ``overrides``)."""
    info = read_onnx_info(path)
    bundle = Bundle(info.path.parent, sidecar_from_onnx(info, **overrides))
    bundle.source_file = info.path
    return bundle
