"""Run the service: open the model in the batcher's thread, bind the socket, run uvicorn until Ctrl-C.

uvicorn's own limits are set: ``limit_concurrency`` (connections + requests at once; 503 beyond) and
``timeout_keep_alive`` (idle keep-alive connections are closed after it). The socket is bound here, before
uvicorn starts, so a port in use is one ``UserError`` line, and port 0 (a free port) can be reported.
"""

from __future__ import annotations

import logging
import socket
from typing import Any, Callable

from ..bundle import Bundle
from ..errors import UserError
from ..predictor import Predictor
from .batcher import Batcher
from .config import ServeConfig

__all__ = ["bind", "open_batcher", "serve"]

log = logging.getLogger("edgevision.serve")


def open_batcher(bundle: Bundle, config: ServeConfig, *, backend: str = "auto", threads: int = 0,
                 conf: float | None = None, iou: float | None = None,
                 max_det: int | None = None) -> Batcher:
    """A started ``Batcher`` over ``bundle`` (the model is opened in its thread)."""
    from ..backends.choice import choose_backend

    choice = choose_backend(bundle, backend)
    opts: dict[str, Any] = {"intra_op_threads": threads} if threads else {}

    def open_predictor() -> Predictor:
        return Predictor(bundle, choice.open(**opts), conf=conf, iou=iou, max_det=max_det)

    batcher = Batcher(open_predictor, max_batch=config.max_batch, timeout_s=config.batch_timeout_ms / 1000.0)
    batcher.backend_kind = choice.kind
    return batcher.start()


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise UserError(f"edgevision serve: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def serve(bundle: Bundle, config: ServeConfig, *, backend: str = "auto", threads: int = 0,
          conf: float | None = None, iou: float | None = None, max_det: int | None = None,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Serve ``bundle`` until interrupted; ``on_ready`` gets the base URL once the socket listens."""
    config.check()
    from . import require_stack

    require_stack()
    import uvicorn

    from .app import ServeState, build_app

    sock = bind(config.host, config.port)
    batcher = None
    try:
        batcher = open_batcher(bundle, config, backend=backend, threads=threads, conf=conf, iou=iou,
                               max_det=max_det)
        state = ServeState(config, batcher, class_names=bundle.sidecar.class_names, model=str(bundle.root),
                           backend=batcher.backend_kind)
        app = build_app(state)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        uv = uvicorn.Config(app, limit_concurrency=config.max_connections, timeout_keep_alive=config.keepalive_s,
                            log_level="warning", access_log=False, server_header=False, lifespan="off")
        server = uvicorn.Server(uv)
        if on_ready is not None:
            on_ready(f"http://{shown}:{port}")
        server.run(sockets=[sock])
        state.executor.shutdown(wait=False)
    finally:
        if batcher is not None:
            batcher.close()
        sock.close()
