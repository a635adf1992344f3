"""The service's settings and the checks made before anything is opened (token, address).

Defaults and why: 127.0.0.1 (nothing on the network sees a model it was not meant to); a body limit of
20 MiB (a 4096 x 4096 PNG photo is ~15-25 MB, a JPEG a few MB); 16.8 Mpx per image (4096 x 4096, 48 MB decoded;
4K camera frames are 8.3 Mpx); 256 connections (uvicorn answers 503 beyond them, so a flood of idle sockets
cannot exhaust file descriptors); at most ``max_inflight`` requests decoded at once (default 2 x max batch + 2:
one batch running, one filling), so memory stays bounded however many clients wait: a waiting request holds
only its body.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from ..net import is_loopback

__all__ = ["ServeConfig", "is_loopback"]




@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    insecure: bool = False
    max_batch: int = 8
    batch_timeout_ms: float = 2.0
    max_body_bytes: int = 20 << 20
    max_pixels: int = 4096 * 4096
    max_connections: int = 256
    max_inflight: int | None = None
    keepalive_s: int = 5
    read_timeout_s: float = 30.0
    decode_threads: int = 2

    @property
    def inflight(self) -> int:
        return self.max_inflight if self.max_inflight else 2 * self.max_batch + 2

    def check(self) -> None:
        """One-line ``UserError`` for a token or address that must not be served."""
        if self.token is not None and not self.token.strip():
            raise UserError("edgevision serve: --token is empty; give a secret, or no --token on a loopback address")
        if not is_loopback(self.host) and self.token is None and not self.insecure:
            raise UserError(f"edgevision serve: {self.host} is reachable from the network; add --token SECRET "
                            "(clients send 'Authorization: Bearer SECRET'), or --insecure to serve it without one")
