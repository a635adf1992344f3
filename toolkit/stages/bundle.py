"""Bundle stage: ONNX + sidecar (``edgevision.json``) in one directory, the toolkit -> runtime contract.

With ``export.nms`` the bundled model ends in NMS (``toolkit.nms_graph``: output layout ``nms``); every
variant (FP32, INT8, FP16) gets it at this last step, so compression stages keep working on the plain head.

For ``task: pose`` the sidecar also carries the keypoint names, the skeleton (0-based pairs) and the OKS
sigmas (:func:`keypoint_spec`), which the runtime's drawing and the evaluation's OKS read from there.

Every bundle also gets ``golden/`` (``edgevision.runtime.golden``): :data:`GOLDEN_SAMPLES` preprocessed inputs
and the bundled model's outputs on them, for ``edgevision run --check`` and ``edgevision regress``. The
inputs are the images the caller passes (``golden_images``), else scenes of the runtime's synthetic renderer
(seeded, at the bundle's input size: the quickstart's own data distribution, and a stable set that needs
no dataset at hand). Two 256 px samples of the quickstart detector take 0.37 MB compressed (model.onnx: 10 MB).
"""

from __future__ import annotations

import datetime as _dt
import shutil
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

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
from edgevision.runtime.golden import SAMPLES as GOLDEN_SAMPLES
from edgevision.runtime.golden import make_golden, write_golden

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


def golden_tensors(sidecar: Sidecar, images: Sequence[np.ndarray] | None = None, *, seed: int = 0
                   ) -> tuple[list[dict[str, np.ndarray]], str]:
    """(one feed per sample, where they came from): ``images`` (HxWx3 uint8 BGR) letterboxed and normalised
    like the runtime does, else :data:`GOLDEN_SAMPLES` seeded synthetic scenes."""
    from edgevision.runtime.preprocess import letterbox, stack
    from edgevision.runtime.synthetic import render_scene

    spec = sidecar.input
    size = (spec.height, spec.width)
    if images:
        source = f"{len(images)} dataset image(s)"
    else:
        rng = np.random.default_rng(seed)
        images = [render_scene(rng, spec.width, spec.height, max_objects=4)[0] for _ in range(GOLDEN_SAMPLES)]
        source = f"synthetic scenes (edgevision.runtime.synthetic.render_scene, seed {seed})"
    feeds = [{spec.name: stack([letterbox(img, size, spec.pad_value)[0]], spec)} for img in images]
    return feeds, source


def write_bundle(directory: Path, onnx_path: Path, sidecar: Sidecar,
                 nms: NmsSettings | None = None, *, golden: bool = True,
                 golden_images: Sequence[np.ndarray] | None = None) -> dict[str, list[str]]:
    """Write ``model.onnx`` (with ``nms`` appended, for the ``nms`` layout) + sidecar into ``directory``
    (the caller makes it atomic as a whole), and ``golden/`` unless ``golden`` is False (throwaway bundles)."""
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
    files = [sidecar.model_file]
    if golden:
        feeds, source = golden_tensors(sidecar, golden_images)
        files += write_golden(directory, make_golden(directory / sidecar.model_file, sidecar.precision, feeds,
                                                     source=source))
    atomic_write_text(directory / SIDECAR_NAME, sidecar.model_dump_json(indent=2) + "\n")
    return {"files": [*files, SIDECAR_NAME]}
