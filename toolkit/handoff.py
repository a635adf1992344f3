"""What `export-triton` and `export-deepstream` share: open a bundle for hand-off, read its ONNX graph's I/O,
pick one of its TensorRT plans, and the text that tells a client what the model expects.

Runtime-side (Python 3.8, no torch): a Jetson user runs ``export-deepstream`` on the device. The ONNX graph is read
with the ``onnx`` package (imported lazily; it is in the ``runtime`` extra) without loading tensor data, so a
truncated or foreign ``model.onnx`` is one ``UserError`` before anything is written. The sidecar is checked
against the graph by the runtime's own ``check_model_io``, the one place that contract lives.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from edgevision.runtime.bundle import Bundle, EngineSpec, Sidecar, load_bundle
from edgevision.runtime.bundle_check import check_model_io
from edgevision.runtime.errors import UserError, dependency_error
from edgevision.runtime.fsutil import new_file_mode

__all__ = ["MARKER", "GraphIO", "HandoffModel", "labels_text", "load_handoff", "marker_text", "preprocess_lines",
           "readable_dir"]

#: written into every hand-off output; a directory holding it is a previous output that may be replaced whole
MARKER = "edgevision-handoff.json"

Dim = Optional[int]  # None: a dynamic dimension


@dataclass(frozen=True)
class GraphIO:
    """One graph input or output: ``dims`` with None for dynamic axes, ``dtype`` the ONNX element type name
    (``FLOAT``, ``INT32``, ...)."""

    name: str
    dims: tuple[Dim, ...]
    dtype: str

    @property
    def numpy_dtype(self) -> str:
        return _NUMPY[self.dtype]


# ONNX TensorProto element type names -> numpy dtype names (for the runtime's own check and for tests)
_NUMPY = {"FLOAT": "float32", "FLOAT16": "float16", "DOUBLE": "float64", "BFLOAT16": "bfloat16", "UINT8": "uint8",
          "INT8": "int8", "UINT16": "uint16", "INT16": "int16", "UINT32": "uint32", "INT32": "int32",
          "UINT64": "uint64", "INT64": "int64", "BOOL": "bool", "STRING": "object"}


@dataclass(frozen=True)
class HandoffModel:
    """A bundle ready to hand over: its graph I/O and, when one was chosen, the TensorRT plan to ship."""

    bundle: Bundle
    inputs: list[GraphIO]
    outputs: list[GraphIO]
    engine: EngineSpec | None = None

    @property
    def sidecar(self) -> Sidecar:
        return self.bundle.sidecar

    @property
    def engine_path(self) -> Path | None:
        return None if self.engine is None else self.bundle.root / self.engine.file

    @property
    def dynamic_batch(self) -> bool:
        """Every input and output has a dynamic first axis (what batching servers need)."""
        return all(len(t.dims) >= 1 and t.dims[0] is None for t in self.inputs + self.outputs)


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise dependency_error(exc, "onnx", "runtime", "to read the model's inputs and outputs") from exc
    return onnx


def read_graph_io(path: Path) -> tuple[list[GraphIO], list[GraphIO]]:
    """Inputs (initializers excluded) and outputs of the ONNX file, without loading its weights' data."""
    onnx = _onnx()
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends: the file is not an ONNX model
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{path}: not a valid ONNX model ({first})") from None
    graph = model.graph
    if not graph.output:
        raise UserError(f"{path}: not a valid ONNX model (the graph has no outputs)")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer):
        raise UserError(f"{path}: the model keeps its weights in external data files; hand-off copies one file: "
                        "save it as a single .onnx (onnx.save(model, path, save_as_external_data=False))")
    inits = {t.name for t in graph.initializer}

    def io(v: Any) -> GraphIO:
        tt = v.type.tensor_type
        dims = tuple(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None
                     for d in tt.shape.dim)
        return GraphIO(v.name, dims, onnx.TensorProto.DataType.Name(tt.elem_type))

    return [io(v) for v in graph.input if v.name not in inits], [io(v) for v in graph.output]


def _spec_shape(t: GraphIO) -> tuple[int | str, ...]:
    return tuple("?" if d is None else d for d in t.dims)


def pick_handoff_engine(bundle: Bundle, engine: str) -> EngineSpec:
    """The sidecar's engine named by ``engine``: its file (as listed, or its base name) or its device profile."""
    engines = bundle.sidecar.engines
    listed = ", ".join(f"{e.file} ({e.device_profile})" for e in engines) or "none"
    hits = [e for e in engines if engine in (e.file, Path(e.file).name)]
    if not hits:
        hits = [e for e in engines if e.device_profile == engine]
        if len(hits) > 1:
            raise UserError(f"--engine {engine}: the bundle has {len(hits)} engines for that profile "
                            f"({', '.join(e.file for e in hits)}); name one file")
    if not hits:
        raise UserError(f"--engine {engine}: not an engine of {bundle.root} (its sidecar lists: {listed}); "
                        "build one with `edgevision engine`")
    spec = hits[0]
    path = bundle.root / spec.file
    if not path.is_file() or path.stat().st_size == 0:
        raise UserError(f"{path}: engine file listed in the sidecar is missing or empty")
    return spec


def load_handoff(path: str | Path, engine: str | None = None) -> HandoffModel:
    """Open the bundle at ``path``, read and check its ONNX graph, and resolve ``engine`` (a plan to ship)."""
    bundle = load_bundle(path)
    inputs, outputs = read_graph_io(bundle.model_path)
    from edgevision.runtime.backends.base import TensorSpec

    check_model_io(bundle.sidecar, [TensorSpec(t.name, _spec_shape(t), t.numpy_dtype) for t in inputs],
                   [TensorSpec(t.name, _spec_shape(t), _NUMPY.get(t.dtype, t.dtype)) for t in outputs],
                   str(bundle.root))
    spec = pick_handoff_engine(bundle, engine) if engine is not None else None
    return HandoffModel(bundle, inputs, outputs, spec)


def labels_text(side: Sidecar) -> str:
    """One class name per line, in class-id order (what Triton's label files and nvinfer's labelfile-path read)."""
    bad = [n for n in side.class_names if "\n" in n or "\r" in n]
    if bad:
        raise UserError(f"class_names: {bad[0]!r} holds a line break; a labels file has one name per line")
    return "".join(f"{n}\n" for n in side.class_names)


def marker_text(command: str, model: HandoffModel, files: list[str]) -> str:
    side = model.sidecar
    return json.dumps({"command": command, "bundle": str(model.bundle.root.resolve()), "name": side.name,
                       "task": side.task, "output_layout": side.output.layout, "precision": side.precision,
                       "engine": None if model.engine is None else model.engine.file, "files": files},
                      indent=2) + "\n"


def preprocess_lines(side: Sidecar) -> list[str]:
    """How a client turns a frame into the model input (the runtime's ``preprocess`` does exactly this)."""
    spec = side.input
    resize = (f"letterbox to {spec.width}x{spec.height} (scale to fit keeping the aspect ratio, centre, pad with "
              f"{spec.pad_value})" if spec.letterbox else f"resize to {spec.width}x{spec.height} (no letterbox)")
    return [
        f"- input `{spec.name}`: {spec.dtype}, NCHW, shape {list(spec.shape)}, {spec.color.upper()} channel order",
        f"- {resize}",
        f"- per channel: `(pixel * {spec.scale:.10g} - mean) / std`, mean {spec.mean}, std {spec.std}",
    ]


def decode_lines(side: Sidecar) -> list[str]:
    """What the outputs hold and what the client must still do."""
    out, post = side.output, side.postprocess
    nc, nk = out.num_classes, out.num_keypoints
    if out.layout == "nms":
        lines = [
            "- output layout `nms`: NMS runs inside the graph (ONNX NonMaxSuppression, IoU threshold baked in); "
            f"outputs `{', '.join(out.names)}`:",
            "  `num_dets [B, 1]` int32 (valid rows), `boxes [B, M, 4]` x1,y1,x2,y2 in input pixels, "
            "`scores [B, M]` best first, `classes [B, M]` int32" + (f", `keypoints [B, M, {nk}, 3]` x, y, "
                                                                    "visibility" if nk else ""),
            f"- client: keep the first `num_dets` rows with score >= {post.conf}, then undo the letterbox "
            "(subtract the pad, divide by the scale)",
        ]
    else:
        kp = f" + 3 x {nk} keypoint values (x, y, visibility per keypoint)" if nk else ""
        lines = [
            f"- output layout `yolo` (raw head, no NMS): `{out.names[0]}` is `[B, 4 + {nc}{kp}, N]`: per anchor "
            "cx, cy, w, h in input pixels, then the class scores (already sigmoid)" + (kp and ", then keypoints"),
            f"- client: per anchor take the best class, keep scores above {post.conf}, convert to x1,y1,x2,y2, run NMS "
            f"(IoU {post.iou}, {'class-agnostic' if post.class_agnostic else 'per class'}), keep at most "
            f"{post.max_det}, then undo the letterbox (subtract the pad, divide by the scale)",
            "- `edgevision.runtime.postprocess.decode_yolo` does exactly this on the raw output array",
        ]
    return lines


def readable_dir(path: Path) -> None:
    """Give a temporary output directory (mkdtemp makes it 0o700) a plain directory's mode: a server in a
    container, running as another user, must read the model repository."""
    mode = new_file_mode()
    os.chmod(path, mode | ((mode & 0o444) >> 2))
