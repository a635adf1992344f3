"""``edgevision serve``: an HTTP inference service (Starlette + uvicorn, the ``serve`` extra).

POST a JPEG or PNG to ``/v1/detect`` and get the frame's JSON record (as the JSON-lines sink writes it);
concurrent requests are batched into one backend (``batcher``). Importing this package imports neither
Starlette nor uvicorn: ``app`` and ``server`` do, when a service is built.
"""

from __future__ import annotations

from .config import ServeConfig, is_loopback

__all__ = ["ServeConfig", "is_loopback", "require_stack"]


def require_stack() -> None:
    """Raise a one-line ``MissingDependencyError`` (exit 2) when Starlette or uvicorn is not installed."""
    from ..errors import dependency_error

    for module in ("starlette", "uvicorn"):
        try:
            __import__(module)
        except ImportError as exc:
            raise dependency_error(exc, module, "serve", "edgevision serve") from exc
