"""ByteTracker on hand-made detection sequences whose right ids are known by construction."""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import pytest

from edgevision.runtime.errors import UserError
from edgevision.runtime.results import Detections
from edgevision.runtime.tracking import ByteTracker, TrackerConfig
from edgevision.runtime.tracking.byte_tracker import linear_assignment

pytest.importorskip("scipy", reason="the tracker's assignment solver (runtime extra)")

Obj = Tuple[float, float, float, int]  # centre x, centre y, score, class


def dets(objs: Sequence[Obj], size: float = 20.0) -> Detections:
    xyxy = [[x - size / 2, y - size / 2, x + size / 2, y + size / 2] for x, y, _, _ in objs]
    return Detections(np.array(xyxy, np.float32).reshape(-1, 4), [o[2] for o in objs], [o[3] for o in objs])


def ids_over(tracker: ByteTracker, frames: Sequence[Sequence[Obj]]) -> list[list[int]]:
    out = []
    for objs in frames:
        res = tracker.update(dets(objs))
        assert res.track_ids is not None
        out.append(res.track_ids.tolist())
    return out


def test_two_crossing_objects_keep_their_ids() -> None:
    # A moves right at y=40, B moves left at y=46: their 20-px boxes overlap for 7 frames (IoU up to 0.54 at t=10,
    # where they stand at the same x); at t=11 the boxes nearest each track's last position are tied, so only
    # the predicted motion tells which is which
    frames = [[(10 + 5 * t, 40, 0.9, 0), (110 - 5 * t, 46, 0.9, 0)] for t in range(21)]
    ids = ids_over(ByteTracker(), frames)
    assert ids == [[1, 2]] * 21  # detection order kept: A is always row 0 and keeps id 1
    swapped = [[f[1], f[0]] if t >= 11 else f for t, f in enumerate(frames)]  # rows swapped after the crossing
    assert ids_over(ByteTracker(), swapped)[11:] == [[2, 1]] * 10


def test_a_missed_object_keeps_its_id_within_the_buffer() -> None:
    seen = [(50 + 2 * t, 50, 0.9, 0) for t in range(20)]
    frames = [[o] if not 5 <= t < 10 else [] for t, o in enumerate(seen)]  # missed for 5 frames
    ids = ids_over(ByteTracker(TrackerConfig(track_buffer=30)), frames)
    assert ids[:5] == [[1]] * 5 and ids[5:10] == [[]] * 5 and ids[10:] == [[1]] * 10


def test_past_the_buffer_the_object_is_new() -> None:
    seen = [(50 + 2 * t, 50, 0.9, 0) for t in range(20)]
    frames = [[o] if not 5 <= t < 10 else [] for t, o in enumerate(seen)]
    ids = ids_over(ByteTracker(TrackerConfig(track_buffer=3)), frames)
    # frame 10: a tentative track (not shown); frame 11: confirmed with the next id
    assert ids[:5] == [[1]] * 5 and ids[10] == [] and ids[11:] == [[2]] * 9


def test_skipped_frames_are_predicted_over() -> None:
    """A live source drops frames under load: the track is predicted over the gap by the frames' indices."""
    tracker = ByteTracker()
    for t in [0, 1, 2, 3, 4, 12, 13]:  # 4 px per frame; frames 5-11 never reached the tracker
        det = dets([(40 + 4 * t, 50, 0.9, 0)])
        det.frame_index = t
        assert tracker.update(det).track_ids.tolist() == [1]
    # judged as consecutive frames, frame 12's box (32 px further on than one step predicts) starts a new track
    plain = ByteTracker()
    ids = ids_over(plain, [[(40 + 4 * t, 50, 0.9, 0)] for t in [0, 1, 2, 3, 4, 12, 13]])
    assert ids[5:] == [[], [2]]


def test_a_new_object_gets_a_new_id_once_confirmed() -> None:
    a = [(30 + t, 30, 0.9, 0) for t in range(10)]
    b = [(150 - t, 100, 0.8, 1) for t in range(10)]
    frames = [[a[t]] + ([b[t]] if t >= 4 else []) for t in range(10)]
    ids = ids_over(ByteTracker(), frames)
    assert ids[:5] == [[1]] * 5  # frame 4: B is tentative, not shown
    assert ids[5:] == [[1, 2]] * 5


def test_a_one_frame_false_positive_never_gets_an_id() -> None:
    frames = [[(30, 30, 0.9, 0)] + ([(200, 200, 0.95, 2)] if t == 3 else []) for t in range(8)]
    ids = ids_over(ByteTracker(), frames)
    assert ids == [[1]] * 8
    assert ids_over(ByteTracker(), [[(30, 30, 0.9, 0)], [(30, 30, 0.9, 0), (100, 100, 0.9, 0)],
                                    [(30, 30, 0.9, 0), (101, 100, 0.9, 0)]]) == [[1], [1], [1, 2]]


def test_low_score_detections_continue_a_track_but_never_start_one() -> None:
    cfg = TrackerConfig(high_thresh=0.5, low_thresh=0.1, new_track_thresh=0.6)
    # 0.9 for 5 frames, then 0.3 (occluded, the detector unsure) for 4 frames, then 0.9 again
    scores = [0.9] * 5 + [0.3] * 4 + [0.9] * 3
    frames = [[(40 + 3 * t, 60, s, 0)] for t, s in enumerate(scores)]
    # a second object seen only at 0.3 (never a track), and a 0.05 box (below low_thresh: ignored)
    frames = [[*f, (200, 60, 0.3, 0), (40 + 3 * t, 60, 0.05, 0)] for t, f in enumerate(frames)]
    tracker = ByteTracker(cfg)
    ids = ids_over(tracker, frames)
    assert ids == [[1]] * 12  # row 0 only: the low-score continuation keeps id 1
    assert len(tracker) == 1


def test_without_the_second_stage_the_low_score_frames_lose_the_track() -> None:
    # the same object with low_thresh = high_thresh: the 0.3 boxes are dropped, the track is lost meanwhile
    scores = [0.9] * 5 + [0.3] * 4 + [0.9] * 3
    frames = [[(40 + 3 * t, 60, s, 0)] for t, s in enumerate(scores)]
    ids = ids_over(ByteTracker(TrackerConfig(high_thresh=0.5, low_thresh=0.5, new_track_thresh=0.6)), frames)
    assert ids[5:9] == [[]] * 4 and ids[9:] == [[1]] * 3  # found again from the lost pool, same id


def test_class_agnostic_by_default_per_class_on_request() -> None:
    frames = [[(50 + 2 * t, 50, 0.9, 0 if t < 5 else 1)] for t in range(8)]  # the detector's class flips
    assert ids_over(ByteTracker(), frames) == [[1]] * 8
    per_class = ids_over(ByteTracker(TrackerConfig(per_class=True)), frames)
    assert per_class[:5] == [[1]] * 5 and per_class[5] == [] and per_class[6:] == [[2]] * 2


def test_output_keeps_the_input_rows_order_and_fields() -> None:
    tracker = ByteTracker()
    det = dets([(30, 30, 0.9, 2), (90, 30, 0.7, 1)])
    det.meta["source"] = "cam"
    det.stream_id, det.frame_index = 3, 7
    out = tracker.update(det)
    assert out.track_ids.tolist() == [1, 2] and out.class_ids.tolist() == [2, 1]
    np.testing.assert_array_equal(out.xyxy, det.xyxy)  # the detector's boxes, not the filter's
    assert (out.stream_id, out.frame_index, out.meta["source"]) == (3, 7, "cam")
    empty = tracker.update(Detections.empty())
    assert len(empty) == 0 and empty.track_ids is not None and empty.track_ids.dtype == np.int64


def test_linear_assignment_refuses_costly_pairs_and_maximises_allowed_ones() -> None:
    cost = np.array([[0.1, 0.3], [0.2, 0.9]])
    rows, cols = linear_assignment(cost, max_cost=0.5)
    # greedy would take (0, 0) then leave row 1 with only a refused pair; the solver pairs both
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 1), (1, 0)]
    rows, cols = linear_assignment(np.array([[0.6, 0.7]]), max_cost=0.5)
    assert rows.size == 0 and cols.size == 0


@pytest.mark.parametrize("kw", [{"low_thresh": 0.6, "high_thresh": 0.5}, {"match_iou": 1.5}, {"track_buffer": -1}])
def test_bad_config_is_a_user_error(kw: dict) -> None:
    with pytest.raises(UserError, match="tracker"):
        TrackerConfig(**kw)

