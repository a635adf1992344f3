"""HTTP live viewer over loopback: JSON, Prometheus text, MJPEG parts, token, binding, shutdown."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from edgevision.runtime.errors import UserError
from edgevision.runtime.frames import Frame
from edgevision.runtime.prometheus import to_prometheus
from edgevision.runtime.results import Detections
from edgevision.runtime.sinks.viewer import LiveViewer

cv2 = pytest.importorskip("cv2")

NAMES = ["circle", "square"]


def publish(viewer: LiveViewer, i: int) -> None:
    img = np.full((96, 128, 3), (i * 7) % 200, np.uint8)
    t = time.monotonic()
    d = Detections(np.array([[10, 10, 60, 50]], np.float32), np.array([0.9], np.float32), np.array([1]))
    d.meta = {"t_capture": t - 0.01, "t_result": t, "latency_ms": 10.0}
    viewer.publish(Frame(image=img, index=i, timestamp=t - 0.01), d)


@pytest.fixture
def live() -> Iterator[LiveViewer]:
    """A viewer on a free loopback port fed ~50 frames/s until the test ends."""
    viewer = LiveViewer("127.0.0.1", 0, class_names=NAMES)
    stop = threading.Event()

    def feed() -> None:
        i = 0
        while not stop.wait(0.02):
            publish(viewer, i)
            i += 1

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    yield viewer
    stop.set()
    t.join()
    viewer.close()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def wait_for(cond: Any, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def read_part(stream: Any) -> tuple[dict[str, str], bytes]:
    """Read one ``--frame`` part of a multipart/x-mixed-replace body."""
    line = stream.readline()
    while line.strip() == b"":
        line = stream.readline()
    assert line.strip() == b"--frame", line
    headers = {}
    while (line := stream.readline().strip()) != b"":
        k, v = line.decode().split(":", 1)
        headers[k.strip().lower()] = v.strip()
    body = stream.read(int(headers["content-length"]))
    return headers, body


def test_binds_loopback_by_default_and_url() -> None:
    with LiveViewer(port=0) as v:
        assert v.host == "127.0.0.1" and v._server.server_address[0] == "127.0.0.1"
        assert v.url == f"http://127.0.0.1:{v.port}/" and v.port > 0
        assert get(v.url + "healthz")[0] == 200


def test_page_and_latest_json(live: LiveViewer) -> None:
    code, ctype, body = get(live.url)
    assert code == 200 and ctype.startswith("text/html") and b"stream.mjpg" in body and b"api/latest" in body
    wait_for(lambda: live.stats()["frames"] >= 3)
    code, ctype, body = get(live.url + "api/latest")
    d = json.loads(body)
    assert code == 200 and ctype == "application/json"
    assert d["streams"] == [0] and d["result"]["classes"] == ["square"] and d["result"]["frame"] >= 2
    assert d["result"]["boxes"] == [[10.0, 10.0, 60.0, 50.0]] and d["result"]["image_size"] == [96, 128]
    assert d["stats"]["frames"] >= 3 and d["stats"]["fps"] > 0 and d["stats"]["latency_ms"]["p50"] == 10.0
    assert get(live.url + "nope")[0] == 404 and get(live.url + "api/latest?stream=x")[0] == 400


SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*",?)*\})? '
                    r"(-?[0-9.e+-]+|NaN|[+-]Inf)$")
META = re.compile(r"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]*( .*)?$")


def check_prometheus(text: str) -> dict[str, float]:
    assert text.endswith("\n")
    samples: dict[str, float] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert META.match(line), line
            if line.startswith("# TYPE"):
                _, _, name, kind = line.split(" ")
                assert kind in ("gauge", "counter") and name not in types
                types[name] = kind
            continue
        assert SAMPLE.match(line), line
        key, value = line.rsplit(" ", 1)
        assert key.split("{")[0] in types, f"sample before its # TYPE: {line}"
        samples[key] = float(value)
    return samples


def test_metrics_prometheus_text(live: LiveViewer) -> None:
    wait_for(lambda: live.stats()["frames"] >= 3)
    code, ctype, body = get(live.url + "metrics")
    assert code == 200 and ctype.startswith("text/plain; version=0.0.4")
    s = check_prometheus(body.decode())
    assert s["edgevision_frames_total"] >= 3 and s["edgevision_fps"] > 0
    assert s['edgevision_e2e_latency_seconds{quantile="0.99"}'] == pytest.approx(0.01)


def test_prometheus_from_a_pipeline_snapshot() -> None:
    stage = {"p50": 2.0, "p99": 4.5, "mean": 2.2, "count": 10}
    snap = {"frames": 10, "dropped": 2, "fps": 29.5, "fps_avg": 28.0, "uptime_s": 1.5,
            "latency_ms": {"p50": 20.0, "p99": 40.0, "mean": 21.0, "max": 50.0},
            "stages": {k: stage for k in ("capture", "preprocess", "infer", "postprocess", "sink")},
            "source": 'syn"thetic://', "model": "m", "backend": "onnxruntime", "live": True, "running": True}
    s = check_prometheus(to_prometheus(snap, {"viewer_jpeg_frames_total": (3, "JPEGs.")}))
    assert s["edgevision_dropped_frames_total"] == 2 and s["edgevision_frames_total"] == 10
    assert s['edgevision_stage_latency_seconds{stage="infer",quantile="0.99"}'] == pytest.approx(0.0045)
    assert s['edgevision_e2e_latency_seconds{quantile="0.5"}'] == pytest.approx(0.02)
    assert s['edgevision_info{source="syn\\"thetic://",model="m",backend="onnxruntime"}'] == 1
    with LiveViewer(port=0, snapshot=lambda: snap) as v:
        assert json.loads(get(v.url + "api/latest")[2])["stats"]["dropped"] == 2


def test_mjpeg_stream_shares_one_encoding(live: LiveViewer) -> None:
    wait_for(lambda: live.stats()["frames"] >= 2)
    time.sleep(0.2)
    assert live.jpeg_frames == 0, "nothing is encoded while nobody watches"
    r1 = urllib.request.urlopen(live.url + "stream.mjpg", timeout=5)
    r2 = urllib.request.urlopen(live.url + "stream.mjpg", timeout=5)
    try:
        assert r1.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
        frames0 = live.stats()["frames"]
        for _ in range(5):
            for r in (r1, r2):
                headers, jpeg = read_part(r)
                assert headers["content-type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (96, 128, 3)
        published = live.stats()["frames"] - frames0 + 2
        assert live.jpeg_frames <= published, "one encoding per frame, shared by both clients"
        assert json.loads(get(live.url + "api/latest")[2])["viewer"]["clients"] == 2
    finally:
        r1.close()
        r2.close()
    wait_for(lambda: json.loads(get(live.url + "api/latest")[2])["viewer"]["clients"] == 0)


def test_publish_is_cheap_while_watched(live: LiveViewer) -> None:
    with urllib.request.urlopen(live.url + "stream.mjpg", timeout=5) as r:
        read_part(r)
        t = time.perf_counter()
        for i in range(2000):
            publish(live, i)
        per_call = (time.perf_counter() - t) / 2000
    assert per_call < 1e-3, f"publish took {per_call * 1e6:.0f} us: must not encode in the caller"


def test_token(live: LiveViewer) -> None:
    live.token = "s3cret"
    for path in ("", "api/latest", "metrics", "stream.mjpg"):
        assert get(live.url + path)[0] == 401
        assert get(live.url + path + "?token=wrong")[0] == 401
    assert get(live.url + "api/latest?token=s3cret")[0] == 200
    assert get(live.url + "metrics", {"Authorization": "Bearer s3cret"})[0] == 200
    assert get(live.url + "healthz")[0] == 200, "liveness probes need no token"


def test_port_in_use_and_clean_shutdown() -> None:
    v = LiveViewer(port=0)
    with pytest.raises(UserError, match=f"{v.port}.*pick another"):
        LiveViewer(port=v.port)
    publish(v, 0)
    r = urllib.request.urlopen(v.url + "stream.mjpg", timeout=5)
    read_part(r)
    t = time.monotonic()
    v.close()
    v.close()
    assert time.monotonic() - t < 3
    assert all(not th.is_alive() for th in v._threads)
    r.read()  # the open stream reaches EOF (a hang would raise the 5 s socket timeout)
    r.close()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", v.port), timeout=1):
        pass


def test_empty_or_failing_snapshot_falls_back_to_own_counts() -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    for snap in (dict, broken):
        with LiveViewer(port=0, snapshot=snap) as v:
            publish(v, 0)
            stats = json.loads(get(v.url + "api/latest")[2])["stats"]
            assert stats["frames"] == 1 and "latency_ms" in stats
