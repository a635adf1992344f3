"""`edgevision run` and `edgevision bench --source`: torch-free, one-line errors, Ctrl-C flushes sinks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from stream_fixtures import make_bundle, make_onnx, make_video

pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

MAIN = "from edgevision.toolkit.cli import main; main()"
RUN_AND_CHECK = """
import sys
from edgevision.toolkit.cli import main
main(sys.argv[1:])
assert "torch" not in sys.modules, "edgevision run imported torch"
assert "edgevision.toolkit.data" not in sys.modules, "synthetic:// must not import the toolkit's data package"
print("NO-TORCH-OK")
"""


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    return {"bundle": make_bundle(root / "tiny"), "video": make_video(root / "clip.avi", 20), "root": root}


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", MAIN, *args], capture_output=True, text=True, timeout=timeout)


def test_run_writes_sinks_and_never_imports_torch(assets: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "res.jsonl"
    args = ["run", str(assets["bundle"]), "--source", str(assets["video"]), "--sink", f"jsonl:{out}",
            "--max-frames", "12", "--no-status"]
    proc = subprocess.run([sys.executable, "-c", RUN_AND_CHECK, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "NO-TORCH-OK" in proc.stdout
    lines = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(12)) and lines[0]["classes"] == ["b"]
    assert "frames 12, dropped 0" in proc.stderr  # the exit summary


def test_run_errors_are_one_line_with_exit_code_2(assets: dict[str, Path]) -> None:
    bundle = str(assets["bundle"])
    for args, match in (
        (["--source", "foo://x"], "unknown source scheme"),
        (["--source", str(assets["video"]), "--sink", "carrier-pigeon:out"], "unknown sink"),
        (["--source", str(assets["video"]), "--imgsz", "64"], "apply to a bare .onnx"),
        # OpenCV and FFmpeg print their own warnings on a failed open unless the CLI quiets them
        (["--source", "rtsp://127.0.0.1:1/stream", "--timeout", "5"], "rtsp://127.0.0.1:1/stream: "),
    ):
        t0 = time.monotonic()
        proc = _cli("run", bundle, "--no-status", *args)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and match in proc.stderr, proc.stderr
        assert time.monotonic() - t0 < 20


def test_run_a_bare_onnx_with_flags(assets: dict[str, Path], tmp_path: Path) -> None:
    model = make_onnx(tmp_path / "m.onnx", {"imgsz": "[32, 32]"})
    out = tmp_path / "r.jsonl"
    args = ["run", str(model), "--source", "synthetic://?width=64&height=48&frames=4&pool=1",
            "--names", "cat,dog,bird", "--sink", f"jsonl:{out}", "--no-status"]
    proc = subprocess.run([sys.executable, "-c", RUN_AND_CHECK, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "NO-TORCH-OK" in proc.stdout
    assert [json.loads(ln)["classes"] for ln in out.read_text().splitlines()] == [["dog"]] * 4


def _default_sigint() -> None:
    # A shell without job control starts background jobs with SIGINT ignored and children inherit that
    # (Python then installs no KeyboardInterrupt handler): CI run as `.ci/run &` would never see the Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(cmd: list[str], sig: int, until: Path) -> tuple[int, str]:
    """Start the CLI, wait until ``until`` has some output, send ``sig``; (exit code, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", MAIN, *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},  # SIGABRT below dumps every thread's stack
        preexec_fn=_default_sigint)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not until.exists() or until.stat().st_size < 200):
            time.sleep(0.05)
        proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"no exit 30 s after signal {sig}; the child's threads were at:\n{err[-6000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


def test_ctrl_c_stops_cleanly_and_flushes_sinks(assets: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "live.jsonl"
    code, err = _interrupt(["run", str(assets["bundle"]), "--source", "synthetic://?fps=30&width=64&height=48&pool=2",
                            "--sink", f"jsonl:{out}", "--no-status"], signal.SIGINT, out)
    assert code == 130, err
    assert "Traceback" not in err and "frames" in err
    lines = out.read_text().splitlines()
    assert lines and all(json.loads(ln)["frame"] >= 0 for ln in lines)  # every line complete


def test_sigterm_stops_cleanly_and_the_video_is_playable(assets: dict[str, Path], tmp_path: Path) -> None:
    """`docker stop` / systemd send SIGTERM: the run must close its sinks (an mp4 without its index is lost)."""
    import cv2

    out, video = tmp_path / "live.jsonl", tmp_path / "live.mp4"
    code, err = _interrupt(["run", str(assets["bundle"]), "--source", "synthetic://?fps=30&width=64&height=48&pool=2",
                            "--sink", f"jsonl:{out}", "--sink", f"video:{video}", "--no-status"], signal.SIGTERM, out)
    assert code == 0, err
    assert "stopping" in err and "Traceback" not in err
    lines = [json.loads(ln) for ln in out.read_text().splitlines()]
    cap = cv2.VideoCapture(str(video))
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert lines and frames == len(lines), (frames, len(lines))


def test_bench_with_source_reports_efficiency(assets: dict[str, Path]) -> None:
    from edgevision.toolkit.cli import cli

    res = CliRunner().invoke(cli, ["bench", str(assets["bundle"]), "--source", str(assets["video"]), "--json",
                                   "--rounds", "1", "--warmup", "2"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    for key in ("backend_fps", "pipeline_fps", "efficiency", "stages", "latency_ms", "loop_fps", "backend_fps_best"):
        assert key in r
    assert r["backend_fps"] > 0 and r["pipeline_fps"] > 0 and r["loop_fps"] > 0 and r["efficiency"] > 0
    assert r["efficiency"] == pytest.approx(r["pipeline_fps"] / r["backend_fps"], rel=1e-2)
    assert r["efficiency_loop"] == pytest.approx(r["loop_fps"] / r["backend_fps"], rel=1e-2)
    assert r["backend_fps_best"] == max(r["backend_fps"], r["backend_fps_replicas"])
    assert r["efficiency_vs_best_backend"] == pytest.approx(r["pipeline_fps"] / r["backend_fps_best"], rel=1e-2)
    assert r["efficiency_vs_best_backend"] <= r["efficiency"]
    assert r["frames"] == 20 and set(r["stages"]) == {"capture", "preprocess", "infer", "postprocess", "sink"}


def test_bench_with_a_live_source_reports_latency_against_inference(assets: dict[str, Path]) -> None:
    from edgevision.toolkit.cli import cli

    res = CliRunner().invoke(cli, ["bench", str(assets["bundle"]), "--source",
                                   "synthetic://?fps=100&width=64&height=48&pool=2", "--seconds", "1.5", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    assert r["results"] > 20 and r["fresh_frames"] is True
    assert r["latency_vs_infer"] == pytest.approx(r["latency_ms"]["p50"] / r["infer_ms_p50"], rel=1e-2)
    assert r["latency_ms"]["p50"] >= r["infer_ms_p50"]  # a result cannot arrive before its own inference ends
    assert 5 <= len(r["latency_ms_p50_windows"]) <= 10


def test_bench_without_source_keeps_latency_mode(assets: dict[str, Path]) -> None:
    from edgevision.toolkit.cli import cli

    res = CliRunner().invoke(cli, ["bench", str(assets["bundle"]), "--json", "--iters", "5", "--warmup", "1"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    assert r["latency_ms"]["median"] > 0 and r["input_shape"] == [1, 3, 32, 32]
    assert os.path.samefile(r["bundle"], assets["bundle"])


def test_streaming_modules_import_lean() -> None:
    code = ("import sys\n"
            "import edgevision.runtime.pipeline, edgevision.runtime.sources, edgevision.runtime.metrics\n"
            "import edgevision.runtime.onnx_meta, edgevision.runtime.bench, edgevision.toolkit.cli_runtime\n"
            "heavy = [m for m in ('torch', 'cv2', 'onnxruntime', 'edgevision.toolkit.data') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
