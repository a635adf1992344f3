"""One-frame inference from a bundle: preprocess -> backend -> postprocess -> Detections in source pixels.

This is the single path both the toolkit's evaluation and the runtime's pipeline use, so the accuracy the
report states is the accuracy the device gets. Both output layouts of the sidecar are decoded here: ``yolo``
(one raw head tensor, NMS on the CPU) and ``nms`` (the graph ran NMS; its padded outputs, by the sidecar's
output names in ``decode_nms`` order, are only thresholded and mapped back).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Dict, Union

import numpy as np

from .backends.base import Backend
from .backends.choice import choose_backend
from .bundle import Bundle
from .bundle_check import check_model_io
from .errors import UserError
from .postprocess import NMS_OUTPUT_NAMES, decode_nms, decode_yolo
from .preprocess import Letterbox, letterbox, to_tensor
from .results import Detections

log = logging.getLogger("edgevision.predictor")

Raw = Union[np.ndarray, Dict[str, np.ndarray]]  # typing: a runtime alias on Python 3.8
"""What ``infer`` returns: the ``yolo`` head tensor, or the ``nms`` layout's outputs by name."""


class Predictor:
    """Run a bundle's model on BGR uint8 images (OpenCV's native order)."""

    def __init__(
        self,
        bundle: Bundle,
        backend: Backend | None = None,
        *,
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        backend_kind: str = "auto",
        multi_label: bool = False,
    ) -> None:
        side = bundle.sidecar
        self.layout = side.output.layout
        if self.layout == "nms" and len(side.output.names) not in (len(NMS_OUTPUT_NAMES), len(NMS_OUTPUT_NAMES) + 1):
            raise UserError(f"{bundle.root}: output layout 'nms' needs the outputs {list(NMS_OUTPUT_NAMES)} "
                            f"(+ keypoints) in that order in output.names, got {side.output.names}")
        self.bundle = bundle
        # without a backend: the bundle's TensorRT engine for this machine or its ONNX (``choose_backend``)
        self.backend = backend if backend is not None else choose_backend(bundle, backend_kind).open()
        try:
            check_model_io(side, self.backend.inputs, self.backend.outputs, str(bundle.root))
        except UserError:
            if backend is None:
                self.backend.close()
            raise
        self.input = side.input
        self.output_name = side.output.names[0]
        self.output_names = list(side.output.names)
        pp = side.postprocess
        self.conf = pp.conf if conf is None else conf
        self.iou = pp.iou if iou is None else iou
        self.max_det = pp.max_det if max_det is None else max_det
        self.num_classes = side.output.num_classes
        self.num_keypoints = side.output.num_keypoints
        self.multi_label = multi_label  # yolo layout: every class above conf (Ultralytics' validation)
        self._device_pre = bool(getattr(self.backend, "device_preprocess", False))
        self._device_ran = False

    @property
    def device_preprocess(self) -> bool:
        """Whether ``infer_image`` preprocesses on the device (TensorRT's CUDA letterbox kernel)."""
        return self._device_pre

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        if image.ndim != 3 or image.shape[2] != 3:
            raise UserError(f"expected an HxWx3 BGR image, got shape {list(image.shape)}")
        lb_img, lb = letterbox(image, (self.input.height, self.input.width), self.input.pad_value)
        return to_tensor(lb_img, self.input), lb

    def _raw(self, outs: dict[str, np.ndarray]) -> Raw:
        return outs[self.output_name] if self.layout == "yolo" else outs

    def infer(self, batch: np.ndarray) -> Raw:
        return self._raw(self.backend.infer({self.input.name: batch}))

    def infer_image(self, image: np.ndarray) -> tuple[Raw, Letterbox]:
        """Preprocess + infer one BGR frame: on the device where the backend can (TensorRT: letterbox,
        colour order, normalisation and HWC -> CHW in one CUDA kernel, so the CPU only decodes), else
        ``preprocess`` on the CPU and ``infer``. If the device path cannot start (e.g. no CUDA compiler for
        the kernel) it says so once and the CPU path takes over."""
        if self._device_pre:
            try:
                outs, lb = self.backend.infer_image(image, self.input, pad_value=self.input.pad_value,
                                                    size=(self.input.height, self.input.width))
                self._device_ran = True
                return self._raw(outs), lb
            except UserError:
                raise
            except Exception as exc:
                if self._device_ran:
                    raise
                log.warning("%s: GPU preprocessing unavailable (%s); preprocessing on the CPU", self.bundle.root, exc)
                self._device_pre = False
        tensor, lb = self.preprocess(image)
        return self.infer(tensor), lb

    def postprocess(self, raw: Raw, letterboxes: Sequence[Letterbox]) -> list[Detections]:
        if isinstance(raw, dict):
            arrays = [raw[n] for n in self.output_names]
            kpts = arrays[4] if len(arrays) > 4 else None
            dets = decode_nms(arrays[0], arrays[1], arrays[2], arrays[3], keypoints=kpts, conf=self.conf,
                              max_det=self.max_det)
        else:
            dets = decode_yolo(raw, self.num_classes, self.num_keypoints, conf=self.conf, iou=self.iou,
                               max_det=self.max_det, multi_label=self.multi_label)
        return [lb.unmap_detections(d) for d, lb in zip(dets, letterboxes)]

    def predict(self, image: np.ndarray) -> Detections:
        tensor, lb = self.preprocess(image)
        return self.postprocess(self.infer(tensor), [lb])[0]

    def close(self) -> None:
        self.backend.close()
