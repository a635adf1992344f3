"""HTTP live viewer: an annotated MJPEG stream, the latest results as JSON, Prometheus ``/metrics``.

Hand-written on the standard library (``http.server.ThreadingHTTPServer`` in a daemon thread) rather than
on a web framework: on a Jetson every dependency is one more wheel to find for aarch64 + the JetPack
Python, and the whole protocol here is a handful of GET endpoints plus ``multipart/x-mixed-replace``
(MJPEG), which every browser shows in a plain ``<img>`` with no JavaScript video player.

Endpoints: ``/`` (the page), ``/stream.mjpg[?stream=N]``, ``/api/latest[?stream=N]``, ``/metrics``
(Prometheus text format 0.0.4) and ``/healthz`` (always open, for liveness probes). With a token every
other endpoint needs ``?token=SECRET`` or ``Authorization: Bearer SECRET`` (else 401).

Cost to the pipeline: ``publish`` only stores a reference to the newest frame. Drawing and JPEG encoding
run in the viewer's encoder thread, only while at least one browser watches that stream, once per new
frame (frames that arrive while it is busy are skipped: newest wins), and the JPEG is shared by all
clients. Frames wider than ``max_width`` are downscaled first to spare a weak CPU.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import select
import socket
import threading
import time
import typing
import urllib.parse
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Dict

import numpy as np

from ..draw import _cv2, draw_detections
from ..errors import UserError
from ..frames import Frame
from ..net import is_loopback
from ..prometheus import to_prometheus
from ..results import Detections
from .files import result_record
from .viewer_page import PAGE_HTML
from .viewer_server import MJPEG_SNDBUF, LimitedHTTPServer

__all__ = ["LiveViewer", "to_prometheus"]

log = logging.getLogger(__name__)
Snapshot = typing.Callable[[], Dict[str, Any]]  # typing's: a runtime alias on Python 3.8


@dataclass
class _Stream:
    frame: Frame | None = None
    detections: Detections | None = None
    seq: int = 0  # bumped per published frame
    encoded_seq: int = 0  # the frame seq the current jpeg shows
    jpeg: bytes = b""
    jpeg_seq: int = 0  # bumped per encoded jpeg
    clients: int = 0


class _Server(LimitedHTTPServer):
    viewer: LiveViewer


class LiveViewer:
    """Serve the live viewer on ``host:port`` (port 0: a free port) from construction until ``close()``.

    A host beyond loopback needs a non-empty ``token`` unless ``allow_insecure`` (the sink's ``?insecure=1``);
    ``max_clients``, ``request_timeout`` and ``max_pending`` bound the server (``viewer_server``).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, *, token: str | None = None,
                 class_names: Sequence[str] | None = None, skeleton: Sequence[tuple[int, int]] | None = None,
                 snapshot: Snapshot | None = None, jpeg_quality: int = 80, max_width: int = 1280,
                 allow_insecure: bool = False, max_clients: int = 32, request_timeout: float = 5.0,
                 max_pending: int = 256) -> None:
        if token is not None and not token.strip():
            raise UserError("http viewer: the token is empty; give ?token=SECRET with a secret, or no token "
                            "on a loopback address")
        if not is_loopback(host) and token is None and not allow_insecure:
            raise UserError(f"http viewer: {host} is reachable from the network; add ?token=SECRET, or "
                            "?insecure=1 to serve it without one")
        self.token = token
        self.class_names = list(class_names) if class_names is not None else None
        self.skeleton = list(skeleton) if skeleton is not None else None
        self.snapshot = snapshot
        self.jpeg_quality = int(jpeg_quality)
        self.max_width = int(max_width)
        self.jpeg_frames = 0
        self._lock = threading.Lock()
        self._new_frame = threading.Condition(self._lock)  # encoder waits: a watched stream has a new frame
        self._new_jpeg = threading.Condition(self._lock)  # MJPEG clients wait: a new JPEG is ready
        self._streams: dict[int, _Stream] = {}
        self._closing = threading.Event()
        self._t0 = time.monotonic()
        self._frames = 0
        self._times: deque[float] = deque(maxlen=512)
        self._lat: deque[float] = deque(maxlen=512)
        server_cls = type("_Server6", (_Server,), {"address_family": socket.AF_INET6}) if ":" in host else _Server
        try:
            self._server = server_cls((host, port), _Handler, max_clients=max_clients,
                                      request_timeout=request_timeout, max_pending=max_pending)
        except OSError as exc:
            raise UserError(f"http viewer: cannot listen on {host}:{port} ({exc.strerror}); pick another "
                            "port, e.g. --sink http://127.0.0.1:0 for any free one") from None
        self._server.viewer = self
        self.host = host
        self.port = int(self._server.server_address[1])
        if not is_loopback(host) and not self.token:
            log.warning("live viewer on %s:%d is reachable from the network without a token (?insecure=1)",
                        host, self.port)
        encoder = threading.Thread(target=self._encode_loop, name="edgevision-viewer-jpeg", daemon=True)
        self._threads = [self._server.start(), encoder]
        encoder.start()

    @property
    def url(self) -> str:
        """The page's address (without the token)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def configure(self, *, class_names: Sequence[str] | None = None,
                  skeleton: Sequence[tuple[int, int]] | None = None, snapshot: Snapshot | None = None) -> None:
        """Fill in what was not given at construction (the pipeline's ``SinkContext``)."""
        if self.class_names is None and class_names is not None:
            self.class_names = list(class_names)
        if self.skeleton is None and skeleton is not None:
            self.skeleton = list(skeleton)
        if self.snapshot is None and snapshot is not None:
            self.snapshot = snapshot

    # -- producer side (pipeline's sink thread) -------------------------------------------------------
    def publish(self, frame: Frame, detections: Detections) -> None:
        """Make ``frame`` + ``detections`` the newest result of its stream (cheap: no copy, no encoding)."""
        now = time.monotonic()
        lat = detections.meta.get("latency_ms")
        with self._lock:
            s = self._streams.get(frame.stream_id)
            if s is None:
                s = self._streams[frame.stream_id] = _Stream()
            s.frame, s.detections = frame, detections
            s.seq += 1
            self._frames += 1
            self._times.append(now)
            self._lat.append(float(lat) if lat is not None else (now - frame.timestamp) * 1000.0)
            if s.clients:
                self._new_frame.notify()

    def close(self) -> None:
        """Stop serving: ends open streams, shuts the server down and joins its threads (idempotent)."""
        if self._closing.is_set():
            return
        self._closing.set()
        with self._lock:
            self._new_frame.notify_all()
            self._new_jpeg.notify_all()
        self._server.stop()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> LiveViewer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- encoder thread --------------------------------------------------------------------------------
    def _pending(self) -> list[tuple[int, _Stream]]:
        return [(sid, s) for sid, s in self._streams.items() if s.clients and s.frame is not None
                and s.encoded_seq != s.seq]

    def _encode_loop(self) -> None:
        while not self._closing.is_set():
            with self._lock:
                self._new_frame.wait_for(lambda: self._closing.is_set() or bool(self._pending()), timeout=0.5)
                jobs = [(sid, s.frame, s.detections, s.seq) for sid, s in self._pending()]
            for sid, frame, det, seq in jobs:
                if frame is None or det is None:
                    continue
                try:
                    jpeg = self._encode(frame.image, det)
                except Exception:  # a bad frame must not kill the viewer
                    log.exception("live viewer: cannot encode frame %d of stream %d", frame.index, sid)
                    jpeg = b""
                with self._lock:
                    s = self._streams[sid]
                    s.encoded_seq = seq
                    if jpeg:
                        s.jpeg, s.jpeg_seq = jpeg, s.jpeg_seq + 1
                        self.jpeg_frames += 1
                        self._new_jpeg.notify_all()

    def _encode(self, image: np.ndarray, det: Detections) -> bytes:
        cv2 = _cv2()
        h, w = image.shape[:2]
        if w > self.max_width:
            f = self.max_width / w
            image = cv2.resize(image, (self.max_width, max(1, round(h * f))), interpolation=cv2.INTER_AREA)
            kpts = None if det.keypoints is None else det.keypoints * np.array([f, f, 1.0], np.float32)
            det = Detections(det.xyxy * f, det.scores, det.class_ids, kpts, track_ids=det.track_ids)
            out = draw_detections(image, det, self.class_names, self.skeleton, copy=False)
        else:
            out = draw_detections(image, det, self.class_names, self.skeleton)
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise RuntimeError("cv2.imencode failed")
        return bytes(buf.tobytes())

    # -- used by the request handlers --------------------------------------------------------------------
    def _stream_id(self, query: dict[str, list[str]]) -> tuple[int | None, int]:
        """(stream id, 0), or (None, HTTP status) for a malformed id (400) or a stream never published (404).
        Without ``?stream`` the lowest id (0 before the first frame); ids are never created by a request."""
        raw = query.get("stream", [None])[0]
        with self._lock:
            if raw is None:
                return (min(self._streams) if self._streams else 0), 0
            try:
                sid = int(raw)
            except ValueError:
                return None, 400
            return (sid, 0) if sid in self._streams else (None, 404)

    def _attach(self, sid: int, delta: int) -> None:
        with self._lock:
            s = self._streams.get(sid)
            if s is None:
                s = self._streams[sid] = _Stream()
            s.clients += delta
            if delta > 0:
                self._new_frame.notify()

    def _detach_if_idle(self, sid: int) -> None:
        with self._lock:
            s = self._streams.get(sid)
            if s is not None and s.clients == 0 and s.frame is None:  # the default stream before any frame
                del self._streams[sid]

    def _next_jpeg(self, sid: int, after: int, timeout: float) -> tuple[bytes, int]:
        """The stream's JPEG once it is newer than ``after`` (``b""`` on timeout or shutdown)."""
        with self._lock:
            s = self._streams[sid]
            self._new_jpeg.wait_for(lambda: self._closing.is_set() or s.jpeg_seq > after, timeout=timeout)
            if self._closing.is_set() or s.jpeg_seq <= after:
                return b"", after
            return s.jpeg, s.jpeg_seq

    def stats(self) -> dict[str, Any]:
        """The pipeline's metrics snapshot, or the viewer's own counts when it has none."""
        if self.snapshot is not None:
            try:
                snap = self.snapshot()
            except Exception:  # the page must keep working even if a metrics provider breaks
                log.exception("live viewer: metrics snapshot failed")
                snap = {}
            if snap:  # SinkContext's default snapshot is ``dict``: empty -> the viewer's own counts
                return dict(snap)
        with self._lock:
            now = time.monotonic()
            recent = [t for t in self._times if now - t <= 2.0]
            lat = np.array(self._lat, np.float64) if self._lat else np.zeros(1)
            frames = self._frames
        fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0
        up = now - self._t0
        return {"frames": frames, "dropped": 0, "fps": round(fps, 2), "fps_avg": round(frames / up, 2) if up else 0.0,
                "uptime_s": round(up, 3), "stages": {},
                "latency_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
                               "mean": float(lat.mean()), "max": float(lat.max())}}

    def latest(self, sid: int) -> dict[str, Any]:
        """``/api/latest``: the stream's newest results, the stream ids seen, stats and viewer counters."""
        with self._lock:
            s = self._streams.get(sid)
            frame, det = (s.frame, s.detections) if s is not None else (None, None)
            streams = sorted(self._streams)
            clients = sum(x.clients for x in self._streams.values())
        out: dict[str, Any] = {"streams": streams, "stream_id": sid, "result": None}
        if frame is not None and det is not None:
            out["result"] = result_record(frame, det, self.class_names)
            out["result"]["image_size"] = [frame.height, frame.width]
        out["stats"] = self.stats()
        served, waiting = self._server.connections()
        out["viewer"] = {"clients": clients, "jpeg_frames": self.jpeg_frames, "connections": served,
                         "waiting_connections": waiting, "rejected": self._server.rejected}
        return out

    def authorized(self, query: dict[str, list[str]], auth_header: str | None) -> bool:
        if self.token is None:
            return True
        given = query.get("token", [""])[0]
        if not given and auth_header and auth_header.lower().startswith("bearer "):
            given = auth_header[7:].strip()
        return hmac.compare_digest(given.encode(), self.token.encode())


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "edgevision-viewer"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("viewer %s: " + format, self.address_string(), *args)

    def parse_request(self) -> bool:
        ok = super().parse_request()
        self.server.request_read(self.connection)
        return ok

    def _send(self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        viewer = self.server.viewer
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        path = url.path
        try:
            if path == "/healthz":
                return self._send(200, b"ok\n", "text/plain; charset=utf-8")
            if not viewer.authorized(query, self.headers.get("Authorization")):
                return self._send(401, b"unauthorized: add ?token=... or an Authorization: Bearer header\n",
                                  "text/plain; charset=utf-8", {"WWW-Authenticate": 'Bearer realm="edgevision"'})
            if path in ("/", "/index.html"):
                return self._send(200, PAGE_HTML.encode(), "text/html; charset=utf-8")
            if path == "/metrics":
                extra = {"viewer_jpeg_frames_total": (viewer.jpeg_frames, "JPEG frames the live viewer encoded.")}
                text = to_prometheus(viewer.stats(), extra)
                return self._send(200, text.encode(), "text/plain; version=0.0.4; charset=utf-8")
            sid, status = viewer._stream_id(query)
            if sid is None:
                body = b"bad stream id\n" if status == 400 else b"no such stream\n"
                return self._send(status, body, "text/plain; charset=utf-8")
            if path == "/api/latest":
                body = json.dumps(viewer.latest(sid), separators=(",", ":")).encode()
                return self._send(200, body, "application/json")
            if path == "/stream.mjpg":
                return self._stream(viewer, sid)
            return self._send(404, b"not found\n", "text/plain; charset=utf-8")
        except OSError:  # the client left, or stopped reading for request_timeout seconds
            self.close_connection = True
            return None

    def _client_gone(self) -> bool:
        """True once the client closed its end (checked while no new frame is sent)."""
        try:
            poller = select.poll()  # not select.select: it fails on descriptors >= 1024
            poller.register(self.connection, select.POLLIN | select.POLLHUP)
            return bool(poller.poll(0)) and self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _stream(self, viewer: LiveViewer, sid: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        with contextlib.suppress(OSError):  # a reader who stops reading is dropped once this backlog is full
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, MJPEG_SNDBUF)
        viewer._attach(sid, +1)
        try:
            seq = 0
            while not viewer._closing.is_set():
                jpeg, seq = viewer._next_jpeg(sid, seq, timeout=0.5)
                if not jpeg:
                    if self._client_gone():
                        return
                    continue
                head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                self.wfile.write(head + jpeg + b"\r\n")
                self.wfile.flush()
        finally:
            viewer._attach(sid, -1)
            viewer._detach_if_idle(sid)
