"""Bundle stage: ONNX + sidecar (``edgevision.json``) in one directory, the toolkit -> runtime contract.

With ``export.nms`` the bundled model ends in NMS (``toolkit.nms_graph``: output layout ``nms``); every
variant (FP32, INT8, FP16) gets it at this last step, so compression stages keep working on the plain head.

For ``task: pose`` the sidecar also carries the keypoint names, the skeleton (0-based pairs) and the OKS
sigmas (:func:`keypoint_spec`), which the runtime's drawing and the evaluation's OKS read from there.
"""

from __future__ import annotations

import datetime as _dt
import shutil
from importlib import metadata
from pathlib import Path

from edgevision.runtime.bundle import (
    SIDECAR_NAME,
    InputSpec,
    KeypointSpec,
    OutputSpec,
    PostprocessSpec,
    Provenance,
    Sidecar,
)
from edgevision.runtime.errors import InternalError, UserError
from edgevision.runtime.fsutil import atomic_write_text

from ..data.coco import CocoDataset, keypoint_sigmas
from ..models.registry import ModelSpec
from ..models.sources.base import Contract
from ..nms_graph import NmsSettings, append_nms, nms_output_names
from ..recipe import Recipe
from .export import INPUT_NAME, OUTPUT_NAME

_TOOLS = ("edgevision", "torch", "onnx", "onnxsim", "onnxruntime", "numpy", "opencv-python-headless")


def tool_versions() -> dict[str, str]:
    out = {}
    for name in _TOOLS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def keypoint_spec(ds: CocoDataset) -> KeypointSpec | None:
    """The sidecar's keypoint block for a dataset (None without keypoints): names, 0-based skeleton and
    OKS sigmas (COCO's for the 17 COCO keypoints, else ``1/K``)."""
    if not ds.num_keypoints:
        return None
    return KeypointSpec(names=list(ds.keypoint_names), skeleton=[(int(a), int(b)) for a, b in ds.skeleton],
                        sigmas=keypoint_sigmas(ds.keypoint_names))


def nms_settings(recipe: Recipe) -> NmsSettings | None:
    """The in-graph NMS a recipe asks for (``export.nms``), or None: IoU from ``postprocess``, the score floor
    low enough for evaluation (the runtime still applies ``postprocess.conf``), room for both max_det."""
    if not recipe.export.nms:
        return None
    pp, ev = recipe.postprocess, recipe.eval
    return NmsSettings(conf=min(ev.conf, pp.conf), iou=pp.iou, max_det=max(ev.max_det, pp.max_det))


def make_sidecar(
    recipe: Recipe,
    spec: Contract | ModelSpec,
    class_names: list[str],
    *,
    precision: str = "fp32",
    provenance: dict[str, str | None],
    keypoints: KeypointSpec | None = None,
) -> Sidecar:
    """The sidecar of a bundle; ``spec`` is the model source's :class:`Contract` (a registry ``ModelSpec``
    carries the same fields); ``task: pose`` needs ``keypoints`` (see :func:`keypoint_spec`)."""
    if recipe.task == "pose" and keypoints is None:
        raise UserError("task 'pose': the bundle needs keypoint names/skeleton/sigmas (dataset has no keypoints)")
    if recipe.task != "pose":
        keypoints = None
    batch: int | str = "batch" if recipe.export.dynamic_batch else 1
    nk = len(keypoints.names) if keypoints is not None else 0
    s = recipe.input_size
    pp = recipe.postprocess
    return Sidecar(
        name=recipe.name,
        task=recipe.task,
        class_names=class_names,
        keypoints=keypoints,
        input=InputSpec(name=INPUT_NAME, shape=[batch, 3, s, s], color="rgb" if spec.rgb else "bgr",
                        mean=list(spec.mean), std=list(spec.std), pad_value=spec.pad_value),
        output=OutputSpec(layout="nms" if recipe.export.nms else "yolo",
                          names=nms_output_names(nk) if recipe.export.nms else [OUTPUT_NAME],
                          num_classes=len(class_names), num_keypoints=nk, strides=list(spec.strides)),
        postprocess=PostprocessSpec(conf=pp.conf, iou=pp.iou, max_det=pp.max_det),
        precision=precision,  # type: ignore[arg-type]
        provenance=Provenance(**provenance, tools=tool_versions(),
                              created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")),
    )


def write_bundle(directory: Path, onnx_path: Path, sidecar: Sidecar,
                 nms: NmsSettings | None = None) -> dict[str, list[str]]:
    """Write ``model.onnx`` (with ``nms`` appended, for the ``nms`` layout) + sidecar into ``directory``
    (the caller makes it atomic as a whole)."""
    directory.mkdir(parents=True, exist_ok=True)
    if (nms is None) != (sidecar.output.layout != "nms"):
        raise InternalError(f"bundle: output layout {sidecar.output.layout!r} with in-graph NMS {nms}")
    if nms is None:
        shutil.copyfile(onnx_path, directory / sidecar.model_file)
    else:
        import onnx

        model = append_nms(onnx.load(str(onnx_path)), num_classes=sidecar.output.num_classes,
                           num_keypoints=sidecar.output.num_keypoints, settings=nms)
        onnx.save(model, str(directory / sidecar.model_file))
    atomic_write_text(directory / SIDECAR_NAME, sidecar.model_dump_json(indent=2) + "\n")
    return {"files": [sidecar.model_file, SIDECAR_NAME]}
