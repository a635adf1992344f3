"""Frame sources by URI: files end cleanly and losslessly, folders sort naturally, bad URIs fail fast."""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stream_fixtures import make_video

from edgevision.runtime.errors import UserError
from edgevision.runtime.sources import CaptureSource, capture, open_source

cv2 = pytest.importorskip("cv2")


def test_video_file_is_lossless_and_ends(tmp_path: Path) -> None:
    path = make_video(tmp_path / "clip.avi", 12)
    with open_source(str(path)) as src:
        assert not src.is_live and src.fps == pytest.approx(30.0)
        frames = list(src)
    assert [f.index for f in frames] == list(range(12))
    assert all(f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in frames)
    np.testing.assert_allclose([f.image.mean() for f in frames], [i * 8 for i in range(12)], atol=2)  # in order
    ts = [f.timestamp for f in frames]
    assert ts == sorted(ts) and frames[0].source == str(path)


def test_loop_resize_and_file_uri(tmp_path: Path) -> None:
    path = make_video(tmp_path / "clip.avi", 5)
    with open_source(f"file://{path}", loop=True, width=32) as src:
        frames = list(itertools.islice(src, 12))
    assert [f.index for f in frames] == list(range(12))
    assert frames[0].image.shape == (24, 32, 3)  # aspect kept
    assert frames[5].image.mean() < 2  # rewound to frame 0


def test_folder_natural_order_and_glob(tmp_path: Path) -> None:
    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((8, 8, 3), i, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    with open_source(str(tmp_path)) as src:
        assert [int(f.image[0, 0, 0]) for f in src] == [1, 2, 10]
    with open_source(str(tmp_path / "img1*.png")) as src:
        assert [int(f.image[0, 0, 0]) for f in src] == [1, 10]
    with open_source(str(tmp_path / "img2.png")) as src:
        assert len(list(src)) == 1


def test_synthetic_is_deterministic_and_live_with_fps() -> None:
    uri = "synthetic://?width=64&height=48&frames=3&seed=5&pool=2"
    with open_source(uri) as a, open_source(uri) as b:
        fa, fb = list(a), list(b)
    assert len(fa) == 3 and not a.is_live
    assert len(fa) == len(fb) and all(np.array_equal(x.image, y.image) for x, y in zip(fa, fb))
    assert np.array_equal(fa[0].image, fa[2].image) and not np.array_equal(fa[0].image, fa[1].image)
    src = open_source("synthetic://?fps=50&width=64&height=48&frames=6")
    t0 = time.monotonic()
    assert src.is_live and len(list(src)) == 6
    assert time.monotonic() - t0 >= 0.08  # paced to 50 fps


@pytest.mark.parametrize(
    ("uri", "match"),
    [
        ("foo://bar", "unknown source scheme 'foo'"),
        ("/no/such/clip.mp4", "no such file"),
        ("v4l2:///dev/video99", "no such camera device"),
        ("csi://0", "GStreamer|cannot open"),
        ("csi://front", "csi://N"),
        ("rtsp://127.0.0.1:1/stream", "cannot open|no answer"),
        ("http://127.0.0.1:1/video.mjpg", "cannot open|no answer"),
        ("synthetic://?fps=0", r"fps must be in \(0, 1000"),
        ("synthetic://?fps=nan", r"fps must be in \(0, 1000"),
        ("synthetic://?fps=inf", r"fps must be in \(0, 1000"),
        ("synthetic://?width=100000&height=100000", r"width must be an integer in \[32, 8192\]"),
        ("synthetic://?seed=-1", r"seed must be an integer in \[0, "),
        ("synthetic://?width=nan", r"width must be an integer"),
        ("synthetic://?colour=1", "unknown option"),
        ("synthetic://?width=abc", "not a number"),
    ],
)
def test_bad_uris_fail_fast_with_one_line(uri: str, match: str, tmp_path: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(UserError, match=match) as info:
        open_source(uri, timeout_s=2)
    assert time.monotonic() - t0 < 6
    assert "\n" not in str(info.value) and uri.split("?")[0] in str(info.value)


def test_empty_folder_and_unreadable_video(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no images"):
        open_source(str(tmp_path))
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(UserError, match="cannot open the video file"):
        open_source(str(bad))


class _FakeCap:
    """A cv2.VideoCapture stand-in that delivers ``n`` frames, then fails every read."""

    def __init__(self, n: int, value: int) -> None:
        self.n, self.value = n, value

    def isOpened(self) -> bool:
        return True

    def read(self) -> tuple[bool, Any]:
        if self.n == 0:
            return False, None
        self.n -= 1
        return True, np.full((4, 4, 3), self.value, np.uint8)

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        pass


def test_live_source_reconnects_with_backoff(monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(capture, "_BACKOFF_START_S", 0.01)
    opened: list[int] = []

    def opener() -> _FakeCap:
        opened.append(1)
        if len(opened) == 2:  # the first reconnect attempt fails to open
            raise RuntimeError("connection refused")
        return _FakeCap(2, len(opened))

    src = CaptureSource("rtsp://cam/1", opener, live=True, what="stream", timeout_s=1)
    with caplog.at_level(logging.WARNING, logger="edgevision.sources"):
        frames = list(itertools.islice(src, 4))
    src.close()
    assert src.is_live and [f.index for f in frames] == [0, 1, 2, 3]
    assert [int(f.image[0, 0, 0]) for f in frames] == [1, 1, 3, 3]
    text = caplog.text
    assert "stream lost; reconnecting in 0.0 s (attempt 1)" in text and "attempt 2" in text
    assert "reconnected" in text


def test_live_source_gives_up_after_max_reconnects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capture, "_BACKOFF_START_S", 0.01)
    calls: list[int] = []

    def opener() -> _FakeCap:
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("host unreachable")
        return _FakeCap(1, 7)

    src = CaptureSource("rtsp://cam/2", opener, live=True, what="stream", max_reconnects=2)
    assert len(list(src)) == 1  # the stream ends after 2 failed reconnects instead of retrying forever
    assert len(calls) == 3


def test_close_stops_a_live_source_promptly() -> None:
    src = open_source("synthetic://?fps=20&width=64&height=48")
    it = iter(src)
    next(it)
    src.close()
    t0 = time.monotonic()
    assert next(it, None) is None
    assert time.monotonic() - t0 < 0.5
