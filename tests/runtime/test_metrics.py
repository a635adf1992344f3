"""Pipeline metrics: percentiles match numpy, FPS from result times, the snapshot shape, the status line."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest

from edgevision.runtime.metrics import STAGES, Metrics, StatusPrinter, percentiles


def test_percentiles_match_numpy() -> None:
    samples = np.random.default_rng(0).gamma(2.0, 5.0, 1000)
    got = percentiles(samples)
    assert got["p50"] == pytest.approx(np.percentile(samples, 50), abs=1e-3)
    assert got["p99"] == pytest.approx(np.percentile(samples, 99), abs=1e-3)
    assert got["mean"] == pytest.approx(samples.mean(), abs=1e-3)
    assert got["max"] == pytest.approx(samples.max(), abs=1e-3)
    assert percentiles([]) == {"p50": 0.0, "p99": 0.0, "mean": 0.0, "max": 0.0}


def test_snapshot_stage_and_latency_percentiles_over_a_rolling_window() -> None:
    m = Metrics(window=100, source="clip.mp4", model="m.onnx", live=False)
    rng = np.random.default_rng(1)
    infer_s = rng.uniform(0.005, 0.050, 300)
    for v in infer_s:
        m.add("infer", float(v))
    lat_s = rng.uniform(0.01, 0.2, 50)
    t = time.monotonic()
    for i, v in enumerate(lat_s):
        m.add_result(float(v), t_done=t - 1.0 + i * 0.02)  # 50 results, 20 ms apart, all within the last 2 s
    m.add_dropped(3)
    snap = m.snapshot()
    json.dumps(snap)  # JSON-ready
    assert set(snap["stages"]) == set(STAGES) and snap["stages"]["capture"]["count"] == 0
    window = infer_s[-100:] * 1000  # only the most recent `window` samples
    assert snap["stages"]["infer"]["p50"] == pytest.approx(np.percentile(window, 50), abs=1e-3)
    assert snap["stages"]["infer"]["p99"] == pytest.approx(np.percentile(window, 99), abs=1e-3)
    assert snap["stages"]["infer"]["count"] == 300
    assert snap["latency_ms"]["p99"] == pytest.approx(np.percentile(lat_s * 1000, 99), abs=1e-3)
    assert snap["frames"] == 50 and snap["dropped"] == 3
    assert snap["fps"] == pytest.approx(50.0, rel=1e-3) and snap["fps_avg"] == pytest.approx(50.0, rel=1e-3)
    assert snap["source"] == "clip.mp4" and snap["model"] == "m.onnx" and snap["live"] is False
    assert snap["running"] is False and snap["uptime_s"] >= 0


def test_fps_counts_only_the_last_two_seconds() -> None:
    m = Metrics()
    now = time.monotonic()
    for i in range(10):
        m.add_result(0.01, t_done=now - 10 + i * 0.1)  # old burst at 10 fps
    assert m.snapshot()["fps"] == 0.0 and m.snapshot()["fps_avg"] == pytest.approx(10.0, rel=1e-3)


def test_status_line_and_summary() -> None:
    m = Metrics()
    m.add("infer", 0.012)
    m.add_result(0.02)
    line = m.status_line()
    assert "1 frames" in line and "infer 12.0 ms" in line and "\n" not in line
    summary = m.summary()
    assert "capture->result latency" in summary and "infer" in summary and "capture " not in summary


def test_status_printer_writes_lines_when_not_a_tty() -> None:
    m = Metrics()
    m.add_result(0.01)
    out = io.StringIO()
    printer = StatusPrinter(m, stream=out, interval=0.01).start()  # not a tty: every 5 x interval
    time.sleep(0.2)
    printer.stop()
    lines = out.getvalue().splitlines()
    assert lines and all("fps" in ln for ln in lines) and "\r" not in out.getvalue()
