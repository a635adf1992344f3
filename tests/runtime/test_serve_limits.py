"""`edgevision serve` bad input: every case gets its 4xx JSON answer and the service keeps serving.

Body limit: refused from Content-Length before the body is read, and while a chunked body streams in, with
the connection closed (checked on a raw socket: the 413 arrives while most of the body is still unsent).
Image limit: a header that declares too many pixels is refused before decoding (the test images are a few
hundred bytes that declare 10^10 pixels, so decoding them would fail loudly).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator

import pytest
from serve_fixtures import image_bytes, make_pixel_bundle

_WHY = "needs the serve extra (starlette, uvicorn, httpx): pip install 'edgevision[serve]'"
pytest.importorskip("starlette", reason=_WHY)
pytest.importorskip("uvicorn", reason=_WHY)
httpx = pytest.importorskip("httpx", reason=_WHY)
pytest.importorskip("cv2", reason="needs OpenCV (the runtime extra)")
pytest.importorskip("onnxruntime", reason="needs ONNX Runtime (the runtime extra)")
pytest.importorskip("onnx", reason="the tiny test model is written with onnx.helper")

from edgevision.runtime.model_plan import load_model  # noqa: E402
from edgevision.runtime.serve import ServeConfig  # noqa: E402
from edgevision.runtime.serve.decode import ImageError, probe_image  # noqa: E402
from edgevision.runtime.serve.server import Service  # noqa: E402

LIMIT = 64 << 10


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = make_pixel_bundle(tmp_path_factory.mktemp("serve-limits") / "dyn")
    svc = Service(load_model(root), ServeConfig(port=0, max_batch=4, batch_timeout_ms=1, max_body_bytes=LIMIT,
                                                max_pixels=1000 * 1000))
    thread = threading.Thread(target=svc.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not svc.server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield svc
    svc.stop()
    thread.join(15)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(w: int = 100_000, h: int = 100_000) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))


def huge_jpeg() -> bytes:
    """A real small JPEG whose frame header is rewritten to declare 60000 x 60000 pixels."""
    data = bytearray(image_bytes(100, ".jpg"))
    i = 2
    while data[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    data[i + 5:i + 9] = struct.pack(">HH", 60000, 60000)
    return bytes(data)


JPEG = image_bytes(120, ".jpg")
PNG = image_bytes(120, ".png")
BAD = [
    ("text", b"hello, not an image", {}, 415, "not a JPEG or PNG"),
    ("empty", b"", {}, 400, "empty body"),
    ("jpeg-magic-then-junk", b"\xff\xd8\xff" + b"junk" * 20, {}, 422, "JPEG"),
    ("truncated-jpeg", JPEG[: len(JPEG) // 2], {}, 422, "truncated JPEG"),
    ("jpeg-without-scan", JPEG[:200], {}, 422, "truncated JPEG"),
    ("truncated-png", PNG[: len(PNG) // 2], {}, 422, "truncated PNG"),
    ("png-header-only", PNG[:20], {}, 422, "truncated PNG"),
    ("huge-png", huge_png(), {}, 413, "pixels"),
    ("huge-jpeg", huge_jpeg(), {}, 413, "pixels"),
    ("multipart", b"--x\r\n\r\n--x--", {"Content-Type": "multipart/form-data; boundary=x"}, 415, "multipart"),
    ("over-body-limit", JPEG + b"\0" * LIMIT, {}, 413, "limit"),
]


@pytest.mark.parametrize(("body", "headers", "status", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_a_clear_4xx_and_the_service_keeps_serving(
        service: Service, body: bytes, headers: dict[str, str], status: int, words: str) -> None:
    with httpx.Client(base_url=service.url, timeout=30) as c:
        r = c.post("/v1/detect", content=body, headers=headers)
        assert r.status_code == status, r.text
        assert r.json()["status"] == status and words in r.json()["error"]
    with httpx.Client(base_url=service.url, timeout=30) as c:
        ok = c.post("/v1/detect", content=JPEG)
        assert ok.status_code == 200 and len(ok.json()["boxes"]) == 2


def test_probe_reads_sizes_from_headers() -> None:
    assert probe_image(image_bytes(1, ".png", 48, 40)) == ("png", 48, 40)
    assert probe_image(image_bytes(1, ".jpg", 48, 40)) == ("jpeg", 48, 40)
    with pytest.raises(ImageError):
        probe_image(b"GIF89a")


def _request_head(service: Service, extra: str) -> bytes:
    host, port = service.sock.getsockname()[:2]
    return (f"POST /v1/detect HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: image/jpeg\r\n{extra}\r\n").encode()


def _read_status(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_declared_oversize_body_is_refused_before_it_is_sent(service: Service) -> None:
    host, port = service.sock.getsockname()[:2]
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(_request_head(service, f"Content-Length: {100 << 20}\r\n") + b"\xff\xd8\xff" + b"\0" * 4096)
        head = _read_status(s)  # answered with 99.99 % of the declared body never sent
        assert head.startswith(b"HTTP/1.1 413"), head
        assert b"connection: close" in head.lower()


def test_streamed_oversize_body_is_cut_off(service: Service) -> None:
    """No Content-Length (chunked): the 413 comes once the limit is passed and the connection closes, so a
    sender of 32 MiB is stopped after a small part of it (loopback socket buffers hold a few MiB)."""
    host, port = service.sock.getsockname()[:2]
    total, sent = 32 << 20, 0
    chunk = b"%x\r\n" % 16384 + b"\0" * 16384 + b"\r\n"
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(_request_head(service, "Transfer-Encoding: chunked\r\n"))
        try:
            while sent < total:
                s.sendall(chunk)
                sent += 16384
        except OSError:  # the server answered and closed: the rest cannot be sent
            pass
        head = _read_status(s)
    assert head.startswith(b"HTTP/1.1 413"), head
    assert sent < total // 2, f"the server read {sent} of {total} bytes before refusing"
