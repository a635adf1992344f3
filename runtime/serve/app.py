"""The Starlette application: routes, token check, body and image limits, metrics.

Every request ends in a JSON answer: 200 with the frame's record (``sinks.files.result_record``: boxes,
scores, class ids and names, keypoints), or ``{"error": ..., "status": ...}`` with 400 (empty body,
bad Content-Length), 401 (token), 404 / 405 (path / method), 408 (body not received within the read
timeout), 413 (body or image over its limit), 415 (not a JPEG or PNG), 422 (truncated or undecodable image),
503 (no decode slot within the read timeout) or 500 (the model failed; logged). A body larger than the limit
is refused from its Content-Length before any of it is read, or as soon as the streamed bytes pass the
limit; the 413 closes the connection so the rest is never read.

Decoding and preprocessing run in a small thread pool (``decode_threads``), off the event loop; inference runs
in the batcher's thread. ``/health`` is open (liveness probes); ``/metrics`` and ``/v1/detect`` need
``Authorization: Bearer TOKEN`` when a token is set (compared in constant time).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..frames import Frame
from ..metrics import percentiles
from ..preprocess import Letterbox
from ..prometheus import _Writer, to_prometheus
from ..sinks.files import result_record
from .batcher import Batcher
from .config import ServeConfig
from .decode import ImageError, decode_image

__all__ = ["ApiError", "ServeState", "build_app"]

log = logging.getLogger("edgevision.serve")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


class ServeState:
    """What the routes share: settings, the batcher, the decode pool and the counters ``/metrics`` shows."""

    def __init__(self, config: ServeConfig, batcher: Batcher, *, class_names: Sequence[str] | None = None,
                 model: str = "", backend: str = "", window: int = 2048) -> None:
        self.config = config
        self.batcher = batcher
        self.class_names = list(class_names) if class_names is not None else None
        self.model = model
        self.backend = backend
        self.executor = ThreadPoolExecutor(max_workers=max(1, config.decode_threads),
                                           thread_name_prefix="edgevision-serve-decode")
        self.started = time.monotonic()
        self.codes: dict[int, int] = {}
        self.in_flight = 0
        self.seq = 0
        self._latency_ms: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()
        self._slots: asyncio.Semaphore | None = None  # made in the event loop (Python 3.8 binds it there)
        self._token = config.token.encode() if config.token is not None else None

    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.config.inflight)
        return self._slots

    def authorized(self, request: Request) -> bool:
        if self._token is None:
            return True
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self._token)

    def count(self, status: int, latency_ms: float | None = None) -> None:
        with self._lock:
            self.codes[status] = self.codes.get(status, 0) + 1
            if latency_ms is not None:
                self._latency_ms.append(latency_ms)

    def prepare(self, body: bytes) -> tuple[np.ndarray, np.ndarray, Letterbox]:
        """In the decode pool: body -> (image, [1, 3, H, W] tensor, letterbox)."""
        image = decode_image(body, self.config.max_pixels)
        predictor = self.batcher.predictor
        assert predictor is not None  # the batcher opened it before the app was built
        tensor, lb = predictor.preprocess(image)
        return image, tensor, lb

    def metrics_text(self) -> str:
        with self._lock:
            codes = dict(self.codes)
            lat = percentiles(list(self._latency_ms))
            in_flight = self.in_flight
        b = self.batcher.stats()
        snapshot = {"frames": codes.get(200, 0), "uptime_s": round(time.monotonic() - self.started, 3),
                    "latency_ms": lat, "model": self.model, "backend": self.backend}
        w = _Writer()
        w.family("http_requests_total", "counter", "HTTP requests answered, by status code.",
                 [({"code": str(c)}, n) for c, n in sorted(codes.items())])
        w.family("batches_total", "counter", "Inference calls (each runs one batch).", [({}, b["batches"])])
        w.family("batched_images_total", "counter", "Images inferred in batches (/ batches_total = mean batch).",
                 [({}, b["images"])])
        w.family("batch_size_total", "counter", "Inference calls by batch size.",
                 [({"size": str(s)}, n) for s, n in sorted(b["batch_sizes"].items())])
        w.family("failed_batches_total", "counter", "Inference calls that raised.", [({}, b["failed_batches"])])
        w.family("infer_latency_seconds", "gauge", "Inference + postprocessing time per batch.",
                 [({"quantile": q}, b["infer_ms"][k] / 1000.0) for k, q in (("p50", "0.5"), ("p99", "0.99"))])
        w.family("max_batch", "gauge", "Largest batch the service forms.", [({}, b["max_batch"])])
        w.family("queue_depth", "gauge", "Preprocessed requests waiting for the inference thread.",
                 [({}, b["queued"])])
        w.family("requests_in_flight", "gauge", "Requests being read, decoded or inferred.", [({}, in_flight)])
        return to_prometheus(snapshot) + "\n".join(w.lines) + "\n"


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise ApiError(400, f"bad Content-Length {length!r}") from None
        if declared > limit:
            raise ApiError(413, f"body of {declared} bytes is over the limit of {limit} bytes")
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise ApiError(413, f"body is over the limit of {limit} bytes")
    return bytes(buf)


def _check_type(request: Request) -> None:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype.startswith("multipart/"):
        raise ApiError(415, f"Content-Type {ctype} is not supported: POST the image's bytes as the body "
                            "(Content-Type image/jpeg or image/png)")


def build_app(state: ServeState) -> Starlette:
    """The ASGI app over ``state`` (whose batcher must already be started)."""
    cfg = state.config

    async def detect(request: Request) -> Response:
        t0 = time.monotonic()
        status, latency = 500, None
        with state._lock:
            state.in_flight += 1
            state.seq += 1
            seq = state.seq
        try:
            if not state.authorized(request):
                raise ApiError(401, "unauthorized: send 'Authorization: Bearer TOKEN'",
                               {"WWW-Authenticate": "Bearer"})
            _check_type(request)
            try:
                body = await asyncio.wait_for(_read_body(request, cfg.max_body_bytes), cfg.read_timeout_s)
            except asyncio.TimeoutError:
                raise ApiError(408, f"the body did not arrive within {cfg.read_timeout_s:g} s") from None
            slots = state.slots()
            try:
                await asyncio.wait_for(slots.acquire(), cfg.read_timeout_s)
            except asyncio.TimeoutError:
                raise ApiError(503, "the service is overloaded; retry later", {"Retry-After": "1"}) from None
            try:
                loop = asyncio.get_running_loop()
                image, tensor, lb = await loop.run_in_executor(state.executor, state.prepare, body)
                del body
                dets = await state.batcher.submit(tensor, lb)
                dets.meta["t_capture"] = t0
                dets.meta["t_result"] = time.monotonic()
                record = result_record(Frame(image, seq, t0, 0, "http"), dets, state.class_names)
            finally:
                slots.release()
            status, latency = 200, (time.monotonic() - t0) * 1000.0
            return JSONResponse(record)
        except ApiError as exc:
            status = exc.status
            headers = dict(exc.headers)
            if status == 413:
                headers["Connection"] = "close"  # the rest of the body is never read
            return _error(status, exc.message, headers)
        except ImageError as exc:
            status = exc.status
            return _error(status, exc.message)
        except Exception:
            log.exception("request %d failed", seq)
            return _error(500, "inference failed; the server log has the details")
        finally:
            with state._lock:
                state.in_flight -= 1
            state.count(status, latency)

    async def health(request: Request) -> Response:
        if not state.batcher.alive:
            state.count(503)
            return _error(503, "the inference thread has stopped")
        state.count(200)
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        if not state.authorized(request):
            state.count(401)
            return _error(401, "unauthorized: send 'Authorization: Bearer TOKEN'", {"WWW-Authenticate": "Bearer"})
        state.count(200)
        return PlainTextResponse(state.metrics_text(), media_type="text/plain; version=0.0.4")

    async def http_error(request: Request, exc: Exception) -> Response:
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        headers = getattr(exc, "headers", None)
        detail = getattr(exc, "detail", "") or "error"
        if code == 404:
            detail = f"no such path {request.url.path}: POST images to /v1/detect; GET /health, /metrics"
        elif code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        state.count(code)
        return _error(code, str(detail), dict(headers) if headers else None)

    routes: list[Any] = [
        Route("/v1/detect", detect, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})
