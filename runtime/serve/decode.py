"""Request bodies to BGR images: the header is checked before any pixel is decoded.

Hand-written header parsing (PNG's IHDR chunk, JPEG's SOFn segment; ~50 lines) rather than a library because
OpenCV, which decodes the pixels here as in ``edgevision run``, has no header-only read, and Pillow would be a
dependency on the device only for this. The header gives the size, so an image over the pixel limit is
refused before OpenCV allocates it (a 30 kB JPEG can declare 65535 x 65535 px, 12 GB decoded). The parse also
catches truncation, which OpenCV does not: ``cv2.imdecode`` of a JPEG cut in half returns a full-size image
whose lower part is grey and only prints a libjpeg warning, so a JPEG without an end-of-image marker after its
scan, or a PNG without its IEND chunk, is refused as truncated.
"""

from __future__ import annotations

import struct

import numpy as np

__all__ = ["ImageError", "decode_image", "probe_image"]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"
# start-of-frame markers (baseline, progressive, lossless, arithmetic); C4/C8/CC are other segments
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])


class ImageError(Exception):
    """A body that is not a usable image: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i, n, size = 2, len(data), None
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise ImageError(422, f"corrupt JPEG: expected a marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        if marker == 0xD9:
            break
        (seglen,) = struct.unpack(">H", data[i + 2:i + 4])
        if seglen < 2:
            raise ImageError(422, f"corrupt JPEG: segment length {seglen} at byte {i}")
        if marker in _JPEG_SOF:
            if i + 9 > n:
                break
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            size = (w, h)
        if marker == 0xDA:  # start of scan: entropy-coded data follows, where 0xFF is always byte-stuffed
            if size is None:
                raise ImageError(422, "corrupt JPEG: scan before the frame header")
            if data.find(b"\xff\xd9", i + 2 + seglen) < 0:
                raise ImageError(422, "truncated JPEG: no end-of-image marker after the scan")
            return size
        i += 2 + seglen
    raise ImageError(422, "truncated JPEG: it ends before its image data")


def probe_image(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) from the header; ``ImageError`` for a non-image (415) or a truncated one (422)."""
    if data.startswith(_PNG_MAGIC):
        if len(data) < 33 or data[12:16] != b"IHDR":
            raise ImageError(422, "truncated PNG: no IHDR header")
        w, h = struct.unpack(">II", data[16:24])
        if _PNG_END not in data[-12:]:
            raise ImageError(422, "truncated PNG: no IEND chunk at its end")
        return "png", int(w), int(h)
    if data.startswith(b"\xff\xd8\xff"):
        w, h = _jpeg_size(data)
        return "jpeg", w, h
    if not data:
        raise ImageError(400, "empty body: POST the bytes of a JPEG or PNG image")
    raise ImageError(415, "the body is not a JPEG or PNG image")


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """A BGR uint8 ``[H, W, 3]`` image, decoded as ``edgevision run`` reads image files (``cv2.IMREAD_COLOR``).

    Raises ``ImageError``: 415 not JPEG/PNG, 422 truncated or undecodable, 413 over ``max_pixels``."""
    fmt, w, h = probe_image(data)
    if w <= 0 or h <= 0:
        raise ImageError(422, f"{fmt.upper()} header says {w}x{h} pixels")
    if w * h > max_pixels:
        raise ImageError(413, f"image of {w}x{h} = {w * h} pixels is over the limit of {max_pixels} pixels")
    from ..lazy import cv2 as lazy_cv2

    cv2 = lazy_cv2()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.ndim != 3 or img.shape[2] != 3:
        raise ImageError(422, f"the {fmt.upper()} image could not be decoded")
    return img
