"""Sinks under faults: a full disk (a real 1-2 MiB tmpfs, else injected ENOSPC/EIO), killed runs, failed runs.

What a user relies on: a write error stops the run with one line and exit code != 0, no file appears under
the requested name unless it is complete, every JSON line parses, and a run that fails leaves nothing.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from stream_fixtures import make_bundle

from edgevision.runtime.frames import Frame
from edgevision.runtime.results import Detections
from edgevision.runtime.sinks.base import SinkWriteError
from edgevision.runtime.sinks.files import JsonlSink, VideoSink, remove_dead_temps

cv2 = pytest.importorskip("cv2")
MAIN = "from edgevision.toolkit.cli import main; main()"


def noise_frame(i: int, h: int = 240, w: int = 320) -> Frame:
    """Incompressible pixels, so a small disk fills within a few dozen frames."""
    img = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Frame(image=img, index=i, timestamp=time.monotonic(), stream_id=0, source="test")


def det() -> Detections:
    d = Detections(np.array([[20, 30, 80, 90]], np.float32), np.array([0.87], np.float32), np.array([1], np.int64))
    d.meta = {"t_capture": time.monotonic(), "t_result": time.monotonic(), "latency_ms": 1.0}
    return d


def _mount_tmpfs(d: Path, size: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("a tmpfs needs root to mount; the injected-ENOSPC tests cover the same paths")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"mount -t tmpfs not permitted here ({proc.stderr.strip()})")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "disk"
    _mount_tmpfs(d, "1m")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_jsonl_on_a_full_tmpfs_stops_with_whole_lines(small_disk: Path) -> None:
    path = small_disk / "r.jsonl"
    sink = JsonlSink(path)
    # a big class list makes lines long (~6 KB), so the 1 MiB disk fills mid-line
    sink.class_names = [f"class-{i:04d}-" + "x" * 40 for i in range(2)]
    big = Detections(np.tile(np.array([[1, 2, 3, 4]], np.float32), (120, 1)), np.full(120, 0.5, np.float32),
                     np.ones(120, np.int64))
    with pytest.raises(SinkWriteError, match=r"r\.jsonl: cannot write \(No space left on device\)") as info:
        for i in range(100_000):
            sink.write(Frame(np.zeros((8, 8, 3), np.uint8), i, time.monotonic(), 0, "t"), big)
    assert "\n" not in str(info.value)
    sink.close()
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) - 1 == sink.lines_written > 10
    assert [json.loads(ln)["frame"] for ln in lines[:-1]] == list(range(sink.lines_written))


@pytest.mark.parametrize("space_check", [True, False], ids=["free-space-check", "read-back-only"])
def test_video_on_a_full_tmpfs_leaves_no_file(small_disk: Path, space_check: bool,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    if not space_check:  # the read-back at close must catch what the free-space check would have
        monkeypatch.setattr("edgevision.runtime.sinks.files._MIN_FREE_BYTES", 0)
    path = small_disk / "v.avi"
    sink = VideoSink(path, fps=10)
    with pytest.raises(SinkWriteError, match=r"v\.avi") as info:
        for i in range(400):  # ~100 KB per MJPG noise frame: the 1 MiB disk is full after about ten
            sink.write(noise_frame(i), det())
        sink.close()
    assert "\n" not in str(info.value)
    sink.close()
    assert list(small_disk.iterdir()) == [], "nothing under the target name, no temp left"


def test_injected_enospc_cuts_the_partial_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.jsonl"
    sink = JsonlSink(path)
    real_write, calls = os.write, [0]

    def flaky(fd: int, data: bytes | memoryview) -> int:
        calls[0] += 1
        if calls[0] == 4:
            return real_write(fd, bytes(data)[:7])  # a short write: half a line reached the disk ...
        if calls[0] == 5:
            raise OSError(errno.EIO, os.strerror(errno.EIO))  # ... and the rest failed
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", flaky)
    with pytest.raises(SinkWriteError, match=r"Input/output error.*first 3 results"):
        for i in range(10):
            sink.write(Frame(np.zeros((8, 8, 3), np.uint8), i, time.monotonic(), 0, "t"), det())
    sink.close()
    assert [json.loads(ln)["frame"] for ln in path.read_text().splitlines()] == [0, 1, 2]


def test_video_incomplete_on_disk_is_never_renamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "v.mp4"
    sink = VideoSink(path, fps=10)
    for i in range(5):
        sink.write(noise_frame(i, 48, 64), det())
    monkeypatch.setattr(sink, "_frames_on_disk", lambda: 3)  # as if the encoder lost the last frames
    with pytest.raises(SinkWriteError, match="holds 3 of 5 frames"):
        sink.close()
    assert list(tmp_path.iterdir()) == []


def test_file_sinks_create_nothing_before_the_first_result(tmp_path: Path) -> None:
    v, j = VideoSink(tmp_path / "sub" / "v.mp4", 30), JsonlSink(tmp_path / "sub2" / "r.jsonl")
    v.close()
    j.close()
    assert list(tmp_path.iterdir()) == []


def test_temp_videos_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"v.tmp-{dead.pid}-abc123.mp4"
    live = tmp_path / f"v.tmp-{os.getppid()}-def456.mp4"  # our parent runs: its temp is in use
    stale.write_bytes(b"x")
    live.write_bytes(b"x")
    sink = VideoSink(tmp_path / "v.mp4", fps=10)
    sink.write(noise_frame(0, 48, 64), det())  # the sink opens its file (and cleans) at the first frame
    sink.close()
    assert not stale.exists() and live.exists()
    assert remove_dead_temps(tmp_path / "v.mp4") == 0


# -- the CLI: a failed run leaves nothing; a full disk is one line and exit != 0 ------------------------------

@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    return make_bundle(tmp_path_factory.mktemp("faults") / "tiny")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", MAIN, "run", *args, "--no-status"], capture_output=True,
                          text=True, timeout=120)


def test_a_model_that_cannot_open_fails_before_any_output(bundle: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    data = (broken / "model.onnx").read_bytes()
    (broken / "model.onnx").write_bytes(data[: len(data) // 2])  # truncated
    out = tmp_path / "out"
    proc = _run(str(broken), "--source", "synthetic://?frames=5&width=64&height=48",
                "--sink", f"jsonl:{out / 'r.jsonl'}", "--sink", f"video:{out / 'v.mp4'}")
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr  # no stats block
    assert "Traceback" not in proc.stderr and not out.exists()


def test_full_disk_under_the_cli_is_one_line(bundle: Path, small_disk: Path) -> None:
    for sink in ("jsonl:r.jsonl", "video:v.avi"):
        kind, name = sink.split(":")
        proc = _run(str(bundle), "--source", "synthetic://?frames=100000&width=320&height=240&pool=8",
                    "--sink", f"{kind}:{small_disk / name}")
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert "No space left" in proc.stderr or "disk full" in proc.stderr, proc.stderr
        if kind == "video":
            assert not (small_disk / name).exists()
        else:
            assert all(json.loads(ln) for ln in (small_disk / name).read_text().splitlines())
        for p in small_disk.iterdir():
            p.unlink()


# -- several sinks failing in one run: the first error is the run's one line, the others join it ----------------

class FailingSink:
    """Raises ``SinkWriteError`` on the ``fail_at``-th write, or at ``close`` (a video whose read-back fails)."""

    def __init__(self, name: str, fail_at: int | None = None, fail_close: bool = False) -> None:
        self.name, self.fail_at, self.fail_close = name, fail_at, fail_close
        self.writes = 0
        self.closed = 0

    def write(self, frame: Frame, detections: Detections) -> None:
        self.writes += 1
        if self.writes == self.fail_at:
            raise SinkWriteError(f"{self.name}: cannot write (No space left on device)")

    def close(self) -> None:
        self.closed += 1
        if self.fail_close:
            raise SinkWriteError(f"{self.name}: the finished file holds 0 of {self.writes} frames")


def test_write_error_stays_the_runs_error_and_close_errors_join_it(bundle: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from edgevision.runtime.pipeline import Pipeline

    jsonl, video = FailingSink("jsonl sink r.jsonl", fail_at=3), FailingSink("video sink v.mp4", fail_close=True)
    pipe = Pipeline(bundle, "synthetic://?frames=50&width=64&height=48", [jsonl, video])
    with caplog.at_level("ERROR", logger="edgevision"), pytest.raises(SinkWriteError) as info:
        pipe.run()
    msg = str(info.value)
    assert msg.startswith("jsonl sink r.jsonl: cannot write"), msg  # the error that stopped the run comes first
    assert "video sink v.mp4: the finished file holds 0 of" in msg and "\n" not in msg
    assert jsonl.closed == video.closed == 1
    assert [r.getMessage() for r in caplog.records] == [], "an error returned is not also logged (two lines)"


def test_one_close_error_is_reported_once(bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    from edgevision.runtime.pipeline import Pipeline

    video = FailingSink("video sink v.avi", fail_close=True)
    with caplog.at_level("ERROR", logger="edgevision"), pytest.raises(SinkWriteError, match="holds 0 of 5 frames"):
        Pipeline(bundle, "synthetic://?frames=5&width=64&height=48", [video]).run()
    assert [r.getMessage() for r in caplog.records] == []


def test_full_disk_found_at_close_is_one_line(bundle: Path, small_disk: Path) -> None:
    """The source ends before the free-space check: the read-back at close finds the loss (was two lines)."""
    proc = _run(str(bundle), "--source", "synthetic://?frames=40&width=1280&height=720&pool=2",
                "--sink", f"video:{small_disk / 'v.avi'}")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: video sink") and "Traceback" not in proc.stderr, proc.stderr
    assert list(small_disk.iterdir()) == []


def test_two_sinks_on_one_full_disk_are_one_line(bundle: Path, small_disk: Path) -> None:
    proc = _run(str(bundle), "--source", "synthetic://?frames=100000&width=320&height=240&pool=8",
                "--sink", f"jsonl:{small_disk / 'r.jsonl'}", "--sink", f"video:{small_disk / 'v.avi'}")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "No space left" in proc.stderr or "disk full" in proc.stderr, proc.stderr
    assert sorted(p.name for p in small_disk.iterdir()) in (["r.jsonl"], ["r.jsonl", "v.avi"])
    assert all(json.loads(ln) for ln in (small_disk / "r.jsonl").read_text().splitlines())
