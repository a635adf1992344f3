"""The one check that a sidecar describes the model it sits beside: input/output names, dtypes, shapes, layout.

A sidecar is hand-editable and a model file can be swapped, so a bundle whose ``input.dtype`` says uint8 for a
float model, whose input has 4 channels, or whose sidecar promises keypoints to a detection head would run
and decode garbage without a word. ``check_model_io`` compares the sidecar with the I/O tensors the opened
model reports (ONNX Runtime session, TensorRT engine) and turns the first disagreement into one ``UserError``
line naming the bundle and the key. Every command goes through it: the ``Predictor`` (``run``, ``bench``,
``eval``, the build's evaluation) after opening its backend, ``bench`` without a source, and ``engine`` via
``verify_model_file`` (which opens the ONNX file without running it, so an empty or truncated model.onnx
fails before a "copy this to the device" answer).

Hand-written: the contract is edgevision's own sidecar schema, no library knows it.
"""

from __future__ import annotations

from collections.abc import Sequence

from .backends.base import TensorSpec
from .bundle import Bundle, Sidecar
from .errors import MissingDependencyError, UserError
from .postprocess import NMS_OUTPUT_NAMES

__all__ = ["check_model_io", "verify_model_file"]

_FLOAT = ("float32", "float16")


def _dtype_fits(sidecar: str, model: str) -> bool:
    """float32 and float16 interchange (backends cast the feed to the model's dtype); uint8 only matches uint8."""
    return sidecar == model or (sidecar in _FLOAT and model in _FLOAT)


def check_model_io(side: Sidecar, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], source: str) -> None:
    """``UserError`` naming ``source`` at the first place where ``side`` and the model's I/O disagree."""
    spec = side.input
    names = [t.name for t in inputs]
    if len(inputs) != 1:
        raise UserError(f"{source}: the model has {len(inputs)} inputs {names}; the runtime feeds one image input")
    inp = inputs[0]
    if inp.name != spec.name:
        raise UserError(f"{source}: input.name {spec.name!r} is not the model's input (it has {names})")
    if not _dtype_fits(spec.dtype, inp.dtype):
        raise UserError(f"{source}: input.dtype {spec.dtype!r} but the model's input {inp.name!r} is {inp.dtype}")
    if len(inp.shape) != 4:
        raise UserError(f"{source}: the model's input {inp.name!r} has shape {list(inp.shape)}, expected NCHW")
    for axis, (want, got) in enumerate(zip(spec.shape, inp.shape)):
        if isinstance(want, int) and isinstance(got, int) and want != got:
            what = ("batch", "channels", "height", "width")[axis]
            raise UserError(f"{source}: input.shape {list(spec.shape)} but the model's input {inp.name!r} is "
                            f"{list(inp.shape)} ({what} {want} != {got})")
    out_names = [t.name for t in outputs]
    missing = [n for n in side.output.names if n not in out_names]
    if missing:
        raise UserError(f"{source}: output.names {missing} are not outputs of the model (it has {out_names})")
    by_name = {t.name: t for t in outputs}
    nc, nk = side.output.num_classes, side.output.num_keypoints
    if side.output.layout == "yolo":
        head = by_name[side.output.names[0]]
        channels = 4 + nc + 3 * nk
        if len(head.shape) != 3:
            raise UserError(f"{source}: output.layout 'yolo' needs a [batch, 4 + classes (+ 3 x keypoints), anchors] "
                            f"head, the model's {head.name!r} is {list(head.shape)}")
        if isinstance(head.shape[1], int) and head.shape[1] != channels:
            kp = f" + 3 x {nk} keypoints" if nk else ""
            raise UserError(f"{source}: the model's {head.name!r} has {head.shape[1]} channels, the sidecar says "
                            f"4 + {nc} classes{kp} = {channels} (output.num_classes / output.num_keypoints)")
    else:
        want = len(NMS_OUTPUT_NAMES) + (1 if nk else 0)
        if len(side.output.names) != want:
            raise UserError(f"{source}: output.layout 'nms' with {nk} keypoints needs {want} outputs "
                            f"({', '.join(NMS_OUTPUT_NAMES)}{' + keypoints' if nk else ''}), "
                            f"got output.names {side.output.names}")
        if nk:
            kpt_out = by_name[side.output.names[-1]]
            if len(kpt_out.shape) != 4 or (isinstance(kpt_out.shape[2], int) and kpt_out.shape[2] != nk):
                raise UserError(f"{source}: keypoint output {kpt_out.name!r} {list(kpt_out.shape)} is not "
                                f"[batch, detections, {nk}, 3] (output.num_keypoints {nk})")


def verify_model_file(bundle: Bundle) -> None:
    """Open the bundle's ONNX model (not run it) and ``check_model_io`` it: an empty, truncated or foreign
    model file, or one the sidecar does not describe, is a ``UserError``."""
    from .onnx_meta import read_onnx_info

    try:
        info = read_onnx_info(bundle.model_path)
    except MissingDependencyError:  # a TensorRT-only device: TensorRT's own parser reads the file next
        if bundle.model_path.stat().st_size == 0:
            raise UserError(f"{bundle.model_path}: the model file is empty") from None
        return
    check_model_io(bundle.sidecar, info.inputs, info.outputs, str(bundle.root))
