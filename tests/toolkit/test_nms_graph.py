"""In-graph NMS (``nms`` layout): the ONNX NonMaxSuppression graph against the runtime's OpenCV-NMS decoding."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgevision.runtime.errors import UserError
from edgevision.runtime.postprocess import decode_nms, decode_yolo
from edgevision.toolkit.nms_graph import NmsSettings, append_nms

ort = pytest.importorskip("onnxruntime")


def head_model(rows: int, n: int, batch: int | str = 1, opset: int = 17) -> onnx.ModelProto:
    """A graph whose yolo output is its input (``raw -> Identity -> output0``)."""
    g = helper.make_graph([helper.make_node("Identity", ["raw"], ["output0"])], "head",
                          [helper.make_tensor_value_info("raw", TensorProto.FLOAT, [batch, rows, n])],
                          [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, rows, n])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def run(model: onnx.ModelProto, raw: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return list(sess.run(None, {"raw": raw}))


def random_head(nc: int, nk: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    raw = np.zeros((1, 4 + nc + 3 * nk, n), np.float32)
    raw[0, 0:2] = rng.uniform(20, 200, (2, n))  # centres: crowded, so NMS has work to do
    raw[0, 2:4] = rng.uniform(10, 60, (2, n))
    raw[0, 4 : 4 + nc] = rng.uniform(0, 1, (nc, n)) ** 3
    raw[0, 4 + nc :] = rng.uniform(0, 100, (3 * nk, n))
    return raw


@pytest.mark.parametrize(("nc", "nk", "conf", "iou", "max_det"), [(5, 0, 0.05, 0.5, 100), (1, 17, 0.2, 0.45, 30),
                                                                   (3, 2, 0.6, 0.7, 300)])
def test_in_graph_nms_equals_the_runtime_decoding(nc: int, nk: int, conf: float, iou: float, max_det: int) -> None:
    raw = random_head(nc, nk, 3000)
    model = append_nms(head_model(raw.shape[1], raw.shape[2]), num_classes=nc, num_keypoints=nk,
                       settings=NmsSettings(conf, iou, max_det))
    outs = run(model, raw)
    assert [o.shape for o in outs[:4]] == [(1, 1), (1, max_det, 4), (1, max_det), (1, max_det)]
    (got,) = decode_nms(*outs[:4], keypoints=outs[4] if nk else None)
    (want,) = decode_yolo(raw, nc, nk, conf=conf, iou=iou, max_det=max_det)
    assert 0 < len(want) == len(got) == int(outs[0][0, 0])
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)
    np.testing.assert_allclose(got.xyxy, want.xyxy, atol=1e-3)
    assert got.class_ids.tolist() == want.class_ids.tolist()
    if nk:
        assert got.keypoints is not None and want.keypoints is not None
        np.testing.assert_allclose(got.keypoints, want.keypoints, atol=1e-4)


def test_no_detection_gives_zero_rows_of_padding() -> None:
    raw = random_head(2, 0, 50)
    raw[0, 4:] *= 0.01
    num, boxes, scores, classes = run(append_nms(head_model(6, 50), num_classes=2, num_keypoints=0,
                                                 settings=NmsSettings(0.5, 0.5, 10)), raw)
    assert num.tolist() == [[0]] and not boxes.any() and not scores.any() and not classes.any()
    assert len(decode_nms(num, boxes, scores, classes)[0]) == 0


def test_models_it_cannot_extend_are_user_errors() -> None:
    settings = NmsSettings(0.25, 0.45, 100)
    with pytest.raises(UserError, match=r"expected \[1, 9, N\]"):
        append_nms(head_model(9, 50, batch="batch"), num_classes=5, num_keypoints=0, settings=settings)
    with pytest.raises(UserError, match=r"expected \[1, 7, N\]"):
        append_nms(head_model(9, 50), num_classes=3, num_keypoints=0, settings=settings)
    with pytest.raises(UserError, match="opset >= 13"):
        append_nms(head_model(9, 50, opset=12), num_classes=5, num_keypoints=0, settings=settings)
