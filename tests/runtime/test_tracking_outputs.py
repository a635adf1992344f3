"""Track ids where users see them (JSON lines, the viewer's /api/latest, the drawn label), the moving synthetic
video's ground truth, motmetrics scoring, and tracking through the pipeline and `edgevision run --track`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from stream_fixtures import make_bundle

from edgevision.runtime.errors import UserError
from edgevision.runtime.frames import Frame
from edgevision.runtime.results import Detections
from edgevision.runtime.sinks.files import result_record

cv2 = pytest.importorskip("cv2")

NAMES = ["circle", "square"]


def _det(track_ids: list[int] | None) -> Detections:
    d = Detections(np.array([[10, 10, 60, 50], [70, 20, 90, 40]], np.float32), [0.91, 0.5], [0, 1],
                   track_ids=track_ids)
    d.meta = {"t_capture": 1.0, "t_result": 1.01, "latency_ms": 10.0}
    return d


def _frame(i: int = 0) -> Frame:
    return Frame(image=np.full((96, 128, 3), 40, np.uint8), index=i, timestamp=1.0)


def test_jsonl_record_carries_track_ids_only_when_tracked() -> None:
    plain = result_record(_frame(), _det(None), NAMES, wall_offset=0.0)
    tracked = result_record(_frame(), _det([12, 3]), NAMES, wall_offset=0.0)
    assert "track_ids" not in plain
    assert tracked["track_ids"] == [12, 3]
    assert {k: v for k, v in tracked.items() if k != "track_ids"} == plain  # nothing else changes
    assert json.loads(json.dumps(tracked))["track_ids"] == [12, 3]


def test_track_ids_are_validated_like_the_other_fields() -> None:
    from edgevision.runtime.errors import InternalError

    with pytest.raises(InternalError, match=r"track_ids: expected shape \[2\], got \[3\]"):
        _det([1, 2, 3])


def test_drawn_label_starts_with_the_track_id() -> None:
    from edgevision.runtime.draw import _label, draw_detections

    assert _label(0, 0.91, NAMES, 12) == "#12 circle 0.91" and _label(0, 0.91, NAMES) == "circle 0.91"
    img = _frame().image
    plain, tracked = draw_detections(img, _det(None), NAMES), draw_detections(img, _det([12, 3]), NAMES)
    diff = np.flatnonzero(np.abs(plain.astype(int) - tracked.astype(int)).sum((0, 2)))
    assert diff.size and diff.min() >= 10  # only the labels differ, from the box's left edge on


def test_viewer_api_latest_shows_track_ids() -> None:
    from edgevision.runtime.sinks.viewer import LiveViewer

    viewer = LiveViewer("127.0.0.1", 0, class_names=NAMES)
    try:
        viewer.publish(_frame(0), _det([12, 3]))
        assert viewer.latest(0)["result"]["track_ids"] == [12, 3]
        viewer.publish(_frame(1), _det(None))
        assert "track_ids" not in viewer.latest(0)["result"]
    finally:
        viewer.close()


# -- the moving synthetic video ---------------------------------------------------------------------------------
MOTION = "synthetic://?motion=1&objects=12&width=320&height=240&frames=40&seed=5"


def test_motion_source_is_deterministic_and_its_ground_truth_moves_smoothly() -> None:
    from edgevision.runtime.sources import open_source

    with open_source(MOTION) as a, open_source(MOTION) as b:
        frames_a = [f.image for f in a]
        assert len(frames_a) == 40
        np.testing.assert_array_equal(frames_a[17], b.scene(17)[0])  # asked out of order: the same frame
        centres = {}
        for i in range(40):
            boxes, labels, ids = a.ground_truth(i)
            assert boxes.shape == (len(ids), 4) and labels.shape == ids.shape
            assert set(ids.tolist()) <= set(range(1, 13)) and len(set(ids.tolist())) == len(ids)
            assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 320).all() and (boxes[:, 3] <= 240).all()
            for box, tid in zip(boxes, ids):
                c = (box[:2] + box[2:]) / 2
                if (i - 1, tid) in centres:  # at most 5 px per frame (the speed limit), plus the turn of the box
                    assert np.linalg.norm(c - centres[i - 1, tid]) < 8
                centres[i, tid] = c
        assert len({tid for _, tid in centres}) >= 10  # nearly every object is labelled at some point


def test_still_scenes_are_unchanged_and_have_no_track_ground_truth() -> None:
    from edgevision.runtime.sources import open_source
    from edgevision.runtime.synthetic import render_scene

    with open_source("synthetic://?width=96&height=64&seed=3&frames=2") as src:
        img, boxes, _ = render_scene(np.random.default_rng(np.random.SeedSequence([3, 1])), 96, 64, 8)
        np.testing.assert_array_equal(src.scene(1)[0], img)
        np.testing.assert_array_equal(src.scene(1)[1], boxes)
        with pytest.raises(UserError, match="motion=1"):
            src.ground_truth(0)
    with pytest.raises(UserError, match="motion must be an integer in"):
        open_source("synthetic://?motion=2")


# -- motmetrics ------------------------------------------------------------------------------------------------
def _two_objects(frames: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.array([1, 2]), np.array([[10 + t, 10, 30 + t, 30], [100 - t, 50, 120 - t, 70]], float))
            for t in range(frames)]


def test_motmetrics_scores_a_perfect_tracker_one() -> None:
    pytest.importorskip("motmetrics", reason="tracking scores (test extra)")
    from edgevision.runtime.tracking.scoring import MotScorer

    scorer = MotScorer()
    for ids, boxes in _two_objects(10):
        scorer.add(ids, boxes, ids + 100, boxes + 1)  # other id numbers, boxes 1 px off: still perfect
    s = scorer.scores()
    assert (s["mota"], s["idf1"], s["num_switches"]) == (1.0, 1.0, 0)


def test_motmetrics_scores_an_id_switch_lower() -> None:
    pytest.importorskip("motmetrics", reason="tracking scores (test extra)")
    from edgevision.runtime.tracking.scoring import MotScorer

    scorer = MotScorer()
    for t, (ids, boxes) in enumerate(_two_objects(10)):
        scorer.add(ids, boxes, ids[::-1] if t >= 5 else ids, boxes)  # the tracker swaps the ids halfway
    s = scorer.scores()
    # by hand: 2 switches over 20 boxes -> MOTA 1 - 2/20; each tracker id is right for 5 of its 10 boxes -> IDF1 0.5
    assert s["num_switches"] == 2
    assert s["mota"] == pytest.approx(0.9) and s["idf1"] == pytest.approx(0.5)


def test_motmetrics_counts_misses_and_false_positives() -> None:
    pytest.importorskip("motmetrics", reason="tracking scores (test extra)")
    from edgevision.runtime.tracking.scoring import MotScorer

    scorer = MotScorer()
    for t, (ids, boxes) in enumerate(_two_objects(10)):
        if t < 2:  # object 2 missed, and a box where nothing is (IoU < 0.5 with everything)
            scorer.add(ids, boxes, [1, 9], np.array([boxes[0], [200, 200, 220, 220]]))
        else:
            scorer.add(ids, boxes, ids, boxes)
    s = scorer.scores()
    assert (s["num_misses"], s["num_false_positives"]) == (2, 2)
    assert s["mota"] == pytest.approx(1 - 4 / 20)


# -- through the pipeline and the CLI -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    pytest.importorskip("scipy", reason="the tracker's assignment solver (runtime extra)")
    return make_bundle(tmp_path_factory.mktemp("trk") / "tiny")


def test_pipeline_tracks_each_stream_with_its_own_tracker(bundle: Path) -> None:
    from edgevision.runtime.pipeline import Pipeline
    from edgevision.runtime.tracking import ByteTracker

    made: list[ByteTracker] = []

    def factory() -> ByteTracker:
        made.append(ByteTracker())
        return made[-1]

    with Pipeline(bundle, "synthetic://?frames=6&width=64&height=48", tracker_factory=factory) as pipe:
        out = list(pipe)
    # the tiny model sees one fixed box in every frame: one object, id 1 throughout, one tracker
    assert [d.track_ids.tolist() for d in out] == [[1]] * 6
    assert len(made) == 1 and made[0].frame_count == 6
    with Pipeline(bundle, "synthetic://?frames=2&width=64&height=48") as pipe:
        assert all(d.track_ids is None and len(d) == 1 for d in pipe)  # no factory: untouched


def test_run_track_writes_track_ids_end_to_end(bundle: Path, tmp_path: Path) -> None:
    out, plain = tmp_path / "t.jsonl", tmp_path / "p.jsonl"
    code = ("import sys\nfrom edgevision.toolkit.cli import main\ntry:\n    main()\nfinally:\n"
            "    assert 'torch' not in sys.modules and 'motmetrics' not in sys.modules\n")
    base = [sys.executable, "-c", code, "run", str(bundle), "--source", "synthetic://?frames=8&width=64&height=48",
            "--no-status"]
    proc = subprocess.run([*base, "--track", "--track-buffer", "5", "--sink", f"jsonl:{out}",
                           "--sink", f"video:{tmp_path / 'v.avi'}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert [r["track_ids"] for r in lines] == [[1]] * 8 and lines[0]["classes"] == ["b"]
    assert (tmp_path / "v.avi").stat().st_size > 0
    proc = subprocess.run([*base, "--sink", f"jsonl:{plain}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert all("track_ids" not in json.loads(ln) for ln in plain.read_text().splitlines())
    bad = subprocess.run([*base, "--track", "--track-buffer", "-1"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--track-buffer" in bad.stderr and "Traceback" not in bad.stderr


def test_scipy_is_imported_only_when_a_tracker_is_made() -> None:
    pytest.importorskip("scipy", reason="the tracker's assignment solver (runtime extra)")
    code = ("import sys\n"
            "import edgevision.runtime, edgevision.runtime.pipeline, edgevision.runtime.tracking\n"
            "import edgevision.runtime.sources, edgevision.runtime.sinks, edgevision.toolkit.cli_runtime\n"
            "assert 'scipy' not in sys.modules, 'imported scipy before tracking was asked for'\n"
            "edgevision.runtime.tracking.ByteTracker()\n"
            "assert 'scipy' in sys.modules and 'torch' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
