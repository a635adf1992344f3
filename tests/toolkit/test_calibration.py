"""Streamed calibration: bounded chunks, and the same ranges as ONNX Runtime's all-at-once calibrators
(minmax and entropy exactly, percentile within a bin or two), so the quantized model does not depend on the
chunking."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from onnxruntime.quantization import CalibrationMethod
from onnxruntime.quantization.calibrate import TensorsData, create_calibrator, save_tensors_data

from edgevision.runtime.bundle import InputSpec
from edgevision.toolkit.compress import calibration
from edgevision.toolkit.compress.calibration import ImageReader, calibrate
from edgevision.toolkit.compress.quantize import Quantizer
from edgevision.toolkit.compress.quantize_config import QuantizeConfig
from edgevision.toolkit.data.coco import load_coco
from edgevision.toolkit.data.synthetic import generate_detection_dataset
from edgevision.toolkit.models.registry import build_model
from edgevision.toolkit.stages.export import export_onnx

SIZE = 64
SPEC = InputSpec(name="images", shape=[1, 3, SIZE, SIZE])
OPTIONS = {"percentile": 99.99}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("calib")
    paths = generate_detection_dataset(root / "data", num_train=7, num_val=1, image_size=SIZE, seed=3)
    images = [r.path for r in load_coco(paths.train_json).records]
    torch.manual_seed(0)
    export_onnx(build_model("edgedet", "p", num_classes=3).eval(), SIZE, root / "fp32.onnx")
    return root / "fp32.onnx", images


@pytest.fixture
def two_images_per_chunk(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Chunks of at most two images (the histogram pass), recording each chunk's size."""
    sizes: list[int] = []
    real_chunks = calibration._chunks

    def chunks(paths: list[Path], per_image: int) -> Any:
        monkeypatch.setattr(calibration, "CHUNK_BYTES", 2 * per_image + per_image // 2)
        for chunk in real_chunks(paths, per_image):
            sizes.append(len(chunk))
            yield chunk

    monkeypatch.setattr(calibration, "_chunks", chunks)
    return sizes


def all_at_once(model: Path, images: list[Path], method: CalibrationMethod, tmp: Path) -> TensorsData:
    """What ``quantize_static`` computes without streaming: one ``collect_data`` over every image."""
    calibrator = create_calibrator(model, None, str(tmp / "augmented.onnx"), method, extra_options=OPTIONS)
    calibrator.collect_data(ImageReader(images, SPEC))
    return calibrator.compute_data()


def ranges(data: TensorsData) -> dict[str, tuple[float, float]]:
    return {k: (float(np.asarray(v.range_value[0]).item()), float(np.asarray(v.range_value[1]).item()))
            for k, v in data.items()}


@pytest.mark.parametrize("method", [CalibrationMethod.MinMax, CalibrationMethod.Entropy])
def test_minmax_and_entropy_ranges_equal_all_at_once(setup: tuple[Path, list[Path]], tmp_path: Path,
                                                     two_images_per_chunk: list[int],
                                                     method: CalibrationMethod) -> None:
    model, images = setup
    streamed = calibrate(model, images, SPEC, method, OPTIONS)
    assert max(two_images_per_chunk) == 2 and sum(two_images_per_chunk) >= len(images)
    reference = ranges(all_at_once(model, images, method, tmp_path))
    assert ranges(streamed) == reference
    assert len(reference) > 50


def activations(model: Path, images: list[Path], tmp: Path) -> dict[str, np.ndarray]:
    """Every calibrated tensor's values over all images (the calibrator's augmented model, run by hand)."""
    calibrator = create_calibrator(model, None, str(tmp / "every.onnx"), CalibrationMethod.Percentile)
    names = [o.name for o in calibrator.infer_session.get_outputs()]
    out: dict[str, list[np.ndarray]] = {}
    for x in ImageReader(images, SPEC).batches():
        for name, value in zip(names, calibrator.infer_session.run(None, {SPEC.name: x}), strict=True):
            out.setdefault(name, []).append(value.ravel())
    return {k: np.concatenate(out[k]) for k in calibrator.tensors_to_calibrate}


def test_percentile_ranges_are_the_datas_percentile_within_a_bin(setup: tuple[Path, list[Path]], tmp_path: Path,
                                                                 two_images_per_chunk: list[int]) -> None:
    """Against numpy's exact quantile of |x| over all images (ONNX Runtime's all-at-once percentile cannot be
    the reference here: on this random-weight model some sigmoids span [0.49998, 0.50003], and its histogram
    on [min|x|, max|x|] fails with numpy's "Too many bins for data range")."""
    model, images = setup
    streamed = ranges(calibrate(model, images, SPEC, CalibrationMethod.Percentile, OPTIONS))
    data = activations(model, images, tmp_path)
    assert streamed.keys() == data.keys()
    for name, x in data.items():
        top = float(np.abs(x).max())
        q = float(np.quantile(np.abs(x), OPTIONS["percentile"] / 100, method="inverted_cdf"))  # as a cdf reads it
        width = top / 2048  # one bin of the 2048-bin histogram of |x| on [0, max|x|]
        eps = 1e-6 * top + 1e-12
        # the threshold is the left edge of the bin holding q, then clipped to the data's own min / max
        lo, hi = streamed[name]
        assert min(q - width, float(x.max())) - eps <= hi <= min(q, float(x.max())) + eps, name
        assert max(-q, float(x.min())) - eps <= lo <= max(-q + width, float(x.min())) + eps, name


def scales(path: Path) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("_scale")}


def test_minmax_quantized_model_has_the_all_at_once_scales(setup: tuple[Path, list[Path]], tmp_path: Path,
                                                           two_images_per_chunk: list[int]) -> None:
    model, images = setup
    cfg = QuantizeConfig(method="minmax", calib_images=len(images))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    streamed = Quantizer(model, tmp_path / "a", cfg, SPEC, images)
    reference = Quantizer(model, tmp_path / "b", cfg, SPEC, images)
    save_tensors_data(all_at_once(reference.src, images, CalibrationMethod.MinMax, tmp_path), reference.cache)
    a = scales(streamed.quantize(tmp_path / "a.onnx", []))
    b = scales(reference.quantize(tmp_path / "b.onnx", []))
    assert len(two_images_per_chunk) > 1  # the streamed side really calibrated, in chunks
    assert a.keys() == b.keys() and len(a) > 50
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
