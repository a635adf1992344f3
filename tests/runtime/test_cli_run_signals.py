"""Ctrl-C and SIGTERM during `edgevision run` are never lost, whatever code runs when they come.

What a user relies on: one Ctrl-C stops the run (exit 130; SIGTERM: exit 0), every computed result is in the
JSON lines and the video is playable; before the first result nothing is left behind. Python's own SIGINT
raises KeyboardInterrupt in whatever the main thread runs, and inside a finalizer or a weakref callback (the
garbage collector runs them at any allocation) it is printed as "Exception ignored" and dropped: 1 of 100
runs of scripts/chaos-interrupt then ran on for a minute. These tests deliver the signal inside a finalizer,
deterministically, once the pipeline runs and while the model loads.

The command is started the way the installed console script starts it (``[project.scripts]`` in
pyproject.toml), after the child wraps one function of the run with the finalizer.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from stream_fixtures import make_bundle

ROOT = Path(__file__).resolve().parents[2]
FRAMES = 150  # 5 s at 30 fps: a lost signal lets the run reach the source's end

# the finalizer sends the signal to its own process and waits in it: the handler runs inside __del__
CHILD = """
import os, signal, sys, time
SIG = int(sys.argv.pop(1))
WHERE = sys.argv.pop(1)

class Trap:
    def __del__(self):
        os.kill(os.getpid(), SIG)
        time.sleep(0.3)

if WHERE == "load":  # before the pipeline exists: the model is loading
    from edgevision.toolkit import cli_runtime
    original = cli_runtime._load
    def wrapped(*a, **k):
        Trap()
        return original(*a, **k)
    cli_runtime._load = wrapped
else:  # the pipeline runs: a finalizer after its first results
    from edgevision.runtime import pipeline
    original = pipeline.Pipeline.start
    def wrapped(self, *a, **k):
        started = original(self, *a, **k)
        while self.metrics.snapshot()["frames"] < 5:
            time.sleep(0.01)
        Trap()
        return started
    pipeline.Pipeline.start = wrapped
"""


def _entry() -> str:
    m = re.search(r'^edgevision = "([\w.]+):(\w+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert m, "pyproject.toml has no [project.scripts] edgevision entry"
    return f"from {m.group(1)} import {m.group(2)}; sys.exit({m.group(2)}())"


def _default_sigint() -> None:
    # a shell without job control starts jobs with SIGINT ignored; the run rightly leaves it ignored
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _run_with_trap(tmp_path: Path, sig: int, where: str) -> tuple[int, str, Path, Path]:
    bundle = make_bundle(tmp_path / "tiny")
    video, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    argv = [sys.executable, "-c", CHILD + _entry(), str(int(sig)), where, "run", str(bundle),
            "--source", f"synthetic://?fps=30&width=64&height=48&pool=2&frames={FRAMES}",
            "--sink", f"video:{video}", "--sink", f"jsonl:{jsonl}", "--no-status"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, preexec_fn=_default_sigint,
                          env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    return proc.returncode, proc.stderr, video, jsonl


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_signal_inside_a_finalizer_stops_the_running_pipeline(tmp_path: Path, sig: int) -> None:
    import cv2

    code, err, video, jsonl = _run_with_trap(tmp_path, sig, "pipeline")
    assert code == (130 if sig == signal.SIGINT else 0), err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    lines = [json.loads(ln) for ln in jsonl.read_text().splitlines()]
    assert 5 <= len(lines) < FRAMES, f"{len(lines)} results: the signal did not stop the run\n{err}"
    computed = re.search(r"frames (\d+)", err)
    assert computed and int(computed.group(1)) == len(lines), err  # every computed result written
    cap = cv2.VideoCapture(str(video))
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert frames == len(lines)
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_signal_inside_a_finalizer_while_the_model_loads_exits_at_once(tmp_path: Path, sig: int) -> None:
    code, err, video, jsonl = _run_with_trap(tmp_path, sig, "load")
    assert code == 128 + sig, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert err.strip().splitlines() == (["interrupted"] if sig == signal.SIGINT else [f"terminated by signal {sig}"])
    assert not video.exists() and not jsonl.exists()  # nothing was computed: nothing is left
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_commands_other_than_run_get_python_ctrl_c_back() -> None:
    """The start-up guard exits at once; a command that has started needs Python's KeyboardInterrupt (its own
    clean-up), except ``run``, which puts its own handler in place of the guard."""
    import click

    from edgevision.toolkit import entry
    from edgevision.toolkit.cli import cli

    seen: dict[str, object] = {}

    @click.command("probe-sigint")
    def probe() -> None:
        seen["handler"] = signal.getsignal(signal.SIGINT)

    previous = signal.signal(signal.SIGINT, entry._exit_at_once)
    cli.add_command(probe)
    try:
        cli.main(args=["probe-sigint"], prog_name="edgevision", standalone_mode=False)
    finally:
        cli.commands.pop("probe-sigint")
        signal.signal(signal.SIGINT, previous)
    assert seen["handler"] is signal.default_int_handler
