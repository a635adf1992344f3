"""`edgevision export-deepstream BUNDLE --out DIR`: a bundle as a DeepStream ``nvinfer`` (Gst-nvinfer) primary
detector: ``config_infer_primary.txt``, ``labels.txt``, the model file (``model.onnx``, and the plan when
``--engine`` names one) and a ``README.md``. DIR is written whole or not at all (``fsutil.atomic_dir``).

Keys and values are those of NVIDIA's nvinfer configuration (the key names of gstnvinfer_property_parser.h and
the DeepStream sample ``config_infer_primary.txt``; the tests list the documented keys):

- preprocessing: nvinfer computes ``y = net-scale-factor * (x - offsets[c])`` on 0..255 pixels; the sidecar's
  ``(x * scale - mean[c]) / std`` is that with ``net-scale-factor = scale / std`` and ``offsets = mean / scale``
  when ``std`` is one value for all channels (nvinfer has one scale factor: per-channel std is refused);
  ``model-color-format`` 0 RGB, 1 BGR; ``maintain-aspect-ratio=1`` + ``symmetric-padding=1`` is the letterbox.
- ``network-mode`` 0 FP32, 1 INT8, 2 FP16 (the sample's comment) from the bundle's precision (the engine's when
  one is shipped); ``network-type=0`` detector; ``cluster-mode`` 2 (NMS) for the raw ``yolo`` head, 4 (none)
  for the ``nms`` layout, whose graph already ran NMS; ``[class-attrs-all]`` ``pre-cluster-threshold``,
  ``nms-iou-threshold`` and ``topk`` from the sidecar's postprocess.
- Relative paths in the file are resolved against the file's own folder (nvinfer's ``get_absolute_file_path``),
  so the folder can be moved as a whole.

No stock nvinfer parser reads either layout: the file says which custom bbox parser each needs (see
``_PARSER_NOTES``; the README repeats it). Hand-written text: the format is a GLib key file, three groups.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from edgevision.runtime.errors import UserError
from edgevision.runtime.fsutil import atomic_dir, atomic_write_text, check_out_dir

from .handoff import (
    MARKER,
    HandoffModel,
    decode_lines,
    labels_text,
    load_handoff,
    marker_text,
    preprocess_lines,
    readable_dir,
)

__all__ = ["CONFIG_NAME", "NETWORK_MODE", "export_deepstream", "nvinfer_config"]

CONFIG_NAME = "config_infer_primary.txt"
NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}
CLUSTER_NMS, CLUSTER_NONE = 2, 4

# What each layout needs from DeepStream (checked against the sources named here; see the README section).
_PARSER_NOTES = {
    "yolo": [
        "The output is the raw YOLO head [B, 4 + classes (+ 3 x keypoints), anchors]: nvinfer's built-in detector",
        "parser does not read it. Set parse-bbox-func-name + custom-lib-path to a custom bbox parser for this",
        "layout. The usual source is DeepStream-Yolo (github.com/marcoslucianops/DeepStream-Yolo): its",
        "NvDsInferParseYolo in libnvdsinfer_custom_impl_Yolo.so reads the [B, anchors, 6] tensor that ITS OWN",
        "export script appends to an Ultralytics head (boxes, score, label), not this raw head: re-export with",
        "that script, or write a parser for this layout (cx, cy, w, h in input pixels, then sigmoid class scores).",
    ],
    "nms": [
        "The output is the nms layout, NMS already in the graph: num_dets [B,1] int32, boxes [B,M,4] x1,y1,x2,y2",
        "in network pixels, scores [B,M], classes [B,M] int32, in this order: the four outputs an",
        "NvDsInferParseCustomEfficientNMS-style parser reads (community YOLOv7-on-DeepStream guides add that",
        "function to DeepStream's nvdsinfer_customparser sources and rebuild libnvds_infercustomparser.so; the",
        "stock library of DeepStream 6.1 does not have it). It takes exactly four outputs, so a pose bundle's",
        "fifth (keypoints) output needs a parser of its own.",
    ],
}


def _fmt(x: float) -> str:
    return f"{x:.10g}"


def normalisation(model: HandoffModel) -> tuple[float, list[float]]:
    """(net-scale-factor, offsets) reproducing the sidecar's normalisation, else a ``UserError``."""
    spec = model.sidecar.input
    if len(set(spec.std)) != 1:
        raise UserError(f"{model.bundle.root}: input.std {spec.std} differs per channel; nvinfer has one "
                        "net-scale-factor for all channels, so this model's normalisation cannot be expressed")
    return spec.scale / spec.std[0], [m / spec.scale for m in spec.mean]


def nvinfer_config(model: HandoffModel, *, model_file: str, engine_file: str | None = None,
                   batch_size: int | None = None, gpu_id: int = 0) -> str:
    """The ``[property]`` / ``[class-attrs-all]`` key file for ``model`` (see the module docstring)."""
    side = model.sidecar
    spec, post = side.input, side.postprocess
    batch = spec.shape[0]
    if isinstance(batch, int):
        if batch_size is not None and batch_size != batch:
            raise UserError(f"--batch-size {batch_size}: the model has a fixed batch of {batch}; export with "
                            "--dynamic-batch for another")
        batch_size = batch
    batch_size = batch_size or 1
    scale, offsets = normalisation(model)
    precision = model.engine.precision if model.engine is not None else side.precision
    nms = side.output.layout == "nms"
    lines = [
        f"# nvinfer (Gst-nvinfer) config written by edgevision export-deepstream from bundle {side.name!r}",
        f"# ({side.task}, {side.output.num_classes} classes, output layout {side.output.layout!r}, precision "
        f"{precision}). Paths are relative to this file's folder. See README.md.",
        "#",
        *[f"# {line}" for line in _PARSER_NOTES[side.output.layout]],
    ]
    if side.task == "pose":
        lines += ["#", "# Pose: nvinfer's detector output carries boxes only; the keypoints need the parser (or a",
                  "# probe reading output-tensor-meta) to attach them."]
    if precision == "int8" and engine_file is None:
        lines += ["#", "# INT8: NVIDIA's sample lists int8-calib-file as mandatory in INT8 mode without an engine",
                  "# file; this bundle's INT8 is explicit Q/DQ in the ONNX and has no calibration cache: if nvinfer",
                  "# asks for one, ship the bundle's TensorRT plan instead (export-deepstream --engine)."]
    lines += [
        "",
        "[property]",
        f"gpu-id={gpu_id}",
        f"net-scale-factor={_fmt(scale)}",
        f"offsets={';'.join(_fmt(o) for o in offsets)}",
        f"model-color-format={0 if spec.color == 'rgb' else 1}",
        f"onnx-file={model_file}",
    ]
    if engine_file is not None:
        lines.append(f"model-engine-file={engine_file}")
    lines += [
        "labelfile-path=labels.txt",
        f"batch-size={batch_size}",
        "## 0=FP32, 1=INT8, 2=FP16",
        f"network-mode={NETWORK_MODE[precision]}",
        f"num-detected-classes={side.output.num_classes}",
        f"output-blob-names={';'.join(side.output.names)}",
        "interval=0",
        "gie-unique-id=1",
        "process-mode=1",
        "network-type=0",
        f"maintain-aspect-ratio={1 if spec.letterbox else 0}",
        f"symmetric-padding={1 if spec.letterbox else 0}",
        "## 2=NMS, 4=none (the nms layout already ran NMS in the graph)",
        f"cluster-mode={CLUSTER_NONE if nms else CLUSTER_NMS}",
        "## set both to your custom bbox parser (see the note at the top):",
        "#parse-bbox-func-name=" + ("NvDsInferParseCustomEfficientNMS" if nms else "NvDsInferParseYolo"),
        "#custom-lib-path=/path/to/the/parser/library.so",
        "",
        "[class-attrs-all]",
        f"pre-cluster-threshold={_fmt(post.conf)}",
        f"nms-iou-threshold={_fmt(post.iou)}",
        f"topk={post.max_det}",
        "",
    ]
    return "\n".join(lines)


def _readme(model: HandoffModel, config: str) -> str:
    side = model.sidecar
    return "\n".join([
        f"# {side.name}: DeepStream nvinfer config written by `edgevision export-deepstream`",
        "",
        f"Use `{CONFIG_NAME}` as the `config-file-path` of an `nvinfer` element (or a deepstream-app "
        "`[primary-gie]`). `labels.txt` holds one class name per line in class-id order.",
        "",
        "## Bounding-box parser (required)",
        *_PARSER_NOTES[side.output.layout],
        "",
        "## What the model expects (for checking the config)",
        *preprocess_lines(side),
        "- nvinfer pads the letterbox with its own value; edgevision pads with "
        f"{side.input.pad_value}, so scores can differ slightly near the borders",
        "",
        "## Outputs",
        *decode_lines(side),
        "",
        f"## {CONFIG_NAME}",
        "```ini",
        config.rstrip("\n"),
        "```",
        "",
        "Not run here: the file was checked against nvinfer's documented keys; DeepStream was not started.",
        "",
    ])


def export_deepstream(bundle: str | Path, out: Path, *, engine: str | None = None, batch_size: int | None = None,
                      gpu_id: int = 0, force: bool = False) -> Path:
    """Write ``out`` (see the module docstring). ``force`` replaces a non-empty directory that is not a previous
    export-deepstream output."""
    check_out_dir(out, force=force, marker=MARKER, what="a folder written by edgevision export-deepstream")
    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch-size {batch_size}: must be >= 1")
    model = load_handoff(bundle, engine)
    model_file = "model.onnx"
    engine_file = Path(model.engine.file).name if model.engine is not None else None
    if engine_file == model_file:
        engine_file = "model.plan"
    config = nvinfer_config(model, model_file=model_file, engine_file=engine_file, batch_size=batch_size,
                            gpu_id=gpu_id)
    files = [CONFIG_NAME, "labels.txt", model_file, *([engine_file] if engine_file else []), "README.md", MARKER]
    with atomic_dir(out) as d:
        readable_dir(d)
        copies = [(model.bundle.model_path, d / model_file)]
        if engine_file is not None and model.engine_path is not None:
            copies.append((model.engine_path, d / engine_file))
        for src, dst in copies:
            try:
                shutil.copyfile(src, dst)
            except OSError as exc:
                raise UserError(f"{src}: cannot copy ({exc.strerror or exc})") from None
        atomic_write_text(d / CONFIG_NAME, config)
        atomic_write_text(d / "labels.txt", labels_text(model.sidecar))
        atomic_write_text(d / "README.md", _readme(model, config))
        atomic_write_text(d / MARKER, marker_text("export-deepstream", model, files))
    return out
