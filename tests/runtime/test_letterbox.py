"""letterbox / Letterbox / to_tensor: hand-computed cases."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from edgevision.runtime import preprocess as pp
from edgevision.runtime.errors import UserError
from edgevision.runtime.preprocess import Letterbox, letterbox, stack, to_tensor
from edgevision.runtime.results import Detections


def test_wide_image_into_square() -> None:
    img = np.full((100, 200, 3), 10, np.uint8)  # H=100, W=200
    out, lb = letterbox(img, (64, 64))
    # scale = min(64/100, 64/200) = 0.32 -> 32x64 content, 32 rows of padding split 16/16
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert lb == Letterbox(scale=0.32, pad_x=0.0, pad_y=16.0, src_h=100, src_w=200)
    assert (out[:16] == 114).all() and (out[48:] == 114).all()
    assert (out[16:48] == 10).all()


def test_odd_padding_split_like_ultralytics() -> None:
    out, lb = letterbox(np.zeros((10, 20, 3), np.uint8), (15, 20), pad_value=0)
    # no resize (scale 1), dh = 5 -> top = round(2.4) = 2, bottom = round(2.6) = 3
    assert (lb.scale, lb.pad_x, lb.pad_y) == (1.0, 0.0, 2.0)
    assert out.shape == (15, 20, 3)


def test_upscale_and_tall_image() -> None:
    _, lb = letterbox(np.zeros((10, 10, 3), np.uint8), (40, 40))
    assert (lb.scale, lb.pad_x, lb.pad_y) == (4.0, 0.0, 0.0)
    out, lb = letterbox(np.zeros((200, 100, 3), np.uint8), (64, 64))
    assert (lb.scale, lb.pad_x, lb.pad_y) == (0.32, 16.0, 0.0) and out.shape == (64, 64, 3)


def test_unmap_round_trip_and_clip() -> None:
    lb = Letterbox(scale=0.32, pad_x=0.0, pad_y=16.0, src_h=100, src_w=200)
    src = np.array([[10.0, 20.0, 150.0, 90.0]], np.float32)
    model = src * lb.scale + np.array([lb.pad_x, lb.pad_y, lb.pad_x, lb.pad_y], np.float32)
    np.testing.assert_allclose(lb.unmap_boxes(model), src, atol=1e-4)
    # a box reaching into the padding is clipped to the source image
    np.testing.assert_allclose(lb.unmap_boxes(np.array([[-5, 0, 70, 64]], np.float32)), [[0, 0, 200, 100]])
    kpts = np.array([[[32.0, 32.0, 0.7], [-3.2, 16.0, 0.1]]], np.float32)  # [N=1, K=2, 3]
    got = lb.unmap_points(kpts)
    np.testing.assert_allclose(got, [[[100.0, 50.0, 0.7], [0.0, 0.0, 0.1]]], atol=1e-4)
    np.testing.assert_allclose(lb.unmap_points(kpts, clip=False)[0, 1, 0], -10.0, atol=1e-4)


def test_unmap_detections() -> None:
    lb = Letterbox(scale=2.0, pad_x=4.0, pad_y=0.0, src_h=10, src_w=10)
    det = Detections(np.array([[6, 2, 14, 10]]), np.array([0.9]), np.array([1]), np.array([[[8, 4, 1.0]]]))
    got = lb.unmap_detections(det)
    np.testing.assert_allclose(got.xyxy, [[1, 1, 5, 5]])
    np.testing.assert_allclose(got.keypoints, [[[2, 2, 1.0]]])
    np.testing.assert_allclose(det.xyxy, [[6, 2, 14, 10]])  # original untouched


def test_letterbox_input_checks() -> None:
    out, _ = letterbox(np.zeros((8, 8), np.uint8), (8, 8))
    assert out.shape == (8, 8, 3)
    with pytest.raises(UserError, match="uint8"):
        letterbox(np.zeros((8, 8, 3), np.float32), (8, 8))
    with pytest.raises(UserError, match=r"\[8, 8, 2\]"):
        letterbox(np.zeros((8, 8, 2), np.uint8), (8, 8))


@dataclass
class _Spec:
    mean: tuple[float, float, float] = (0.5, 0.25, 0.0)
    std: tuple[float, float, float] = (0.5, 0.25, 1.0)
    color: str = "rgb"
    scale: float = 1 / 255
    dtype: str = "float32"


@pytest.fixture(params=[True, False], ids=["cv2-blob", "numpy-lut"])
def blob_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pp, "_USE_CV2_BLOB", request.param)


@pytest.mark.usefixtures("blob_path")
def test_to_tensor_colour_order_and_values() -> None:
    img = np.zeros((2, 3, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 51, 102, 255  # B, G, R
    x = to_tensor(img)
    assert x.shape == (1, 3, 2, 3) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_allclose(x[0, :, 0, 0], [1.0, 0.4, 0.2], atol=1e-6)  # R, G, B
    x = to_tensor(img, rgb=False)
    np.testing.assert_allclose(x[0, :, 1, 2], [0.2, 0.4, 1.0], atol=1e-6)  # B, G, R
    x = to_tensor(img, _Spec())  # (v/255 - mean) / std in RGB order
    np.testing.assert_allclose(x[0, :, 0, 0], [1.0, 0.6, 0.2], atol=1e-6)
    x = to_tensor(img, _Spec(), rgb=False, mean=(0, 0, 0), std=(1, 1, 1), scale=1.0)
    np.testing.assert_allclose(x[0, :, 0, 0], [51, 102, 255], atol=1e-4)


@pytest.mark.usefixtures("blob_path")
def test_to_tensor_matches_numpy_on_random_image() -> None:
    img = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    ref = ((img[..., ::-1] / 255.0 - mean) / std).transpose(2, 0, 1)[None]
    np.testing.assert_allclose(to_tensor(img, mean=mean, std=std), ref, atol=1e-5)


def test_to_tensor_dtypes_batch_and_errors() -> None:
    img = np.random.default_rng(1).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    assert to_tensor(img, dtype="float16").dtype == np.float16
    u = to_tensor(img, dtype="uint8")
    assert u.dtype == np.uint8 and (u[0] == img[..., ::-1].transpose(2, 0, 1)).all()
    b = stack([img, img[::-1]])
    assert b.shape == (2, 3, 4, 5)
    np.testing.assert_array_equal(b[1], to_tensor(img[::-1])[0])
    with pytest.raises(UserError, match="differ in size"):
        stack([img, img[:2]])
    with pytest.raises(UserError, match="non-zero"):
        to_tensor(img, std=(1, 0, 1))
    with pytest.raises(UserError, match="HxWx3"):
        to_tensor(img[..., 0])
