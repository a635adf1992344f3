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

__all__ = ["Service", "bind", "open_batcher", "serve"]

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


class Service:
    """The model opened, the socket bound and the uvicorn server made; ``run()`` serves until ``stop()`` / Ctrl-C."""

    def __init__(self, bundle: Bundle, config: ServeConfig, *, backend: str = "auto", threads: int = 0,
                 conf: float | None = None, iou: float | None = None, max_det: int | None = None) -> None:
        config.check()
        from . import require_stack

        require_stack()
        import uvicorn

        from .app import ServeState, build_app

        self.sock = bind(config.host, config.port)
        try:
            self.batcher = open_batcher(bundle, config, backend=backend, threads=threads, conf=conf, iou=iou,
                                        max_det=max_det)
        except BaseException:
            self.sock.close()
            raise
        self.state = ServeState(config, self.batcher, class_names=bundle.sidecar.class_names,
                                model=str(bundle.root), backend=self.batcher.backend_kind)
        uv = uvicorn.Config(build_app(self.state), limit_concurrency=config.max_connections,
                            timeout_keep_alive=config.keepalive_s, log_level="warning", access_log=False,
                            server_header=False, lifespan="off")
        self.server = uvicorn.Server(uv)
        host, port = self.sock.getsockname()[:2]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.close()

    def stop(self) -> None:
        """Ask ``run()`` (in another thread) to finish: open requests complete, then it returns."""
        self.server.should_exit = True

    def close(self) -> None:
        self.state.executor.shutdown(wait=False)
        self.batcher.close()
        self.sock.close()


def serve(bundle: Bundle, config: ServeConfig, *, backend: str = "auto", threads: int = 0,
          conf: float | None = None, iou: float | None = None, max_det: int | None = None,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Serve ``bundle`` until interrupted; ``on_ready`` gets the base URL once the socket listens."""
    service = Service(bundle, config, backend=backend, threads=threads, conf=conf, iou=iou, max_det=max_det)
    if on_ready is not None:
        on_ready(service.url)
    service.run()
