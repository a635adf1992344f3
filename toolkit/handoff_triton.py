"""`edgevision export-triton BUNDLE --out REPO`: a bundle as one model of a Triton Inference Server repository.

Writes ``REPO/<name>/`` (and nothing else in REPO, which may hold other models): ``config.pbtxt``,
``1/model.onnx`` (platform ``onnxruntime_onnx``) or ``1/model.plan`` (``tensorrt_plan``, one of the bundle's
plain TensorRT plans, chosen with ``--engine``), ``labels.txt`` and a ``README.md`` naming the preprocessing and
the output decode the client does. The model directory is written whole or not at all (``fsutil.atomic_dir``).

The config follows Triton's model-configuration documentation (docs/user_guide/model_configuration.md and
batcher.md of triton-inference-server/server), and the tests parse it with the real ``ModelConfig`` message:

- ``max_batch_size`` > 0 only when every input and output has a dynamic first axis ("If the model's batch
  dimension is the first dimension, and all inputs and outputs to the model have this batch dimension");
  then ``dims`` leave the batch out (the full shape is ``[-1] + dims``), else ``max_batch_size: 0`` and
  ``dims`` are the full shape; other dynamic axes are ``-1``.
- ``dynamic_batching`` only when batching is possible; no ``preferred_batch_size`` by default, as the batcher
  guide advises for most models; ``--queue-delay-us`` sets ``max_queue_delay_microseconds``.
- The ``nms`` layout (NMS inside the graph, ``toolkit.nms_graph``) is a static batch of 1: ``max_batch_size: 0``.

Hand-written text, not ``google.protobuf.text_format`` over tritonclient's generated message: the runtime side
(Python 3.8 on a Jetson) must not need tritonclient (Python >= 3.9) or protobuf's generated code; the tests
do the parsing instead.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from edgevision.runtime.errors import UserError
from edgevision.runtime.fsutil import atomic_dir, atomic_write_text, check_out_dir

from .handoff import (
    MARKER,
    GraphIO,
    HandoffModel,
    decode_lines,
    labels_text,
    load_handoff,
    marker_text,
    preprocess_lines,
    readable_dir,
)

__all__ = ["TRITON_TYPES", "export_triton", "triton_config"]

#: ONNX element type name -> Triton DataType enum name (model_config.proto's DataType)
TRITON_TYPES = {"BOOL": "TYPE_BOOL", "UINT8": "TYPE_UINT8", "UINT16": "TYPE_UINT16", "UINT32": "TYPE_UINT32",
                "UINT64": "TYPE_UINT64", "INT8": "TYPE_INT8", "INT16": "TYPE_INT16", "INT32": "TYPE_INT32",
                "INT64": "TYPE_INT64", "FLOAT16": "TYPE_FP16", "FLOAT": "TYPE_FP32", "DOUBLE": "TYPE_FP64",
                "STRING": "TYPE_STRING", "BFLOAT16": "TYPE_BF16"}
DEFAULT_MAX_BATCH = 8
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tensor(t: GraphIO, batched: bool, what: str) -> str:
    dtype = TRITON_TYPES.get(t.dtype)
    if dtype is None:
        raise UserError(f"{what} {t.name!r}: element type {t.dtype} has no Triton data type")
    dims = t.dims[1:] if batched else t.dims
    if not dims:  # a scalar per batch item: Triton wants at least one dimension
        dims = (1,)
    dims_text = ", ".join(str(-1 if d is None else d) for d in dims)
    return f"  {{\n    name: {_quote(t.name)}\n    data_type: {dtype}\n    dims: [ {dims_text} ]\n  }}"


def max_batch_for(model: HandoffModel, requested: int | None) -> int:
    """``max_batch_size``: 0 for a model without a dynamic batch axis; else ``requested`` or the default (for a
    TensorRT plan: its device profile's ``max_batch``, the optimisation profile `edgevision engine` builds
    without ``--dynamic-batch``; 1 for a DLA plan). The sidecar does not record a plan's profile, so a plan
    built with another range needs ``--max-batch`` (at most that range's maximum)."""
    if not model.dynamic_batch:
        if requested is not None:
            batch = model.inputs[0].dims[0] if model.inputs and model.inputs[0].dims else "?"
            raise UserError(f"--max-batch {requested}: the model has a fixed batch of {batch} (Triton needs a dynamic "
                            "first axis on every input and output to batch); export with --dynamic-batch")
        return 0
    if requested is not None:
        return requested
    if model.engine is not None and model.engine.dla_core is not None:
        return 1  # a DLA plan has static shapes: `edgevision engine --dla` fixes the batch at 1 unless told
    if model.engine is not None:
        from .devices import load_profile

        try:
            return int(load_profile(model.engine.device_profile).max_batch)
        except UserError:
            return DEFAULT_MAX_BATCH
    return DEFAULT_MAX_BATCH


def triton_config(model: HandoffModel, name: str, *, max_batch: int | None = None, instances: int = 1,
                  kind: str = "gpu", queue_delay_us: int = 0) -> str:
    """The ``config.pbtxt`` text for ``model`` (see the module docstring for the rules)."""
    plan = model.engine is not None
    if plan and kind != "gpu":
        raise UserError("--kind cpu: a TensorRT plan runs on the GPU only; drop --engine to serve the ONNX on CPU")
    mbs = max_batch_for(model, max_batch)
    batched = mbs > 0
    side = model.sidecar
    lines = [
        f"# written by edgevision export-triton from bundle {side.name!r} ({side.task}, output layout "
        f"{side.output.layout!r}, precision {side.precision}); see README.md for the client's pre/postprocessing",
        f"name: {_quote(name)}",
        f"platform: {_quote('tensorrt_plan' if plan else 'onnxruntime_onnx')}",
        f"max_batch_size: {mbs}",
        "input [",
        ",\n".join(_tensor(t, batched, "input") for t in model.inputs),
        "]",
        "output [",
        ",\n".join(_tensor(t, batched, "output") for t in model.outputs),
        "]",
    ]
    if batched:
        lines.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {queue_delay_us}\n}}"
                     if queue_delay_us else "dynamic_batching { }")
    lines.append(f"instance_group [\n  {{\n    count: {instances}\n    kind: KIND_{kind.upper()}\n  }}\n]")
    return "\n".join(lines) + "\n"


def _readme(model: HandoffModel, name: str, config: str, max_batch: int) -> str:
    side = model.sidecar
    plan = model.engine
    served = (f"`1/model.plan`: the bundle's TensorRT plan `{plan.file}` (TensorRT {plan.tensorrt_version}, "
              f"SM {plan.gpu_sm}, {plan.precision}); it loads only on that GPU architecture and TensorRT release"
              + ("; `max_batch_size` must not exceed the plan's optimisation-profile maximum" if max_batch else "")
              if plan is not None else "`1/model.onnx` on Triton's ONNX Runtime backend")
    batching = (f"dynamic batching up to {max_batch} requests per call" if max_batch
                else "no batching (`max_batch_size: 0`: the model has a fixed batch; send full-shape tensors)")
    post = ("in the graph (output layout `nms`)" if side.output.layout == "nms"
            else "a client step (output layout `yolo`: the raw head, no NMS)")
    return "\n".join([
        f"# {name}: Triton model written by `edgevision export-triton`",
        "",
        f"From bundle `{side.name}` ({side.task}, {side.output.num_classes} classes, precision {side.precision}). "
        f"Served: {served}; {batching}. Postprocessing is {post}. Class names: `labels.txt` (line i = class id i).",
        "",
        "## Preprocessing (client)",
        *preprocess_lines(side),
        "",
        "## Outputs and decode (client)",
        *decode_lines(side),
        "",
        "## config.pbtxt",
        "```",
        config.rstrip("\n"),
        "```",
        "",
        "Not run here: this repository was checked against Triton's ModelConfig message and the ONNX was run with "
        "ONNX Runtime per this config; no Triton server was started.",
        "",
    ])


def default_name(model: HandoffModel) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", model.sidecar.name).strip(".-")[:128] or "model"


def export_triton(bundle: str | Path, out: Path, *, name: str | None = None, engine: str | None = None,
                  max_batch: int | None = None, instances: int = 1, kind: str = "gpu", queue_delay_us: int = 0,
                  force: bool = False) -> Path:
    """Write ``out/<name>/`` (see the module docstring); returns that directory. ``force`` replaces an existing
    ``out/<name>`` that is not a previous export-triton output; other entries of ``out`` are never touched."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"--out {out}: exists and is not a directory (a Triton model repository is a directory)")
    if max_batch is not None and max_batch < 1:
        raise UserError(f"--max-batch {max_batch}: must be >= 1")
    if instances < 1:
        raise UserError(f"--instances {instances}: must be >= 1")
    model = load_handoff(bundle, engine)
    name = default_name(model) if name is None else name
    if not _NAME.match(name) or name.isdigit():
        raise UserError(f"--name {name!r}: a model name is letters, digits, '_', '.', '-' (not only digits, "
                        "not starting with '.' or '-')")
    config = triton_config(model, name, max_batch=max_batch, instances=instances, kind=kind,
                           queue_delay_us=queue_delay_us)
    mbs = max_batch_for(model, max_batch)
    target = out / name
    check_out_dir(target, force=force, marker=MARKER, what="a model written by edgevision export-triton")
    model_file = "model.plan" if model.engine_path is not None else "model.onnx"
    source = model.engine_path if model.engine_path is not None else model.bundle.model_path
    files = ["config.pbtxt", f"1/{model_file}", "labels.txt", "README.md", MARKER]
    with atomic_dir(target) as d:
        readable_dir(d)
        (d / "1").mkdir()
        try:
            shutil.copyfile(source, d / "1" / model_file)
        except OSError as exc:
            raise UserError(f"{source}: cannot copy ({exc.strerror or exc})") from None
        atomic_write_text(d / "config.pbtxt", config)
        atomic_write_text(d / "labels.txt", labels_text(model.sidecar))
        atomic_write_text(d / "README.md", _readme(model, name, config, mbs))
        atomic_write_text(d / MARKER, marker_text("export-triton", model, files))
    return target
