"""Append NMS to a ``yolo``-layout ONNX graph, giving the ``nms`` layout (DESIGN.md, "Output layouts").

For devices whose CPU is the bottleneck (a Jetson's small ARM cores), the detections should leave the model
already filtered: the graph runs the standard ONNX ``NonMaxSuppression`` (class-aware; ONNX Runtime runs it on
every provider and TensorRT >= 8.5 builds it into an ``INMSLayer``) and gathers its ``selected_indices`` into
the padded tensors of TensorRT's EfficientNMS convention (one label per anchor, its best class, exactly
as ``decode_yolo`` does) that ``runtime.postprocess.decode_nms`` reads:
``num_dets [B, 1]``, ``boxes [B, M, 4]`` xyxy in input pixels, ``scores [B, M]`` (best first), ``classes
[B, M]`` and, for pose, ``keypoints [B, M, K, 3]``; M is ``max_det``.

The thresholds are baked into the graph: ``iou`` is final, ``conf`` is a floor (the runtime still drops scores
below the sidecar's ``postprocess.conf``, so a low floor keeps evaluation at low confidence possible).

Hand-written graph surgery on purpose: exporters add NMS in framework code (Ultralytics' exporter in torch,
torchvision's ``nms`` symbolic per class), and neither gives these padded, class-aware outputs for an
already exported ONNX; the nodes here are plain opset-13 operators. Batch 1 only (a static first
dimension): the padding of several images' selections into one tensor is not worth its graph here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgevision.runtime.errors import UserError
from edgevision.runtime.postprocess import NMS_OUTPUT_NAMES

__all__ = ["NMS_KEYPOINTS_NAME", "NmsSettings", "append_nms", "nms_output_names"]

NMS_KEYPOINTS_NAME = "keypoints"


@dataclass(frozen=True)
class NmsSettings:
    """What the in-graph NMS keeps: score floor, IoU threshold (class-aware) and detections per image."""

    conf: float
    iou: float
    max_det: int


def nms_output_names(num_keypoints: int) -> list[str]:
    """The ``nms`` layout's output names, in ``decode_nms`` argument order."""
    return [*NMS_OUTPUT_NAMES, *([NMS_KEYPOINTS_NAME] if num_keypoints else [])]


def append_nms(model: onnx.ModelProto, *, num_classes: int, num_keypoints: int,
               settings: NmsSettings) -> onnx.ModelProto:
    """A copy of ``model`` (one ``yolo`` output ``[1, 4 + C + 3K, N]``) whose outputs are the ``nms`` layout."""
    if len(model.graph.output) != 1:
        raise UserError(f"in-graph NMS: expected one yolo output, the model has {len(model.graph.output)}")
    out = model.graph.output[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in out.type.tensor_type.shape.dim]
    rows = 4 + num_classes + 3 * num_keypoints
    if len(dims) != 3 or dims[0] != 1 or dims[1] != rows:
        raise UserError(f"in-graph NMS: output {out.name!r} has shape {dims}, expected [1, {rows}, N] "
                        "(yolo layout, static batch 1: set export.dynamic_batch false)")
    if not any(o.domain in ("", "ai.onnx") and o.version >= 13 for o in model.opset_import):
        raise UserError("in-graph NMS needs ONNX opset >= 13 (export.opset)")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    nc, nk, s = num_classes, num_keypoints, settings
    consts: dict[str, np.ndarray] = {
        "nms_c0": np.array([0], np.int64), "nms_c1": np.array([1], np.int64), "nms_c2": np.array([2], np.int64),
        "nms_c4": np.array([4], np.int64), "nms_cls_end": np.array([4 + nc], np.int64),
        "nms_rows": np.array([rows], np.int64), "nms_half": np.array(0.5, np.float32),
        "nms_max_det": np.array([s.max_det], np.int64), "nms_iou": np.array([s.iou], np.float32),
        "nms_conf": np.array([s.conf], np.float32), "nms_zero2": np.array([0, 0], np.int64),
        "nms_zero1": np.array([0], np.int64), "nms_det_shape": np.array([1, 1], np.int64),
        "nms_kp_shape": np.array([1, s.max_det, nk, 3], np.int64),
    }
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    node = helper.make_node
    nodes = [
        node("Transpose", [out.name], ["nms_t"], perm=[0, 2, 1]),  # [1, N, rows]
        node("Squeeze", ["nms_t", "nms_c0"], ["nms_rows_n"]),  # [N, rows]
        node("Slice", ["nms_rows_n", "nms_c0", "nms_c2", "nms_c1"], ["nms_cxy"]),
        node("Slice", ["nms_rows_n", "nms_c2", "nms_c4", "nms_c1"], ["nms_wh"]),
        node("Mul", ["nms_wh", "nms_half"], ["nms_half_wh"]),
        node("Sub", ["nms_cxy", "nms_half_wh"], ["nms_xy1"]),
        node("Add", ["nms_cxy", "nms_half_wh"], ["nms_xy2"]),
        node("Concat", ["nms_xy1", "nms_xy2"], ["nms_xyxy"], axis=1),  # [N, 4]
        node("Unsqueeze", ["nms_xyxy", "nms_c0"], ["nms_boxes_in"]),  # [1, N, 4]
        node("Slice", ["nms_t", "nms_c4", "nms_cls_end", "nms_c2"], ["nms_cls_nc"]),  # [1, N, C]
        # one label per anchor, as the runtime's yolo decoding: only each anchor's best class enters NMS
        node("ReduceMax", ["nms_cls_nc"], ["nms_best"], axes=[2], keepdims=1),  # [1, N, 1]
        node("Equal", ["nms_cls_nc", "nms_best"], ["nms_is_best"]),
        node("Cast", ["nms_is_best"], ["nms_best_mask"], to=TensorProto.FLOAT),
        node("Mul", ["nms_cls_nc", "nms_best_mask"], ["nms_cls_best"]),
        node("Transpose", ["nms_cls_best"], ["nms_scores_in"], perm=[0, 2, 1]),  # [1, C, N]
        node("NonMaxSuppression", ["nms_boxes_in", "nms_scores_in", "nms_max_det", "nms_iou", "nms_conf"],
             ["nms_sel"]),  # [S, 3]: (batch, class, box)
        node("GatherND", ["nms_scores_in", "nms_sel"], ["nms_sel_scores"]),  # [S]
        node("Gather", ["nms_sel", "nms_c1"], ["nms_sel_cls2"], axis=1),  # [S, 1]
        node("Gather", ["nms_sel", "nms_c2"], ["nms_sel_box2"], axis=1),
        node("Squeeze", ["nms_sel_cls2", "nms_c1"], ["nms_sel_cls"]),  # [S]
        node("Squeeze", ["nms_sel_box2", "nms_c1"], ["nms_sel_box"]),
        node("Shape", ["nms_sel_scores"], ["nms_s"]),
        node("Min", ["nms_s", "nms_max_det"], ["nms_k"]),
        node("TopK", ["nms_sel_scores", "nms_k"], ["nms_top_scores", "nms_top"], axis=0, largest=1, sorted=1),
        node("Gather", ["nms_sel_box", "nms_top"], ["nms_box_idx"]),  # anchor of each kept detection
        node("Gather", ["nms_sel_cls", "nms_top"], ["nms_top_cls"]),
        node("Gather", ["nms_xyxy", "nms_box_idx"], ["nms_top_boxes"]),  # [k, 4]
        node("Sub", ["nms_max_det", "nms_k"], ["nms_pad"]),  # rows of padding up to M
        node("Concat", ["nms_zero1", "nms_pad"], ["nms_pads_1d"], axis=0),
        node("Concat", ["nms_zero2", "nms_pad", "nms_zero1"], ["nms_pads_2d"], axis=0),
        node("Pad", ["nms_top_boxes", "nms_pads_2d"], ["nms_boxes_m"]),
        node("Pad", ["nms_top_scores", "nms_pads_1d"], ["nms_scores_m"]),
        node("Cast", ["nms_top_cls"], ["nms_cls_i32"], to=TensorProto.INT32),
        node("Pad", ["nms_cls_i32", "nms_pads_1d"], ["nms_cls_m"]),
        node("Unsqueeze", ["nms_boxes_m", "nms_c0"], [NMS_OUTPUT_NAMES[1]]),
        node("Unsqueeze", ["nms_scores_m", "nms_c0"], [NMS_OUTPUT_NAMES[2]]),
        node("Unsqueeze", ["nms_cls_m", "nms_c0"], [NMS_OUTPUT_NAMES[3]]),
        node("Cast", ["nms_k"], ["nms_k_i32"], to=TensorProto.INT32),
        node("Reshape", ["nms_k_i32", "nms_det_shape"], [NMS_OUTPUT_NAMES[0]]),
    ]
    outputs = [
        helper.make_tensor_value_info(NMS_OUTPUT_NAMES[0], TensorProto.INT32, [1, 1]),
        helper.make_tensor_value_info(NMS_OUTPUT_NAMES[1], TensorProto.FLOAT, [1, s.max_det, 4]),
        helper.make_tensor_value_info(NMS_OUTPUT_NAMES[2], TensorProto.FLOAT, [1, s.max_det]),
        helper.make_tensor_value_info(NMS_OUTPUT_NAMES[3], TensorProto.INT32, [1, s.max_det]),
    ]
    if nk:
        nodes += [
            node("Slice", ["nms_rows_n", "nms_cls_end", "nms_rows", "nms_c1"], ["nms_kp_all"]),  # [N, 3K]
            node("Gather", ["nms_kp_all", "nms_box_idx"], ["nms_top_kp"]),
            node("Pad", ["nms_top_kp", "nms_pads_2d"], ["nms_kp_m"]),
            node("Reshape", ["nms_kp_m", "nms_kp_shape"], [NMS_KEYPOINTS_NAME]),
        ]
        outputs.append(helper.make_tensor_value_info(NMS_KEYPOINTS_NAME, TensorProto.FLOAT, [1, s.max_det, nk, 3]))
    g.node.extend(nodes)
    del g.output[:]
    g.output.extend(outputs)
    onnx.checker.check_model(m)
    return m
