"""Static check that a Q/DQ ONNX is what TensorRT's explicit quantization accepts (8.5 -> 11).

Rules (TensorRT developer guide, "Explicit Quantization", and the ONNX parser's operator notes):
opset >= 13 (per-channel Q/DQ); every QuantizeLinear/DequantizeLinear in the default domain; INT8 data
(no UINT8, no INT32 bias dequantization); zero points present-or-absent but always 0; scales positive and
finite; per-tensor (scalar) scales for activations; per-channel weight scales along the output-channel
axis of the consuming op (0 for Conv/Gemm(transB) weights, 1 for ConvTranspose) with one scale per
channel; quantized weights within [-127, 127]; and no Q/DQ pair between a weighted layer and its
activation (``qdq_place.fusion_blockers``: TensorRT would run the activation as a separate kernel instead of
fusing conv + bias + activation). Hand-written: Polygraphy and onnx check structure, not
TensorRT's quantization rules; the check runs on every produced model and the build stops on a violation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from edgevision.runtime.errors import UserError

from .qdq_place import fusion_blockers

_QDQ = ("QuantizeLinear", "DequantizeLinear")
_WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 1, "Gemm": 0, "MatMul": 1}


@dataclass(frozen=True)
class QdqReport:
    q_nodes: int
    dq_nodes: int
    per_channel_weights: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return default


def check_qdq(model: onnx.ModelProto) -> QdqReport:
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    problems: list[str] = []
    if opset < 13:
        problems.append(f"opset {opset} < 13: per-channel Q/DQ needs opset 13")
    nq = ndq = per_channel = 0
    for n in graph.node:
        if n.op_type not in _QDQ:
            continue
        where = f"{n.op_type} {n.name or '(unnamed)'}"
        if n.domain not in ("", "ai.onnx"):
            problems.append(f"{where}: domain {n.domain!r} (TensorRT parses only the default-domain Q/DQ)")
            continue
        nq += n.op_type == "QuantizeLinear"
        ndq += n.op_type == "DequantizeLinear"
        scale = inits.get(n.input[1])
        if scale is None:
            problems.append(f"{where}: scale is not a constant initializer")
            continue
        s = numpy_helper.to_array(scale)
        if not np.all(np.isfinite(s)) or not np.all(s > 0):
            problems.append(f"{where}: scale must be positive and finite")
        zp = inits.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if zp is not None:
            if zp.data_type != TensorProto.INT8:
                kind = TensorProto.DataType.Name(zp.data_type)
                problems.append(f"{where}: zero point type {kind}, TensorRT needs INT8")
            elif np.any(numpy_helper.to_array(zp) != 0):
                problems.append(f"{where}: zero point must be 0 (TensorRT is symmetric)")
        data = inits.get(n.input[0])
        if n.op_type == "DequantizeLinear" and data is not None:  # a quantized weight
            if data.data_type != TensorProto.INT8:
                problems.append(f"{where}: dequantizes {TensorProto.DataType.Name(data.data_type)} "
                                "(TensorRT dequantizes INT8 only; keep biases in float)")
                continue
            w = numpy_helper.to_array(data)
            if w.size and int(w.min()) < -127:
                problems.append(f"{where}: weights use -128; TensorRT's weight range is [-127, 127]")
            if s.ndim == 1 and s.size > 1:
                per_channel += 1
                axis = _attr(n, "axis", 1)
                axis = axis + w.ndim if axis < 0 else axis
                users = consumers.get(n.output[0], [])
                for u in users:
                    want = _WEIGHT_AXIS.get(u.op_type)
                    if u.op_type == "Gemm" and _attr(u, "transB", 0) == 0:
                        want = 1
                    if want is not None and len(u.input) > 1 and u.input[1] == n.output[0] and axis != want:
                        problems.append(f"{where}: per-channel axis {axis}, {u.op_type} {u.name} needs axis {want}")
                if w.shape[axis] != s.size:
                    problems.append(f"{where}: {s.size} scales for {w.shape[axis]} channels on axis {axis}")
        elif s.size != 1:
            problems.append(f"{where}: activation scale must be per-tensor (got {s.size} values)")
    blockers = fusion_blockers(model)
    if blockers:
        problems.append(f"{len(blockers)} Q/DQ pair(s) between a layer and its activation block TensorRT's "
                        f"conv+bias+activation fusion (e.g. on {', '.join(blockers[:2])})")
    if nq + ndq == 0:
        problems.append("no QuantizeLinear/DequantizeLinear nodes: not an explicitly quantized model")
    return QdqReport(nq, ndq, per_channel, problems)


def require_tensorrt_qdq(path: Path) -> QdqReport:
    """Check ``path``; raise ``UserError`` listing the first problems if TensorRT would reject it."""
    report = check_qdq(onnx.load(str(path)))
    if not report.ok:
        more = f" (+{len(report.problems) - 3} more)" if len(report.problems) > 3 else ""
        raise UserError(f"{path}: not a TensorRT-compatible Q/DQ model: {'; '.join(report.problems[:3])}{more}")
    return report
