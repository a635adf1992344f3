"""FP16 ONNX variant for TensorRT 11's strongly typed builds (and FP16-capable ONNX Runtime providers).

``onnxruntime.transformers.float16.convert_float_to_float16`` (the maintained copy of onnxconverter-common's
converter) does the conversion with ``keep_io_types=True``: the graph input and output stay float32, so the
runtime's preprocessing and decoding are unchanged, and casts sit at the edges. Parity against the FP32
model is checked on real preprocessed images through the runtime's ONNX Runtime backend.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgevision.runtime.backends.onnxruntime import OrtBackend
from edgevision.runtime.compare import anchors_above, compare_arrays
from edgevision.runtime.fsutil import atomic_write_bytes


def convert_fp16(src: Path, dst: Path) -> dict[str, Any]:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        half = convert_float_to_float16(model, keep_io_types=True)
    _drop_duplicate_nodes(half.graph)
    _topological_sort(half.graph)  # the converter appends its input casts at the end
    onnx.checker.check_model(half)
    atomic_write_bytes(dst, half.SerializeToString())
    return {"nodes": len(half.graph.node), "size_bytes": dst.stat().st_size}


def output_parity(reference: Path, candidate: Path, feeds: list[np.ndarray], input_name: str,
                  min_score: float = 0.25) -> dict[str, float]:
    """Max abs error of the box channels (pixels) and of the score/keypoint channels, over the anchors the
    reference model scores above ``min_score`` (the ones that become detections), by the runtime's comparator."""
    box = rest = 0.0
    with OrtBackend(reference, providers=["CPUExecutionProvider"]) as ref, \
            OrtBackend(candidate, providers=["CPUExecutionProvider"]) as cand:
        for x in feeds:
            a = next(iter(ref.infer({input_name: x}).values()))[0].astype(np.float64)  # [4 + C (+3K), N]
            b = next(iter(cand.infer({input_name: x}).values()))[0].astype(np.float64)
            keep = anchors_above(a, min_score)
            if not keep.any():
                continue
            box = max(box, compare_arrays(b[:4, keep], a[:4, keep], atol=0, rtol=0).max_abs_err)
            if a.shape[0] > 4:
                rest = max(rest, compare_arrays(b[4:, keep], a[4:, keep], atol=0, rtol=0).max_abs_err)
    return {"max_abs_err_box_px": round(box, 5), "max_abs_err_scores": round(rest, 5), "samples": len(feeds)}


def _drop_duplicate_nodes(graph: onnx.GraphProto) -> None:
    """Keep one of each set of identical nodes that write the same output.

    onnxruntime < 1.32's converter adds one ``<name>_cast_to_fp32`` Cast per consumer of a value that
    feeds several float-only inputs (e.g. one Resize scales constant shared by two upsamplers): same node,
    same output name, twice, which breaks SSA. Identical copies compute the same value, so one stays. Two
    *different* nodes writing one name would be a real error and are left for the checker to report."""
    seen: dict[str, bytes] = {}
    kept: list[onnx.NodeProto] = []
    for node in graph.node:
        body = node.SerializeToString(deterministic=True)
        if node.output and all(seen.get(o) == body for o in node.output):
            continue
        seen.update({o: body for o in node.output})
        kept.append(node)
    if len(kept) != len(graph.node):
        del graph.node[:]
        graph.node.extend(kept)
        infos = {v.name: v for v in graph.value_info}  # the converter repeats their value_info too
        del graph.value_info[:]
        graph.value_info.extend(infos.values())


def _topological_sort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` so every node follows the producers of its inputs (stable otherwise)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        rest = []
        for node in pending:
            if all(i in available for i in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError(f"graph has a cycle or a missing input at node {rest[0].name!r}")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)
