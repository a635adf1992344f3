"""A multi-stream run's viewer keeps every stream: ``?stream=N`` serves stream N's newest result and frames,
not whichever stream was written last (issue #18, item 1)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import numpy as np
import pytest

from edgevision.runtime.frames import Frame
from edgevision.runtime.results import Detections
from edgevision.runtime.sinks.viewer import LiveViewer

cv2 = pytest.importorskip("cv2", reason="the viewer encodes JPEGs with OpenCV")

GREY = {0: 40, 1: 200}  # each stream's frames have their own brightness, told apart in the decoded JPEG


def publish(viewer: LiveViewer, sid: int, index: int) -> None:
    t = time.monotonic()
    det = Detections(np.array([[5, 5, 20 + sid, 20]], np.float32), np.array([0.9], np.float32), np.array([sid]))
    det.stream_id, det.frame_index = sid, index
    det.meta = {"t_capture": t, "t_result": t, "latency_ms": 1.0}
    img = np.full((64, 80, 3), GREY[sid], np.uint8)
    viewer.publish(Frame(image=img, index=index, timestamp=t, stream_id=sid, source=f"cam{sid}"), det)


def latest(viewer: LiveViewer, query: str = "") -> dict:
    with urllib.request.urlopen(viewer.url + "api/latest" + query, timeout=5) as r:
        return dict(json.loads(r.read()))


def first_jpeg(viewer: LiveViewer, query: str) -> np.ndarray:
    with urllib.request.urlopen(viewer.url + "stream.mjpg" + query, timeout=5) as r:
        line = r.readline()
        while line.strip() != b"--frame":
            line = r.readline()
        length = 0
        while (line := r.readline().strip()) != b"":
            key, value = line.decode().split(":", 1)
            if key.strip().lower() == "content-length":
                length = int(value)
        img = cv2.imdecode(np.frombuffer(r.read(length), np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return np.asarray(img)


def test_each_stream_is_served_by_its_id_after_others_were_written() -> None:
    with LiveViewer("127.0.0.1", 0, class_names=["a", "b"]) as viewer:
        publish(viewer, 0, 7)
        publish(viewer, 1, 3)  # written last: the one a single-slot viewer would show for every stream
        one, zero, default = latest(viewer, "?stream=1"), latest(viewer, "?stream=0"), latest(viewer)
        assert one["streams"] == [0, 1] and one["stream_id"] == 1 and one["result"]["frame"] == 3
        assert zero["stream_id"] == 0 and zero["result"]["frame"] == 7
        assert default["stream_id"] == 0  # no ?stream: the lowest id
        assert one["result"]["boxes"] == [[5.0, 5.0, 21.0, 20.0]]
        assert zero["result"]["boxes"] == [[5.0, 5.0, 20.0, 20.0]]
        stop = threading.Event()

        def feed() -> None:  # both streams go on; an encoder serves each watched stream its own frames
            i = 0
            while not stop.wait(0.02):
                publish(viewer, i % 2, 100 + i)
                i += 1

        t = threading.Thread(target=feed, daemon=True)
        t.start()
        try:
            for sid in (1, 0):
                img = first_jpeg(viewer, f"?stream={sid}")
                assert abs(float(np.median(img)) - GREY[sid]) < 10  # the background: that stream's own grey
        finally:
            stop.set()
            t.join()
