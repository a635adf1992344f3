"""``http[://HOST:PORT][?token=SECRET]``: the live viewer as a sink, and the parsing of its spec."""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Sequence
from typing import Any

from ..errors import UserError
from ..frames import Frame
from ..results import Detections
from .base import SinkContext

log = logging.getLogger("edgevision.runtime.sinks")


class HttpViewerSink:
    """Serves the live viewer (``viewer.LiveViewer``) while the pipeline runs; ``.url`` says where.

    ``write`` only stores a reference to the newest frame (microseconds): drawing and JPEG encoding
    happen in the viewer's own thread, and only while a browser is watching.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
                 class_names: Sequence[str] | None = None, skeleton: Sequence[tuple[int, int]] | None = None,
                 snapshot: Any = None, *, allow_insecure: bool = False) -> None:
        from .viewer import LiveViewer

        self.viewer = LiveViewer(host, port, token=token, class_names=class_names, skeleton=skeleton,
                                 snapshot=snapshot, allow_insecure=allow_insecure)
        self.url = self.viewer.url
        log.info("live viewer at %s", self.url)

    def start(self, ctx: SinkContext) -> None:
        self.viewer.configure(class_names=ctx.class_names, skeleton=ctx.keypoint_skeleton,
                              snapshot=ctx.snapshot)

    def write(self, frame: Frame, detections: Detections) -> None:
        self.viewer.publish(frame, detections)

    def close(self) -> None:
        self.viewer.close()


def _parse_http(spec: str) -> tuple[str, int, str | None, bool]:
    """(host, port, token, insecure) of ``http[://HOST:PORT][?token=SECRET][&insecure=1]``."""
    if spec == "http":
        return "127.0.0.1", 8080, None, False
    u = urllib.parse.urlsplit(spec)
    try:
        port = u.port
    except ValueError:
        raise UserError(f"--sink {spec!r}: bad port; expected http://HOST:PORT") from None
    if u.scheme != "http" or u.path not in ("", "/"):
        raise UserError(f"--sink {spec!r}: expected http://HOST:PORT[?token=SECRET]")
    query = urllib.parse.parse_qs(u.query, keep_blank_values=True)  # an empty ?token= is an error, not "no token"
    unknown = sorted(set(query) - {"token", "insecure"})
    if unknown:
        raise UserError(f"--sink {spec!r}: unknown option(s) {', '.join(unknown)}; only ?token=SECRET, ?insecure=1")
    token = query.get("token", [None])[-1]
    if token is not None and not token.strip():
        raise UserError(f"--sink {spec!r}: the token is empty; give ?token=SECRET")
    insecure = query.get("insecure", ["0"])[-1]
    if insecure not in ("0", "1"):
        raise UserError(f"--sink {spec!r}: insecure must be 0 or 1, got {insecure!r}")
    return u.hostname or "127.0.0.1", 8080 if port is None else port, token, insecure == "1"
