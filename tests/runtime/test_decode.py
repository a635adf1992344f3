"""decode_yolo / decode_nms on hand-built head outputs, with an independent reference NMS."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from edgevision.runtime.errors import UserError
from edgevision.runtime.postprocess import decode_nms, decode_yolo


def head(boxes: Sequence[Sequence[float]], scores: Sequence[Sequence[float]], kpts: np.ndarray | None = None,
         pad: int = 3) -> np.ndarray:
    """[1, 4 + C + 3K, N] from per-anchor cx,cy,w,h and per-class scores, plus `pad` empty anchors."""
    b = np.asarray(boxes, np.float32).T
    s = np.asarray(scores, np.float32).T
    rows = [b, s] if kpts is None else [b, s, kpts.reshape(len(boxes), -1).T]
    out = np.concatenate(rows, axis=0)
    out = np.concatenate([out, np.zeros((out.shape[0], pad), np.float32)], axis=1)
    return out[None]


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:2], b[:, :2]), np.minimum(a[2:], b[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return np.asarray(inter / (area(a) + area(b) - inter))


def reference_nms(xyxy: np.ndarray, scores: np.ndarray, cls: np.ndarray, thr: float) -> set[int]:
    """Greedy per-class NMS, the textbook loop."""
    keep: set[int] = set()
    for c in np.unique(cls):
        idx = np.flatnonzero(cls == c)
        idx = idx[np.argsort(-scores[idx])]
        while idx.size:
            i, idx = idx[0], idx[1:]
            keep.add(int(i))
            idx = idx[iou(xyxy[i], xyxy[idx]) <= thr]
    return keep


def test_overlapping_same_class_one_survives() -> None:
    out = head([[50, 50, 20, 20], [52, 51, 20, 20]], [[0.9, 0.1], [0.8, 0.2]])
    (det,) = decode_yolo(out, num_classes=2)
    assert len(det) == 1
    np.testing.assert_allclose(det.xyxy, [[40, 40, 60, 60]])
    assert det.scores.tolist() == pytest.approx([0.9]) and det.class_ids.tolist() == [0]
    assert det.keypoints is None


def test_overlapping_different_classes_both_survive() -> None:
    out = head([[50, 50, 20, 20], [52, 51, 20, 20]], [[0.9, 0.1], [0.1, 0.8]])
    (det,) = decode_yolo(out, num_classes=2)
    assert det.class_ids.tolist() == [0, 1] and det.scores.tolist() == pytest.approx([0.9, 0.8])
    (det,) = decode_yolo(out, num_classes=2, class_agnostic=True)
    assert det.class_ids.tolist() == [0]


def test_multi_label_keeps_every_class_above_conf() -> None:
    """Ultralytics' validation decode: one anchor scoring 0.9 for class 0 and 0.6 for class 1 yields two
    detections of the same box; the default (one label per box) yields only the best. Keypoints follow."""
    kp = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    out = head([[50, 50, 20, 20]], [[0.9, 0.6, 0.2]], kpts=kp)
    (single,) = decode_yolo(out, num_classes=3, num_keypoints=2, conf=0.5)
    assert single.class_ids.tolist() == [0]
    (multi,) = decode_yolo(out, num_classes=3, num_keypoints=2, conf=0.5, multi_label=True)
    assert multi.class_ids.tolist() == [0, 1] and multi.scores.tolist() == pytest.approx([0.9, 0.6])
    np.testing.assert_allclose(multi.xyxy, [[40, 40, 60, 60]] * 2)
    assert multi.keypoints is not None
    np.testing.assert_allclose(multi.keypoints, np.concatenate([kp, kp]))
    # class-aware NMS still applies within a class: a weaker overlapping class-1 box is suppressed
    out = head([[50, 50, 20, 20], [51, 50, 20, 20]], [[0.9, 0.6], [0.1, 0.55]])
    (multi,) = decode_yolo(out, num_classes=2, conf=0.5, multi_label=True)
    assert multi.class_ids.tolist() == [0, 1] and multi.scores.tolist() == pytest.approx([0.9, 0.6])


def test_conf_filter_and_max_det() -> None:
    boxes = [[10 + 30 * i, 10, 20, 20] for i in range(6)]  # disjoint
    scores = [[s] for s in (0.3, 0.9, 0.2, 0.5, 0.7, 0.26)]
    (det,) = decode_yolo(head(boxes, scores), num_classes=1, conf=0.25)
    assert det.scores.tolist() == pytest.approx([0.9, 0.7, 0.5, 0.3, 0.26])  # 0.2 dropped, sorted
    (det,) = decode_yolo(head(boxes, scores), num_classes=1, conf=0.25, max_det=2)
    assert det.scores.tolist() == pytest.approx([0.9, 0.7])
    np.testing.assert_allclose(det.xyxy[0], [30, 0, 50, 20])
    (det,) = decode_yolo(head(boxes, scores), num_classes=1, conf=0.95)
    assert len(det) == 0 and det.xyxy.shape == (0, 4)


def test_keypoints_follow_their_box() -> None:
    kpts = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)  # [anchors, K=3, (x, y, v)]
    out = head([[50, 50, 20, 20], [150, 50, 20, 20]], [[0.4], [0.9]], kpts=kpts)
    (det,) = decode_yolo(out, num_classes=1, num_keypoints=3)
    assert det.keypoints is not None and det.keypoints.shape == (2, 3, 3)
    np.testing.assert_array_equal(det.keypoints, kpts[[1, 0]])  # sorted by score: anchor 1 first
    (empty,) = decode_yolo(out, num_classes=1, num_keypoints=3, conf=0.99)
    assert empty.keypoints is not None and empty.keypoints.shape == (0, 3, 3)


def test_a_batch_of_pose_heads_keeps_each_image_keypoints() -> None:
    """Several cameras' frames in one call (a dynamic-batch pose model): image i gets image i's keypoints."""
    k1 = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    k2 = 100 + k1
    a = head([[50, 50, 20, 20], [150, 50, 20, 20]], [[0.4], [0.9]], kpts=k1)
    b = head([[60, 70, 20, 20], [150, 150, 30, 30]], [[0.8], [0.3]], kpts=k2)
    batched = decode_yolo(np.concatenate([a, b]), num_classes=1, num_keypoints=3)
    alone = [decode_yolo(x, num_classes=1, num_keypoints=3)[0] for x in (a, b)]
    for got, want in zip(batched, alone):
        assert got.keypoints is not None and want.keypoints is not None
        np.testing.assert_array_equal(got.keypoints, want.keypoints)
        np.testing.assert_array_equal(got.xyxy, want.xyxy)
    assert batched[1].keypoints is not None
    np.testing.assert_array_equal(batched[1].keypoints, k2[[0, 1]])  # image 2's own rows, by score


def test_matches_reference_nms_on_random_clusters() -> None:
    rng = np.random.default_rng(0)
    n, nc = 400, 3
    centres = rng.uniform(20, 300, (12, 2))
    cxcy = centres[rng.integers(0, 12, n)] + rng.normal(0, 6, (n, 2))
    wh = rng.uniform(10, 40, (n, 2))
    scores = rng.uniform(0, 1, (n, nc)) * rng.permutation(np.linspace(0.05, 1, n))[:, None]
    out = np.concatenate([cxcy.T, wh.T, scores.T]).astype(np.float32)[None]
    (det,) = decode_yolo(out, num_classes=nc, conf=0.1, iou=0.5, max_det=1000)
    pred = out[0].T
    best, cls = pred[:, 4:].max(1), pred[:, 4:].argmax(1)
    cand = np.flatnonzero(best > 0.1)
    xyxy = np.concatenate([pred[cand, :2] - pred[cand, 2:4] / 2, pred[cand, :2] + pred[cand, 2:4] / 2], 1)
    want = reference_nms(xyxy, best[cand], cls[cand], 0.5)
    assert 10 < len(want) < len(cand)
    got = {tuple(np.round(b, 3)) for b in det.xyxy}
    assert got == {tuple(np.round(xyxy[i], 3)) for i in want}
    assert np.all(np.diff(det.scores) <= 0)


def test_batch_fp16_and_bad_shape() -> None:
    a = head([[50, 50, 20, 20]], [[0.9, 0.0]])
    b = head([[80, 50, 20, 20]], [[0.0, 0.6]])
    dets = decode_yolo(np.concatenate([a, b]).astype(np.float16), num_classes=2)
    assert [d.class_ids.tolist() for d in dets] == [[0], [1]]
    assert len(decode_yolo(a[0], num_classes=2)) == 1  # [D, N] is B = 1
    with pytest.raises(UserError, match=r"expected shape \[B, 7, N\].*\[1, 6, 4\]"):
        decode_yolo(a, num_classes=3)


def test_max_det_counts_boxes_after_suppression() -> None:
    # A (0.9) and A' (0.8) overlap, B (0.7) stands apart: with max_det 2 the answer is A and B. Cutting to the
    # best max_det candidates *before* NMS (OpenCV's top_k) would suppress A' and return A alone.
    out = head([[50, 50, 20, 20], [51, 50, 20, 20], [150, 150, 20, 20]], [[0.9], [0.8], [0.7]])
    (d,) = decode_yolo(out, num_classes=1, conf=0.25, iou=0.5, max_det=2)
    assert d.scores.tolist() == pytest.approx([0.9, 0.7])
    np.testing.assert_allclose(d.xyxy[1], [140, 140, 160, 160])


def test_decode_nms_padded_outputs() -> None:
    num = np.array([[2], [0]], np.int32)
    boxes = np.zeros((2, 4, 4), np.float32)
    boxes[0, :2] = [[0, 0, 10, 10], [5, 5, 20, 20]]
    scores = np.array([[0.9, 0.3, 0.0, 0.0], [0.5, 0, 0, 0]], np.float32)
    classes = np.array([[2, 1, 0, 0], [1, 0, 0, 0]], np.int32)
    d0, d1 = decode_nms(num, boxes, scores, classes)
    assert d0.class_ids.tolist() == [2, 1] and d0.scores.tolist() == pytest.approx([0.9, 0.3])
    np.testing.assert_allclose(d0.xyxy[1], [5, 5, 20, 20])
    assert len(d1) == 0  # padding ignored even with a non-zero score
    (d0, _) = decode_nms(num.reshape(-1), boxes, scores, classes, conf=0.5)
    assert len(d0) == 1
    kp = np.ones((2, 4, 5, 3), np.float32)
    (d0, _) = decode_nms(num, boxes, scores, classes, keypoints=kp, max_det=1)
    assert d0.keypoints is not None and d0.keypoints.shape == (1, 5, 3)
    with pytest.raises(UserError, match="boxes"):
        decode_nms(num, boxes[..., :3], scores, classes)
