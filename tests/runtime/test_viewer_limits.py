"""The live viewer cannot be exhausted: stream ids, client cap, timeouts, slow readers, token rules (loopback only)."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
from test_viewer import get, publish, read_part, wait_for

from edgevision.runtime.errors import UserError
from edgevision.runtime.frames import Frame
from edgevision.runtime.results import Detections
from edgevision.runtime.sinks.viewer import LiveViewer, is_loopback

pytest.importorskip("cv2")


@pytest.fixture
def viewer() -> Iterator[LiveViewer]:
    v = LiveViewer("127.0.0.1", 0, max_clients=4, request_timeout=0.5, max_pending=64)
    publish(v, 0)
    yield v
    v.close()


def _threads() -> int:
    return threading.active_count()


def test_stream_ids_only_for_streams_that_exist(viewer: LiveViewer) -> None:
    base = _threads()
    for sid in range(1, 201):
        assert get(viewer.url + f"api/latest?stream={sid}")[0] == 404
        assert get(viewer.url + f"stream.mjpg?stream={sid}")[0] == 404
    assert get(viewer.url + "api/latest?stream=x")[0] == 400
    assert get(viewer.url + "api/latest?stream=" + "9" * 5000)[0] == 400
    latest = json.loads(get(viewer.url + "api/latest?stream=0")[2])
    assert latest["streams"] == [0]
    wait_for(lambda: _threads() <= base and viewer._server.connections() == (0, 0))


def test_half_open_connections_cost_no_threads_and_expire(viewer: LiveViewer) -> None:
    base = _threads()
    socks = [socket.create_connection(("127.0.0.1", viewer.port), timeout=2) for _ in range(200)]
    try:
        t0 = time.monotonic()
        assert get(viewer.url + "healthz")[0] == 200  # the oldest silent ones were closed to let it in
        assert time.monotonic() - t0 < 2
        assert _threads() <= base + 2
        assert viewer._server.connections()[1] <= 64
        wait_for(lambda: viewer._server.connections() == (0, 0), timeout=3)  # request_timeout 0.5 s
    finally:
        for s in socks:
            s.close()


def test_a_slow_sender_is_cut_after_the_request_timeout(viewer: LiveViewer) -> None:
    s = socket.create_connection(("127.0.0.1", viewer.port), timeout=5)
    try:
        s.sendall(b"GET /api/latest HTTP/1.1\r\nHost: x\r\n")  # ... and the rest of the headers never come
        t0 = time.monotonic()
        assert s.recv(1024) == b""  # the server closes it
        assert time.monotonic() - t0 < 3
        wait_for(lambda: viewer._server.connections() == (0, 0))
    finally:
        s.close()


def test_max_clients_then_503(viewer: LiveViewer) -> None:
    streams = [urllib.request.urlopen(viewer.url + "stream.mjpg", timeout=5) for _ in range(4)]
    try:
        wait_for(lambda: viewer._server.connections()[0] == 4)
        code, _, body = get(viewer.url + "api/latest")
        assert code == 503 and b"busy" in body
        assert viewer._server.rejected >= 1
    finally:
        for r in streams:
            r.close()
    wait_for(lambda: get(viewer.url + "healthz")[0] == 200)


def test_a_client_that_leaves_an_idle_stream_is_noticed(viewer: LiveViewer) -> None:
    r = urllib.request.urlopen(viewer.url + "stream.mjpg", timeout=5)
    wait_for(lambda: json.loads(get(viewer.url + "api/latest")[2])["viewer"]["clients"] == 1)
    r.close()  # no new frames are published: only the liveness check can see it go
    wait_for(lambda: json.loads(get(viewer.url + "api/latest")[2])["viewer"]["clients"] == 0, timeout=3)


def test_a_reader_who_stops_reading_is_dropped(viewer: LiveViewer) -> None:
    stop = threading.Event()

    def feed() -> None:  # big incompressible frames: the socket buffers fill fast
        rng, i = np.random.default_rng(0), 0
        while not stop.wait(0.01):
            img = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
            viewer.publish(Frame(img, i, time.monotonic()), Detections.empty())
            i += 1

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    s = socket.create_connection(("127.0.0.1", viewer.port), timeout=5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        s.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
        wait_for(lambda: json.loads(get(viewer.url + "api/latest")[2])["viewer"]["clients"] == 1)
        # never read again: the server's send blocks on a full buffer and times out after request_timeout
        wait_for(lambda: json.loads(get(viewer.url + "api/latest")[2])["viewer"]["clients"] == 0, timeout=10)
    finally:
        stop.set()
        t.join()
        s.close()


def test_reading_clients_keep_getting_frames(viewer: LiveViewer) -> None:
    publish(viewer, 1)
    with urllib.request.urlopen(viewer.url + "stream.mjpg", timeout=5) as r:
        for i in range(2, 6):
            publish(viewer, i)
            _, jpeg = read_part(r)
            assert jpeg[:2] == b"\xff\xd8"


def test_binding_beyond_loopback_needs_a_token() -> None:
    with pytest.raises(UserError, match=r"0\.0\.0\.0.*\?token=SECRET.*\?insecure=1"):
        LiveViewer("0.0.0.0", 0)
    with pytest.raises(UserError, match="token is empty"):
        LiveViewer("127.0.0.1", 0, token="")
    with pytest.raises(UserError, match="token is empty"):
        LiveViewer("127.0.0.1", 0, token="  ")
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.8.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.168.1.5")
