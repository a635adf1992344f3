"""``open_source(uri)``: the URI scheme dispatch (see the package docstring for the schemes)."""

from __future__ import annotations

import glob
import math
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import UserError
from ..lazy import cv2 as _cv2
from .base import DECODE_THREADS, IMAGE_SUFFIXES, MAX_FPS, MAX_FRAME_SIDE, SCHEMES, Source
from .capture import CaptureSource, _open_camera, _open_csi, _open_stream
from .images import ImageSource, _image_files


def _open_file(uri: str, path: Path, *, timeout_s: float, loop: bool, **kw: Any) -> Source:
    if not path.exists():
        raise UserError(f"{uri}: no such file or directory")
    if path.is_dir():
        return ImageSource(uri, _image_files(uri, list(path.iterdir())), loop=loop, **kw)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(uri, [path], loop=loop, **kw)
    cv2 = _cv2()
    params = [cv2.CAP_PROP_N_THREADS, DECODE_THREADS] if hasattr(cv2, "CAP_PROP_N_THREADS") else []
    return CaptureSource(uri, lambda: cv2.VideoCapture(str(path), cv2.CAP_ANY, params), live=False,
                         what="video file", timeout_s=timeout_s, loop=loop, **kw)



def open_source(uri: str | os.PathLike[str], *, width: int | None = None, height: int | None = None,
                fps: float | None = None, loop: bool = False, timeout_s: float = 10.0,
                stream_id: int = 0) -> Source:
    """Open a frame source by URI (see the module docstring for the schemes).

    ``width``/``height`` resize frames (cameras are asked for that mode first; one of them keeps the aspect
    ratio); ``fps`` asks a camera for that rate and paces files/folders/synthetic to it (making them live);
    ``loop`` restarts files and folders at the end; ``timeout_s`` bounds opening a device or stream.
    Raises ``UserError`` naming the URI when it cannot be opened.
    """
    text = os.fspath(uri)
    for key, side in (("width", width), ("height", height)):
        if side is not None and not 1 <= side <= MAX_FRAME_SIDE:
            raise UserError(f"{text}: {key} {side} out of range [1, {MAX_FRAME_SIDE}]")
    if fps is not None and not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise UserError(f"{text}: fps {fps:g} out of range (0, {MAX_FPS:g}]")
    kw: dict[str, Any] = {"width": width, "height": height, "fps": fps, "stream_id": stream_id}
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", text)
    if m is None:
        if text.isdigit() and not Path(text).exists():
            return _open_camera(text, text, timeout_s=timeout_s, **kw)
        if glob.has_magic(text):
            return ImageSource(text, _image_files(text, [Path(p) for p in glob.glob(text, recursive=True)]),
                               loop=loop, **kw)
        return _open_file(text, Path(text).expanduser(), timeout_s=timeout_s, loop=loop, **kw)
    scheme, rest = m.group(1).lower(), m.group(2)
    if scheme not in SCHEMES:
        raise UserError(f"{text}: unknown source scheme {scheme!r}; use a file or folder path or one of "
                        + ", ".join(f"{s}://" for s in SCHEMES))
    if scheme == "file":
        return _open_file(text, Path(urlsplit(text).path), timeout_s=timeout_s, loop=loop, **kw)
    if scheme == "v4l2":
        return _open_camera(text, rest or "/dev/video0", timeout_s=timeout_s, **kw)
    if scheme == "csi":
        return _open_csi(text, rest.strip("/"), timeout_s=timeout_s, **kw)
    if scheme == "synthetic":
        from .synthetic import open_synthetic  # the renderer imports OpenCV: only for synthetic://

        return open_synthetic(text, urlsplit(text).query, **kw)
    return _open_stream(text, timeout_s=timeout_s, **kw)
