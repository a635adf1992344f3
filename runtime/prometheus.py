"""A pipeline metrics snapshot as Prometheus text exposition format (version 0.0.4).

Hand-written rather than through ``prometheus_client``: the exposition format is a few lines of text, the
values already exist in ``Metrics.snapshot()``, and a client library would add a registry and a
dependency to a device image for nothing. Latencies are exported in seconds (Prometheus' base unit) as
gauges with ``quantile`` (and, per stage, ``stage``) labels; frame counts are counters. With several streams,
the ``edgevision_stream_*`` families repeat the counts per stream with ``stream`` (id), ``name`` and ``source``
labels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["to_prometheus"]

PREFIX = "edgevision_"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "NaN"
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(int(v)) if v.is_integer() and abs(v) < 2**53 else f"{v:.9g}"


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str,
               samples: list[tuple[dict[str, str], Any]]) -> None:
        full = PREFIX + name
        self.lines.append(f"# HELP {full} {help_text}")
        self.lines.append(f"# TYPE {full} {kind}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            self.lines.append(f"{full}{{{lab}}} {_num(value)}" if lab else f"{full} {_num(value)}")


def _quantiles(stats: Mapping[str, Any], labels: dict[str, str]) -> list[tuple[dict[str, str], Any]]:
    out: list[tuple[dict[str, str], Any]] = []
    for key, q in (("p50", "0.5"), ("p99", "0.99")):
        if key in stats:
            out.append(({**labels, "quantile": q}, float(stats[key]) / 1000.0))
    return out


def _streams(w: _Writer, streams: Any) -> None:
    if not isinstance(streams, list) or not streams:
        return
    rows = [(st, {"stream": str(st.get("id", i)), "name": str(st.get("name", "")), "source": str(st.get("source", ""))})
            for i, st in enumerate(streams) if isinstance(st, Mapping)]
    w.family("stream_frames_total", "counter", "Results produced, per stream.",
             [(lab, st.get("frames", 0)) for st, lab in rows])
    w.family("stream_dropped_frames_total", "counter", "Frames dropped by the newest-frame policy, per stream.",
             [(lab, st.get("dropped", 0)) for st, lab in rows])
    w.family("stream_fps", "gauge", "Results per second over the last few seconds, per stream.",
             [(lab, st.get("fps", 0)) for st, lab in rows])
    samples: list[tuple[dict[str, str], Any]] = []
    for st, lab in rows:
        if isinstance(st.get("latency_ms"), Mapping):
            samples += _quantiles(st["latency_ms"], lab)
    w.family("stream_e2e_latency_seconds", "gauge", "Capture-to-result latency, per stream.", samples)
    w.family("stream_up", "gauge", "0 once a stream ended with an error, else 1.",
             [(lab, 0 if st.get("error") else 1) for st, lab in rows])


def to_prometheus(snapshot: Mapping[str, Any],
                  extra_counters: Mapping[str, tuple[float, str]] | None = None) -> str:
    """Render ``Metrics.snapshot()`` (keys ``frames``, ``dropped``, ``fps``, ``latency_ms``, ``stages``, ...).

    Missing keys are skipped, so a partial snapshot still renders. ``extra_counters`` maps
    ``name -> (value, help)`` for more ``edgevision_<name>`` counters (names should end in ``_total``).
    """
    w = _Writer()
    if "fps" in snapshot:
        w.family("fps", "gauge", "Results per second over the last few seconds.", [({}, snapshot["fps"])])
    if "fps_avg" in snapshot:
        w.family("fps_avg", "gauge", "Results per second since the first result.", [({}, snapshot["fps_avg"])])
    if "frames" in snapshot:
        w.family("frames_total", "counter", "Results produced.", [({}, snapshot["frames"])])
    if "dropped" in snapshot:
        w.family("dropped_frames_total", "counter", "Frames dropped by the newest-frame policy.",
                 [({}, snapshot["dropped"])])
    if "uptime_s" in snapshot:
        w.family("uptime_seconds", "gauge", "Seconds since the pipeline started.", [({}, snapshot["uptime_s"])])
    lat = snapshot.get("latency_ms")
    if isinstance(lat, Mapping):
        w.family("e2e_latency_seconds", "gauge", "Capture-to-result latency.", _quantiles(lat, {}))
        if "mean" in lat:
            w.family("e2e_latency_mean_seconds", "gauge", "Mean capture-to-result latency.",
                     [({}, float(lat["mean"]) / 1000.0)])
    stages = snapshot.get("stages")
    if isinstance(stages, Mapping) and stages:
        samples = []
        for stage, st in stages.items():
            if isinstance(st, Mapping):
                samples += _quantiles(st, {"stage": str(stage)})
        w.family("stage_latency_seconds", "gauge", "Per-stage latency.", samples)
    if "fps_steady" in snapshot:
        w.family("fps_steady", "gauge", "Results per second from the first result to the last.",
                 [({}, snapshot["fps_steady"])])
    if "fps_wall" in snapshot:
        w.family("fps_wall", "gauge", "Results per second from the start (model open included) to the last result.",
                 [({}, snapshot["fps_wall"])])
    _streams(w, snapshot.get("streams"))
    if "running" in snapshot:
        w.family("running", "gauge", "1 while the pipeline runs.", [({}, 1 if snapshot["running"] else 0)])
    info = {k: str(snapshot[k]) for k in ("source", "model", "backend") if snapshot.get(k) not in (None, "")}
    if info:
        w.family("info", "gauge", "Source, model and backend of this run.", [(info, 1)])
    for name, (value, help_text) in (extra_counters or {}).items():
        w.family(name, "counter", help_text, [({}, value)])
    return "\n".join(w.lines) + "\n"
