"""The live viewer's HTTP server: ``http.server`` with the limits a server reachable by anyone needs.

``ThreadingHTTPServer`` alone gives every accepted connection a thread at once, with no timeouts: 5,000
requests for new streams left 5,000 threads, 1,000 half-open connections made ``/healthz`` time out, and at a
1,024 file limit the viewer became unreachable for good (issue #19). Here:

- Accepted connections wait in one selector thread until their first bytes arrive (``request_timeout``
  seconds at most, then closed); only then do they get a handler thread. Of more than ``max_pending`` such
  silent connections the oldest is closed, so a flood of half-open connections cannot lock new clients out
  and costs no threads.
- At most ``max_clients`` connections are served at once (MJPEG watchers included); one more gets
  ``503 Service Unavailable`` with ``Retry-After`` and is closed, without a thread.
- A request must be read whole (request line + headers) within ``request_timeout`` seconds of its first
  byte: the selector thread shuts down the socket of one that is not (a slow sender holds no slot for long);
  every socket read and write also times out after ``request_timeout``, so a reader who stops reading an
  MJPEG stream is dropped once the kernel's send buffer (``SO_SNDBUF``, ``MJPEG_SNDBUF`` bytes, a few
  frames) is full for that long.

Hand-written for the reason the viewer is (no web framework on a Jetson); the selector loop is the
standard library's ``selectors``.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import socketserver
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any

__all__ = ["LimitedHTTPServer"]

log = logging.getLogger(__name__)

MJPEG_SNDBUF = 256 << 10
_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 22\r\n"
         b"Retry-After: 1\r\nConnection: close\r\n\r\nviewer busy, retry...\n")


class LimitedHTTPServer(ThreadingHTTPServer):
    """Serve with bounded threads, timeouts and a client cap; ``start()`` / ``stop()`` run the accept loop."""

    daemon_threads = True
    request_queue_size = 128  # listen backlog (socketserver's 5 drops SYNs under a burst: 1-3 s client retries)

    def __init__(self, address: tuple[Any, ...], handler: Any, *, max_clients: int = 32,
                 request_timeout: float = 5.0, max_pending: int = 256) -> None:
        super().__init__(address, handler)
        self.max_clients, self.request_timeout, self.max_pending = max_clients, request_timeout, max_pending
        self.rejected = 0  # 503s sent
        self._lock = threading.Lock()
        self._active: dict[socket.socket, float | None] = {}  # served sockets -> request deadline (None: read)
        self._pending: dict[socket.socket, tuple[float, Any]] = {}  # silent sockets -> (deadline, address)
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = False
        self._loop = threading.Thread(target=self._run, name="edgevision-viewer-http", daemon=True)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(host): a reverse DNS lookup that can stall for
        # seconds on a device without network. The name is not needed.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    # -- counts (tests, /metrics) -----------------------------------------------------------------------------
    def connections(self) -> tuple[int, int]:
        """(connections being served, connections waiting for their first bytes)."""
        with self._lock:
            return len(self._active), len(self._pending)

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> threading.Thread:
        self._loop.start()
        return self._loop

    def stop(self) -> None:
        """End the accept loop, close waiting connections, cut served ones (their threads then end)."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._loop.is_alive():
            self._loop.join(timeout=5)
        with self._lock:
            active = list(self._active)
        for s in active:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self.server_close()
        for s in (self._wake_r, self._wake_w):
            s.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("viewer: request from %s failed", client_address, exc_info=True)

    # -- handler side ---------------------------------------------------------------------------------------
    def request_read(self, sock: socket.socket) -> None:
        """The handler has the whole request: the request deadline no longer applies."""
        with self._lock:
            if sock in self._active:
                self._active[sock] = None

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._active.pop(request, None)
        super().shutdown_request(request)

    # -- the accept loop ------------------------------------------------------------------------------------
    def _run(self) -> None:
        self.socket.setblocking(False)
        self._sel.register(self.socket, selectors.EVENT_READ, "listen")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self._stopping:
                for key, _ in self._sel.select(timeout=0.25):
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "wake":
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(64)
                    else:
                        self._ready(key.fileobj)  # type: ignore[arg-type]
                self._sweep(time.monotonic())
        finally:
            for s in list(self._pending):
                self._drop_pending(s)
            self._sel.close()

    def _accept(self) -> None:
        for _ in range(64):  # drain the backlog, a bounded batch per wake-up
            try:
                sock, addr = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: leave it in the backlog, the sweep frees descriptors
                log.debug("viewer: accept failed: %s", exc)
                return
            sock.setblocking(False)
            if len(self._pending) >= self.max_pending:
                self._drop_pending(next(iter(self._pending)))  # the oldest silent connection
            with self._lock:
                self._pending[sock] = (time.monotonic() + self.request_timeout, addr)
            self._sel.register(sock, selectors.EVENT_READ, "client")

    def _drop_pending(self, sock: socket.socket) -> None:
        with self._lock:
            self._pending.pop(sock, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._sel.unregister(sock)
        sock.close()

    def _ready(self, sock: socket.socket) -> None:
        """First bytes arrived: serve it on a thread, or answer 503 when ``max_clients`` are being served."""
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(sock)
        with self._lock:
            _, addr = self._pending.pop(sock, (0.0, None))
            busy = len(self._active) >= self.max_clients
            if not busy:
                self._active[sock] = time.monotonic() + self.request_timeout
        if busy:
            self.rejected += 1
            with contextlib.suppress(OSError):
                sock.recv(65536)  # read what came, so closing sends the 503 and a FIN, not a reset
                sock.send(_BUSY)  # non-blocking, fits any send buffer
            sock.close()
            return
        sock.setblocking(True)
        sock.settimeout(self.request_timeout)
        try:
            self.process_request(sock, addr)  # ThreadingMixIn: a daemon thread runs the handler
        except Exception:
            self.shutdown_request(sock)

    def _sweep(self, now: float) -> None:
        with self._lock:
            silent = [s for s, (deadline, _) in self._pending.items() if deadline <= now]
            slow = [s for s, deadline in self._active.items() if deadline is not None and deadline <= now]
            for s in slow:
                self._active[s] = None  # cut once
        for s in silent:
            self._drop_pending(s)
        for s in slow:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)  # its handler's read fails and the thread ends
