"""Sinks: annotated video (read back with OpenCV), JSON lines, spec parsing, errors, drawing."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from edgevision.runtime.draw import draw_detections
from edgevision.runtime.errors import UserError
from edgevision.runtime.frames import Frame
from edgevision.runtime.results import Detections
from edgevision.runtime.sinks import (
    DisplaySink,
    HttpViewerSink,
    JsonlSink,
    VideoSink,
    _parse_http,
    make_sink,
)
from edgevision.runtime.sinks.base import Sink, SinkContext, start_sink

cv2 = pytest.importorskip("cv2")

NAMES = ["circle", "square", "triangle"]


def frame(i: int, h: int = 120, w: int = 160) -> Frame:
    img = np.full((h, w, 3), 30 + 10 * i, np.uint8)
    return Frame(image=img, index=i, timestamp=time.monotonic(), stream_id=0, source="test")


def dets(kpts: bool = False) -> Detections:
    k = np.array([[[30, 40, 0.9], [60, 70, 0.9], [5, 5, 0.1]]], np.float32) if kpts else None
    t = time.monotonic()
    d = Detections(np.array([[20, 30, 80, 90]], np.float32), np.array([0.87], np.float32),
                   np.array([1], np.int64), k)
    d.meta = {"t_capture": t - 0.02, "t_result": t, "latency_ms": 20.0}
    return d


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_video_sink_writes_readable_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / "sub" / f"out{suffix}"
    sink = VideoSink(path, fps=10, class_names=NAMES)
    assert isinstance(sink, Sink)
    for i in range(6):
        sink.write(frame(i), dets())
        assert not path.exists(), "the target name must appear only when the file is complete"
    sink.close()
    sink.close()  # idempotent
    assert path.exists() and [p.name for p in path.parent.iterdir()] == [path.name]
    cap = cv2.VideoCapture(str(path))
    n, shape = 0, None
    while True:
        ok, img = cap.read()
        if not ok:
            break
        n, shape = n + 1, img.shape
    cap.release()
    assert n == 6 and shape == (120, 160, 3)


def test_video_sink_fps_from_context_and_resizes_odd_frames(tmp_path: Path) -> None:
    sink = VideoSink(tmp_path / "o.avi")
    start_sink(sink, SinkContext(class_names=NAMES, fps=12.0))
    assert sink.fps == 12.0 and sink.class_names == NAMES
    sink.write(frame(0), dets())
    sink.write(frame(1, 60, 80), Detections.empty())
    sink.close()
    cap = cv2.VideoCapture(str(tmp_path / "o.avi"))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    cap.release()


def test_video_sink_without_frames_leaves_nothing(tmp_path: Path) -> None:
    VideoSink(tmp_path / "o.mp4", 30).close()
    assert list(tmp_path.iterdir()) == []


def test_unwritable_paths_fail_at_construction(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")  # a file where a directory is needed: fails even for root
    bad = blocker / "out.mp4"
    with pytest.raises(UserError, match=r"out\.mp4"):
        VideoSink(bad, 30)
    with pytest.raises(UserError, match=r"out\.jsonl"):
        JsonlSink(blocker / "out.jsonl")
    with pytest.raises(UserError, match="directory"):
        VideoSink(_dir_named(tmp_path, "d.mp4"), 30)
    with pytest.raises(UserError, match="unsupported extension"):
        VideoSink(tmp_path / "out.gif", 30)
    with pytest.raises(UserError, match=r"file\.txt"):
        make_sink(f"video:{bad}")


def _dir_named(parent: Path, name: str) -> Path:
    d = parent / name
    d.mkdir()
    return d


def test_jsonl_sink_lines_carry_the_fields(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    sink = JsonlSink(path)
    start_sink(sink, SinkContext(class_names=NAMES))
    sink.write(frame(0), dets())
    sink.write(frame(1), dets(kpts=True))
    sink.write(frame(2), Detections.empty())
    sink.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["frame"] for r in rows] == [0, 1, 2]
    r = rows[0]
    assert {"stream_id", "frame", "t_capture", "t_result", "latency_ms", "boxes", "scores", "class_ids",
            "classes", "keypoints"} <= set(r)
    assert r["boxes"] == [[20.0, 30.0, 80.0, 90.0]] and r["class_ids"] == [1] and r["classes"] == ["square"]
    assert r["scores"] == [pytest.approx(0.87)] and r["keypoints"] is None
    assert abs(r["t_capture"] - time.time()) < 60, "timestamps are Unix seconds"
    assert r["t_result"] - r["t_capture"] == pytest.approx(0.02, abs=1e-3) and r["latency_ms"] == 20.0
    assert np.array(rows[1]["keypoints"]).shape == (1, 3, 3)
    assert rows[2]["boxes"] == [] and rows[2]["classes"] == []


def test_make_sink_parses_specs(tmp_path: Path) -> None:
    v = make_sink(f"video:{tmp_path / 'a.mp4'}", class_names=NAMES, fps=15)
    j = make_sink(f"jsonl:{tmp_path / 'a.jsonl'}")
    assert isinstance(v, VideoSink) and v.fps == 15 and isinstance(j, JsonlSink)
    v.close()
    j.close()
    h = make_sink("http://127.0.0.1:0?token=s3cret", class_names=NAMES)
    try:
        assert isinstance(h, HttpViewerSink) and h.viewer.token == "s3cret"
        assert h.url.startswith("http://127.0.0.1:") and h.viewer.port > 0
    finally:
        h.close()
    assert _parse_http("http") == ("127.0.0.1", 8080, None, False)
    assert _parse_http("http://0.0.0.0:9000/?token=t") == ("0.0.0.0", 9000, "t", False)
    assert _parse_http("http://[::1]:81") == ("::1", 81, None, False)
    assert _parse_http("http://0.0.0.0:81?insecure=1") == ("0.0.0.0", 81, None, True)


@pytest.mark.parametrize("spec", ["", "foo", "video:", "jsonl:", "http://h:port", "http://h:1/x",
                                  "http://h:1?tok=1", "https://h:1", "displayx", "http://h:1?token=",
                                  "http://h:1?token=%20", "http://h:1?insecure=yes"])
def test_make_sink_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(UserError, match="--sink"):
        make_sink(spec)


def test_unknown_spec_lists_the_forms() -> None:
    with pytest.raises(UserError) as e:
        make_sink("rtmp://x")
    assert all(form in str(e.value) for form in ("video:PATH", "jsonl:PATH", "display", "http"))


def test_display_sink_needs_a_screen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(UserError, match=r"DISPLAY"):
        DisplaySink()
    with pytest.raises(UserError, match=r"DISPLAY"):
        make_sink("display")


def test_draw_changes_pixels_inside_the_box_only() -> None:
    img = np.zeros((120, 160, 3), np.uint8)
    out = draw_detections(img, dets(), NAMES)
    assert (img == 0).all(), "draws on a copy by default"
    changed = (out != 0).any(axis=2)
    assert changed[30:91, 20:81].any() and changed[30:91, 20].all(), "box edge drawn"
    assert not changed[95:, :].any() and not changed[40:, 85:].any(), "nothing below/right of the box"
    bare = (draw_detections(img, dets(), NAMES, labels=False) != 0).any(axis=2)
    outside = bare.copy()
    outside[29:92, 19:82] = False
    assert bare.any() and not outside.any(), "without labels only the box is drawn"


def test_draw_keypoints_and_skeleton() -> None:
    img = np.zeros((120, 160, 3), np.uint8)
    d = dets(kpts=True)
    d.xyxy[:] = 0  # degenerate box: only keypoints/limbs remain visible away from the corner
    no_limb = draw_detections(img, d, NAMES, labels=False)
    limb = draw_detections(img, d, NAMES, skeleton=[(0, 1), (1, 2)], labels=False)
    assert no_limb[40, 30].any() and no_limb[70, 60].any(), "visible keypoints are drawn"
    assert not no_limb[3:8, 3:8].any(), "a low-confidence keypoint is not drawn"
    assert limb[55, 45].any() and not no_limb[55, 45].any(), "skeleton line between visible keypoints"
    assert not limb[37, 32].any(), "no limb to a low-confidence keypoint"


def test_display_sink_on_headless_opencv(monkeypatch: pytest.MonkeyPatch) -> None:
    if not re.search(r"GUI:\s+NONE", cv2.getBuildInformation()):
        pytest.skip("this OpenCV has GUI support; the headless-build message cannot be checked here")
    monkeypatch.setenv("DISPLAY", ":99")
    with pytest.raises(UserError, match="GUI support"):
        DisplaySink()
