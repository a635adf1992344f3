"""Calibration for INT8: the model's own preprocessing on a fixed, hashed subset of the train split, streamed.

Images go through the runtime's letterbox + normalisation (the sidecar's input spec), so calibration sees
exactly the tensors the deployed model sees. The calibration set's hash (file hashes in order) goes into the
sidecar.

Memory. ``quantize_static`` hands the whole reader to one calibrator; its histogram calibrators (entropy,
percentile) keep every activation of every image until the ranges are computed (244 MB of activations an image
for a YOLOv8n at 640 px; 13.5 GB peak for 128 images of edgedet-m at 256 px, measured). Here ONNX Runtime's
own calibrators (``create_calibrator``, ``collect_data`` called once per chunk, as ``quantize_static`` does
for its ``CalibStridedMinMax`` option) see the images in chunks of at most ``CHUNK_BYTES`` of activations, and
the ranges go to the calibration cache that ``quantize_static`` then reads, so peak memory no longer grows
with ``calib_images``. Measured (``scripts/bench-calibration``, Ultralytics YOLOv8n from its yaml with random
weights, 640 px, synthetic images, percentile): all-at-once 1.20 GiB peak RSS at 4 images and 2.26 GiB at 8
(about 270 MiB an image, so about 135 GiB at 512); streamed 0.81 GiB at 8 images and 0.81 GiB at 512 (ratio
0.006 to the extrapolated all-at-once; 0.36 at 8 images).

- minmax: ``MinMaxCalibrater`` merges running min/max over chunks; exact, so the quantized model is the
  all-at-once one (tested: same scales).
- entropy / percentile: two passes. Pass 1 is the exact min/max above; pass 2 sums, over chunks, each
  tensor's histogram on a range fixed by pass 1, and ONNX Runtime's ``HistogramCollector`` turns the
  histograms into thresholds. Hand-written (``FixedRangeHistograms.collect``, a dozen lines) because ONNX
  Runtime's own merge re-bins the running histogram when a later chunk has a larger value, so its histograms,
  and the thresholds read from them, depend on chunk size and order. A sum of fixed-range histograms is the
  histogram of all the data: entropy ranges equal the all-at-once ones bit for bit (tested). Percentile's
  all-at-once histogram of ``|x|`` spans ``[min|x|, max|x|]``, which only the data shows; here it spans
  ``[0, max|x|]``, so the two thresholds may be one bin (1/2048 of ``max|x|``) apart (tested against numpy's
  quantile). Measured on that YOLOv8n (8 images): 208 of 255 tensors' ranges agree within 1e-6, the rest
  differ by at most 4.9e-4 of ``max(|lo|, |hi|)`` (the symmetric scale by at most 4.9e-4 relative). ONNX
  Runtime's all-at-once percentile cannot calibrate the other 46 tensors at all (near-constant: numpy's "Too
  many bins for data range" on ``[min|x|, max|x|]``, so ``quantize_static`` fails on that model); the fixed
  ``[0, max|x|]`` range has no such failure. Random weights make those near-constant tensors.
  The cost is a second inference pass over the calibration set (512 images at 640 px: 978 s in all on a
  shared 2-core machine).

Not used: ``CalibMaxIntermediateOutputs`` (ONNX Runtime 1.32's ``MinMaxCalibrater.collect_data`` drops the
collected outputs at that count without merging them into the range).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
from onnxruntime.quantization.calibrate import HistogramCalibrater, HistogramCollector, TensorsData, create_calibrator

from edgevision.runtime.bundle import InputSpec
from edgevision.runtime.errors import UserError
from edgevision.runtime.fsutil import sha256_file, sha256_json
from edgevision.runtime.preprocess import letterbox, to_tensor

from ..data.coco import ImageRecord

CHUNK_BYTES = 512 * 2**20
"""Activations one chunk of calibration images may hold (the calibrator keeps a chunk's outputs at once)."""


def pick_images(records: Sequence[ImageRecord], n: int, where: str, *, offset: int = 0) -> list[Path]:
    """The first ``n`` images from ``offset`` (deterministic); too few -> ``UserError`` naming ``where``."""
    paths = [r.path for r in records[offset : offset + n]]
    if not paths:
        raise UserError(f"{where}: the calibration set is empty (the dataset's train split has no images)")
    if len(paths) < n:
        raise UserError(f"{where}: asks for {n} images but the train split has only {len(records) - offset} "
                        "available; lower it")
    return paths


def images_hash(paths: Sequence[Path]) -> str:
    return sha256_json([sha256_file(p) for p in paths])


def preprocess(path: Path, spec: InputSpec) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"{path}: cannot read calibration image")
    h, w = int(spec.shape[2]), int(spec.shape[3])
    boxed, _ = letterbox(image, (h, w), spec.pad_value)
    return to_tensor(boxed, spec)


class ImageReader(CalibrationDataReader):
    """Yields ``{input_name: [1,3,H,W]}`` feeds, one per image, read when asked (nothing is kept: 512 images
    at 640 px would be 2.5 GB of float tensors); ``rewind()`` starts over."""

    def __init__(self, paths: Sequence[Path], spec: InputSpec) -> None:
        self.paths, self.spec = list(paths), spec
        self._i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._i >= len(self.paths):
            return None
        feed = {self.spec.name: preprocess(self.paths[self._i], self.spec)}
        self._i += 1
        return feed

    def rewind(self) -> None:
        self._i = 0

    def batches(self) -> list[np.ndarray]:
        return [preprocess(p, self.spec) for p in self.paths]


class FixedRangeHistograms(HistogramCollector):
    """ONNX Runtime's collector with ``collect`` replaced: each tensor's histogram on a range fixed in advance
    (its exact min/max over the whole calibration set), summed over chunks. The entries keep the collector's
    layout, so its ``compute_entropy`` / ``compute_percentile`` choose the thresholds unchanged."""

    def __init__(self, calibrator: HistogramCalibrater, ranges: TensorsData) -> None:
        super().__init__(method=calibrator.method, symmetric=calibrator.symmetric, num_bins=calibrator.num_bins,
                         num_quantized_bins=calibrator.num_quantized_bins, percentile=calibrator.percentile,
                         scenario=calibrator.scenario)
        self.ranges = {name: tuple(np.float32(np.asarray(v).item()) for v in data.range_value)
                       for name, data in ranges.items()}

    def collect(self, name_to_arr: dict[str, list[np.ndarray]]) -> None:
        absolute = self.method == "percentile" and self.symmetric  # as HistogramCollector.collect chooses
        for name, arrays in name_to_arr.items():
            lo, hi = self.ranges[name]
            top = np.array(max(abs(lo), abs(hi)), dtype=np.float32)
            # float32 bounds (typed Any: numpy's stubs want Python floats) keep the edges float32, as ONNX Runtime's
            span: Any = (np.float32(0), top) if absolute else (-top, top)
            hist, edges = np.histogram(np.zeros(0, np.float32), self.num_bins, range=span)
            for a in arrays:
                hist += np.histogram(np.abs(a) if absolute else a, self.num_bins, range=span)[0]
            if name in self.histogram_dict:
                hist += self.histogram_dict[name][0]
            extra = () if absolute else (top,)  # collect_value's entries also carry the threshold
            self.histogram_dict[name] = (hist, edges, lo, hi, *extra)


def _chunks(paths: Sequence[Path], per_image: int) -> Iterator[Sequence[Path]]:
    step = max(1, CHUNK_BYTES // max(per_image, 1))
    for start in range(0, len(paths), step):
        yield paths[start : start + step]


def _bytes_per_image(calibrator: Any) -> int:
    """Bytes of the augmented session's outputs for one image (what ``collect_data`` keeps per image)."""
    total = 0
    for out in calibrator.infer_session.get_outputs():
        if not all(isinstance(d, int) and d > 0 for d in out.shape):
            return CHUNK_BYTES  # a symbolic dimension: unknown size, one image per chunk
        total += int(np.prod(out.shape)) * (2 if "float16" in out.type else 4)
    return total


def _collect(calibrator: Any, paths: Sequence[Path], spec: InputSpec) -> TensorsData:
    for chunk in _chunks(paths, _bytes_per_image(calibrator)):
        calibrator.collect_data(ImageReader(chunk, spec))
    return calibrator.compute_data()


def calibrate(model: Path, paths: Sequence[Path], spec: InputSpec, method: CalibrationMethod,
              options: dict[str, Any]) -> TensorsData:
    """Tensor ranges of ``model`` over ``paths``, as ``quantize_static(calibrate_method=method)`` with the
    calibrator ``options`` (its ``calib_extra_options``) would compute them, with memory bounded by
    ``CHUNK_BYTES`` instead of growing with ``len(paths)``."""
    if not paths:
        raise UserError(f"{model}: no calibration images")
    with tempfile.TemporaryDirectory(prefix="edgevision-calib-") as tmp, \
            contextlib.redirect_stdout(io.StringIO()):  # the histogram collector prints progress
        minmax_opts = options if method == CalibrationMethod.MinMax else {}
        calibrator = create_calibrator(model, None, str(Path(tmp) / "minmax.onnx"), CalibrationMethod.MinMax,
                                       extra_options=minmax_opts)
        ranges = _collect(calibrator, paths, spec)
        del calibrator
        if method == CalibrationMethod.MinMax:
            return ranges
        calibrator = create_calibrator(model, None, str(Path(tmp) / "hist.onnx"), method, extra_options=options)
        calibrator.collector = FixedRangeHistograms(calibrator, ranges)
        return _collect(calibrator, paths, spec)
