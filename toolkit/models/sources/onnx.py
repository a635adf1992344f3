"""``onnx:`` source: an ONNX file exported elsewhere (Ultralytics, another framework) as the FP32 model.

There is no torch model: the build skips training and export and takes the file as the ``fp32`` variant;
INT8 PTQ, FP16, evaluation, ONNX Runtime benchmarks and TensorRT engines work on it directly, and prune /
distill / QAT are refused before any stage runs (``sources.check_steps``). What the file is comes from its
``metadata_props`` as Ultralytics writes them (``names``, ``imgsz``, ``task``, ``kpt_shape``), read by the
runtime's own ``onnx_meta`` (the same rules as ``edgevision run model.onnx``), and from its tensor shapes.
Preprocessing is the Ultralytics/edgevision default (RGB, x/255, letterbox pad 114).

The adopted copy gets the toolkit's tensor names (``images`` -> ``output0``) when the file uses others, so
every later stage (calibration, bundle, bench) addresses it the same way as an exported model. MACs and
parameters for the manifest are counted from the graph (:func:`count_macs`): Conv / ConvTranspose / Gemm /
MatMul multiply-accumulates at batch 1 from ONNX shape inference, as Torch-Pruning's counter does for the
torch models' convs (elementwise ops are not counted by either). Hand-written: no maintained ONNX FLOP
counter is in the toolkit's dependencies.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevision.runtime.errors import UserError
from edgevision.runtime.fsutil import atomic_write_bytes, sha256_file

from .base import Contract, ModelSource, SourceInfo

if TYPE_CHECKING:
    import onnx as onnx_pb

    from ...recipe import Recipe

INPUT_NAME, OUTPUT_NAME = "images", "output0"  # stages.export's names (imported lazily there: torch)


class OnnxSource(ModelSource):
    kind = "onnx"

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.path = Path(str(recipe.model.onnx))
        self._info: SourceInfo | None = None

    def describe(self) -> SourceInfo:
        if self._info is not None:
            return self._info
        from edgevision.runtime.onnx_meta import read_onnx_info, sidecar_from_onnx

        if not self.path.is_file():
            raise UserError(f"model.onnx: {self.path}: file not found")
        info = read_onnx_info(self.path)  # not ONNX -> one line
        outs = ", ".join(f"{o.name} {list(o.shape)}" for o in info.outputs)
        if len(info.outputs) != 1 or len(info.outputs[0].shape) != 3 or info.outputs[0].dtype != "float32":
            raise UserError(f"model.onnx: {self.path}: outputs {outs} fit no layout edgevision builds on; expected "
                            "one float32 yolo output [B, 4 + C (+3K), N] (raw head, no NMS)")
        explicit = "input_size" in self.recipe.model_fields_set
        meta = info.metadata
        task = None if "task" in meta or "task" not in self.recipe.model_fields_set else self.recipe.task
        side = sidecar_from_onnx(info, imgsz=self.recipe.input_size if explicit else None, task=task)
        inp = info.inputs[0]
        if inp.dtype != "float32":
            raise UserError(f"model.onnx: {self.path}: input {inp.name!r} is {inp.dtype}; INT8 calibration and "
                            "FP16 conversion start from a float32 model")
        h, w = int(side.input.shape[2]), int(side.input.shape[3])
        fixed = [d for d in inp.shape[2:] if isinstance(d, int)]
        if explicit and fixed and fixed != [self.recipe.input_size] * 2:
            raise UserError(f"input_size: {self.recipe.input_size}, but {self.path} has a fixed "
                            f"{inp.shape[2]}x{inp.shape[3]} input")
        if h != w:
            raise UserError(f"model.onnx: {self.path}: input {h}x{w} is not square; edgevision builds square inputs")
        contract = Contract(input_size=h, mean=tuple(side.input.mean), std=tuple(side.input.std),  # type: ignore[arg-type]
                            rgb=side.input.color == "rgb", pad_value=side.input.pad_value,
                            strides=tuple(side.output.strides), output_layout="yolo")
        self._info = SourceInfo(
            kind=self.kind, task=side.task, contract=contract, fingerprint=sha256_file(self.path),
            class_names=list(side.class_names) if "names" in meta else None,
            num_keypoints=side.output.num_keypoints, has_torch=False, has_loss=False, has_head_protocol=False,
            extra={"path": str(self.path), "channels": info.outputs[0].shape[1],
                   "metadata": {k: meta[k] for k in ("author", "version", "task", "imgsz") if k in meta}},
        )
        return self._info

    def onnx_file(self) -> Path | None:
        return self.path


def check_channels(info: SourceInfo, path: Path, num_classes: int, num_keypoints: int) -> None:
    """The output's channels against the dataset's classes (+ keypoints): ``4 + C + 3K``."""
    ch = info.extra.get("channels")
    want = 4 + num_classes + 3 * num_keypoints
    if isinstance(ch, int) and ch != want:
        what = f"4 + {num_classes} classes" + (f" + 3x{num_keypoints} keypoints" if num_keypoints else "")
        raise UserError(f"model.onnx: {path}: output has {ch} channels but the dataset's {what} need {want}")


def adopt_onnx(src: Path, dst: Path) -> dict[str, Any]:
    """Copy ``src`` to ``dst`` with the toolkit's I/O names; returns the export-like record."""
    import onnx

    model = onnx.load(str(src))
    renames = {model.graph.input[0].name: INPUT_NAME, model.graph.output[0].name: OUTPUT_NAME}
    renames = {a: b for a, b in renames.items() if a != b}
    if renames:
        _rename(model, renames)
        onnx.checker.check_model(model)
        atomic_write_bytes(dst, model.SerializeToString())
    else:
        shutil.copyfile(src, dst)
    macs, params = count_macs(model)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return {"opset": int(opset), "dynamic_batch": not dims[0].HasField("dim_value"), "simplified": False,
            "nodes_before": len(model.graph.node), "nodes_after": len(model.graph.node), "parity": {},
            "macs": macs, "params": params, "onnx_sha256": sha256_file(dst), "source": str(src),
            "renamed": renames}


def _rename(model: onnx_pb.ModelProto, renames: dict[str, str]) -> None:
    g = model.graph
    for v in (*g.input, *g.output, *g.value_info):
        v.name = renames.get(v.name, v.name)
    for n in g.node:
        for i, name in enumerate(n.input):
            n.input[i] = renames.get(name, name)
        for i, name in enumerate(n.output):
            n.output[i] = renames.get(name, name)


def count_macs(model: onnx_pb.ModelProto) -> tuple[int, int]:
    """(multiply-accumulates of Conv/ConvTranspose/Gemm/MatMul at batch 1, float parameters)."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for d in m.graph.input[0].type.tensor_type.shape.dim[:1]:
        d.Clear()
        d.dim_value = 1
    with contextlib.suppress(Exception):  # a graph onnx cannot infer: only what has static shapes counts
        m = onnx.shape_inference.infer_shapes(m)
    shapes: dict[str, list[int]] = {}
    for v in (*m.graph.input, *m.graph.output, *m.graph.value_info):
        dims = v.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[v.name] = [int(d.dim_value) for d in dims]
    inits = {i.name: i for i in m.graph.initializer}
    for i in inits.values():
        shapes[i.name] = [int(d) for d in i.dims]
    macs = 0
    for n in m.graph.node:
        if n.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul") or len(n.input) < 2:
            continue
        w, out = shapes.get(n.input[1]), shapes.get(n.output[0])
        if w is None or out is None:
            continue
        if n.op_type == "Conv":
            macs += int(np.prod(out)) * int(np.prod(w[1:]))
        elif n.op_type == "ConvTranspose":
            x = shapes.get(n.input[0])
            macs += int(np.prod(x)) * int(np.prod(w[1:])) if x else 0
        else:
            a = shapes.get(n.input[0])
            k = a[-1] if a else (w[0] if n.op_type == "MatMul" else w[-1])
            macs += int(np.prod(out)) * int(k)
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
    params = sum(int(np.prod(i.dims)) for i in inits.values() if i.data_type in floats)
    return macs, params
