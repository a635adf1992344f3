"""Pipeline metrics: per-stage latency, capture -> result latency, FPS and dropped frames.

Thread-safe counters fed by the pipeline's stage threads. Percentiles are computed over a rolling window
of the most recent samples (so a live status shows the present, not the average since start) with numpy's
default linear interpolation. ``snapshot()`` is the one JSON-ready view that the status line, the exit
summary, ``edgevision bench`` and the HTTP viewer's JSON and Prometheus endpoints all read
(``prometheus.to_prometheus`` renders it for ``/metrics``).

Two average rates, named for what they count: ``fps_steady`` (alias ``fps_avg``) from the first result to
the last, the pipeline's own rate; ``fps_wall`` from ``t_begin`` (the command's start; by default this
object's creation, before the model opens) to the last result, what a user waits for (issue #18's 300-frame
file run: 104.6 fps from the first result, 78.0 by wall clock). With several streams, ``streams`` holds the
same counts per stream (id, name, source, frames, drops, rates, latency, the error that ended it).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, TextIO

import numpy as np

__all__ = ["STAGES", "Metrics", "StatusPrinter", "percentiles"]

#: Pipeline stages, in order; ``snapshot()["stages"]`` always has all of them.
STAGES = ("capture", "preprocess", "infer", "postprocess", "sink")
_FPS_WINDOW_S = 2.0


def percentiles(samples_ms: Any) -> dict[str, float]:
    """p50 / p99 / mean / max of a sample (ms), rounded to 3 decimals; zeros when empty."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        return {"p50": 0.0, "p99": 0.0, "mean": 0.0, "max": 0.0}
    p50, p99 = np.percentile(a, [50, 99])
    return {"p50": round(float(p50), 3), "p99": round(float(p99), 3), "mean": round(float(a.mean()), 3),
            "max": round(float(a.max()), 3)}


class _Stream:
    """One stream's counters (``Metrics`` holds one per stream id)."""

    def __init__(self, sid: int, name: str, source: str, window: int) -> None:
        self.sid, self.name, self.source = sid, name, source
        self.frames = self.dropped = 0
        self.latency: deque[float] = deque(maxlen=window)
        self.done: deque[float] = deque(maxlen=window)
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.error = ""

    def add(self, latency_ms: float, t: float) -> None:
        self.frames += 1
        self.latency.append(latency_ms)
        self.done.append(t)
        if self.t_first is None:
            self.t_first = t
        self.t_last = t

    def view(self, now: float) -> dict[str, Any]:
        span = (self.t_last - self.t_first) if self.t_first is not None and self.t_last is not None else 0.0
        out = {"id": self.sid, "name": self.name, "source": self.source, "frames": self.frames,
               "dropped": self.dropped, "fps": round(_window_fps(self.done, now), 3),
               "fps_steady": round((self.frames - 1) / span, 3) if span > 0 else 0.0,
               "latency_ms": percentiles(list(self.latency))}
        if self.error:
            out["error"] = self.error
        return out


def _window_fps(done: deque[float], now: float) -> float:
    recent = [t for t in done if t >= now - _FPS_WINDOW_S]
    if len(recent) < 2 or recent[-1] <= recent[0]:
        return 0.0
    return (len(recent) - 1) / (recent[-1] - recent[0])


class Metrics:
    """Collects timings from the pipeline threads; read with ``snapshot()``.

    ``streams``: ``(stream id, name, source URI)`` of each stream, for the per-stream counts.
    """

    def __init__(self, window: int = 2048, *, source: str = "", model: str = "", backend: str = "",
                 live: bool = False, streams: Sequence[tuple[int, str, str]] = ()) -> None:
        self._lock = threading.Lock()
        self._window = window
        self._stages: dict[str, deque[float]] = {s: deque(maxlen=window) for s in STAGES}
        self._counts = dict.fromkeys(STAGES, 0)
        self._latency: deque[float] = deque(maxlen=window)
        self._done: deque[float] = deque(maxlen=window)
        self.info = {"source": source, "model": model, "backend": backend, "live": live}
        self.frames = 0
        self.dropped = 0
        self.running = False
        self.t_start = time.monotonic()
        self.t_begin = self.t_start  # fps_wall counts from here: set it to the command's start
        self._streams = {sid: _Stream(sid, name, uri, window) for sid, name, uri in streams}
        self._t_first: float | None = None
        self._t_last: float | None = None

    def add(self, stage: str, seconds: float) -> None:
        """One sample of ``stage``'s duration."""
        with self._lock:
            self._stages[stage].append(seconds * 1000.0)
            self._counts[stage] += 1

    def add_result(self, latency_s: float, t_done: float | None = None, stream: int | None = None) -> None:
        """A result is ready; ``latency_s`` is capture -> result; ``stream``: its stream id."""
        t = time.monotonic() if t_done is None else t_done
        with self._lock:
            st = self._streams.get(stream) if stream is not None else None
            if st is not None:
                st.add(latency_s * 1000.0, t)
            self.frames += 1
            self._latency.append(latency_s * 1000.0)
            self._done.append(t)
            if self._t_first is None:
                self._t_first = t
            self._t_last = t

    def add_dropped(self, n: int = 1, stream: int | None = None) -> None:
        with self._lock:
            self.dropped += n
            st = self._streams.get(stream) if stream is not None else None
            if st is not None:
                st.dropped += n

    def stream_error(self, stream: int, line: str) -> None:
        """The one line a stream ended with (a source that failed among several)."""
        with self._lock:
            if stream in self._streams:
                self._streams[stream].error = line

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready state: counts, FPS, capture -> result latency and per-stage latency (ms)."""
        now = time.monotonic()
        with self._lock:
            stages = {s: {**percentiles(list(d)), "count": self._counts[s]} for s, d in self._stages.items()}
            for s in stages.values():
                s.pop("max")
            first, last = self._t_first, self._t_last
            span = (last - first) if first is not None and last is not None else 0.0
            steady = round((self.frames - 1) / span, 3) if span > 0 else 0.0
            wall = last - self.t_begin if last is not None else 0.0
            out = {
                "frames": self.frames,
                "dropped": self.dropped,
                "fps": round(_window_fps(self._done, now), 3),
                "fps_avg": steady,
                "fps_steady": steady,
                "fps_wall": round(self.frames / wall, 3) if wall > 0 else 0.0,
                "startup_s": round(first - self.t_begin, 3) if first is not None else None,
                "uptime_s": round(now - self.t_start, 3),
                "latency_ms": percentiles(list(self._latency)),
                "stages": stages,
                **self.info,
                "running": self.running,
            }
            if self._streams:
                out["streams"] = [st.view(now) for st in self._streams.values()]
            return out

    def status_line(self) -> str:
        s = self.snapshot()
        st = s["stages"]
        return (f"{s['frames']} frames  {s['fps']:.1f} fps  latency p50 {s['latency_ms']['p50']:.1f} / "
                f"p99 {s['latency_ms']['p99']:.1f} ms  infer {st['infer']['p50']:.1f} ms  "
                f"dropped {s['dropped']}")

    def summary(self) -> str:
        """Multi-line report printed at exit."""
        s = self.snapshot()
        lines = [f"frames {s['frames']}, dropped {s['dropped']}, {s['fps_steady']:.2f} fps steady (first to last "
                 f"result), {s['fps_wall']:.2f} fps wall (from start, incl. model open), uptime {s['uptime_s']:.1f} s",
                 f"capture->result latency ms: p50 {s['latency_ms']['p50']:.2f}  p99 {s['latency_ms']['p99']:.2f}"
                 f"  max {s['latency_ms']['max']:.2f}"]
        for name, v in s["stages"].items():
            if v["count"]:
                lines.append(f"  {name:<12s} p50 {v['p50']:8.2f} ms  p99 {v['p99']:8.2f} ms  n={v['count']}")
        for st in s.get("streams", []) if len(s.get("streams", [])) > 1 else []:
            lines.append(f"  stream {st['id']} {st['name']}: {st['frames']} frames, dropped {st['dropped']}, "
                         f"{st['fps_steady']:.2f} fps steady, latency p50 {st['latency_ms']['p50']:.2f} / p99 "
                         f"{st['latency_ms']['p99']:.2f} ms" + (f"; ERROR {st['error']}" if "error" in st else ""))
        return "\n".join(lines)


class StatusPrinter:
    """A daemon thread printing ``metrics.status_line()`` to stderr every ``interval`` seconds.

    On a terminal the line is rewritten in place (``\\r``); otherwise (a log file) a full line is printed
    every ``5 * interval`` seconds so logs stay readable.
    """

    def __init__(self, metrics: Metrics, stream: TextIO | None = None, interval: float = 1.0) -> None:
        self.metrics = metrics
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if self.tty else 5 * interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="edgevision-status", daemon=True)
        self._printed = False

    def start(self) -> StatusPrinter:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            line = self.metrics.status_line()
            self.stream.write(f"\r\x1b[2K{line}" if self.tty else line + "\n")
            self.stream.flush()
            self._printed = True

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        if self._printed and self.tty:
            self.stream.write("\n")
            self.stream.flush()

