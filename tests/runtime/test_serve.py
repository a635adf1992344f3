"""`edgevision serve`: answers equal `Predictor.predict`, concurrent requests share a batch, auth, and refusals.

The service runs for real (uvicorn on a free loopback port, in a thread) over the tiny pixel-dependent model
of ``serve_fixtures``; the bad-input cases are in ``test_serve_limits.py``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from serve_fixtures import image_bytes, make_pixel_bundle

_WHY = "needs the serve extra (starlette, uvicorn, httpx): pip install 'edgevision[serve]'"
pytest.importorskip("starlette", reason=_WHY)
pytest.importorskip("uvicorn", reason=_WHY)
httpx = pytest.importorskip("httpx", reason=_WHY)
cv2 = pytest.importorskip("cv2", reason="needs OpenCV (the runtime extra)")
pytest.importorskip("onnxruntime", reason="needs ONNX Runtime (the runtime extra)")
pytest.importorskip("onnx", reason="the tiny test model is written with onnx.helper")

from edgevision.runtime.errors import MissingDependencyError, UserError  # noqa: E402
from edgevision.runtime.model_plan import load_model  # noqa: E402
from edgevision.runtime.predictor import Predictor  # noqa: E402
from edgevision.runtime.serve import ServeConfig, require_stack  # noqa: E402
from edgevision.runtime.serve.batcher import profile_max_batch  # noqa: E402
from edgevision.runtime.serve.server import Service  # noqa: E402

TOKEN = "s3cret-token"


def start(bundle_dir: Path, **cfg: Any) -> tuple[Service, threading.Thread]:
    svc = Service(load_model(bundle_dir), ServeConfig(port=0, **cfg))
    thread = threading.Thread(target=svc.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not svc.server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert svc.server.started, "the service did not start"
    return svc, thread


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pixel_bundle(tmp_path_factory.mktemp("serve") / "dyn")


@pytest.fixture(scope="module")
def service(bundle_dir: Path) -> Iterator[Service]:
    svc, thread = start(bundle_dir, token=TOKEN, max_batch=4, batch_timeout_ms=150)
    yield svc
    svc.stop()
    thread.join(15)


@pytest.fixture(scope="module")
def predictor(bundle_dir: Path) -> Iterator[Predictor]:
    p = Predictor(load_model(bundle_dir))
    yield p
    p.close()


def client(svc: Service, token: str | None = TOKEN) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.Client(base_url=svc.url, headers=headers, timeout=30)


def expected(predictor: Predictor, body: bytes) -> dict[str, Any]:
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    return predictor.predict(image).to_dict(["a", "b", "c"])


def metric(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^edgevision_{name}{re.escape(labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.mark.parametrize("fmt", [".png", ".jpg", "progressive"])
def test_detections_equal_predictor(service: Service, predictor: Predictor, fmt: str) -> None:
    with client(service) as c:
        for value in (30, 200):
            if fmt == "progressive":
                _, buf = cv2.imencode(".jpg", cv2.imdecode(np.frombuffer(image_bytes(value), np.uint8), 1),
                                       [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
                body = buf.tobytes()
            else:
                body = image_bytes(value, fmt)
            r = c.post("/v1/detect", content=body, headers={"Content-Type": "image/jpeg"})
            assert r.status_code == 200, r.text
            got, want = r.json(), expected(predictor, body)
            assert len(want["boxes"]) == 2  # the model's two boxes survive NMS and the threshold
            for key in ("boxes", "scores", "class_ids", "classes"):
                assert got[key] == want[key], key
            assert got["keypoints"] is None and got["stream_id"] == 0 and got["latency_ms"] >= 0


def test_concurrent_requests_share_one_batch_and_keep_their_own_results(
        service: Service, predictor: Predictor) -> None:
    bodies = [image_bytes(v) for v in (20, 90, 160, 230)]
    with client(service) as c:
        before = c.get("/metrics").text
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda b: c.post("/v1/detect", content=b), bodies))
        after = c.get("/metrics").text
    for body, r in zip(bodies, replies):
        assert r.status_code == 200, r.text
        assert r.json()["boxes"] == expected(predictor, body)["boxes"]  # not a neighbour's
    assert len({str(r.json()["boxes"]) for r in replies}) == 4
    images = metric(after, "batched_images_total") - metric(before, "batched_images_total")
    batches = metric(after, "batches_total") - metric(before, "batches_total")
    assert images == 4
    assert batches < 4, f"4 concurrent requests ran in {batches} inference calls: nothing was batched"


def test_batch1_model_runs_requests_one_by_one(tmp_path: Path, predictor: Predictor) -> None:
    svc, thread = start(make_pixel_bundle(tmp_path / "b1", batch=1), max_batch=8, batch_timeout_ms=100)
    try:
        bodies = [image_bytes(v) for v in (50, 120, 190)]
        with client(svc, token=None) as c, ThreadPoolExecutor(3) as pool:
            replies = list(pool.map(lambda b: c.post("/v1/detect", content=b), bodies))
            text = c.get("/metrics").text
        for body, r in zip(bodies, replies):
            assert r.status_code == 200 and r.json()["boxes"] == expected(predictor, body)["boxes"]
        assert metric(text, "batch_size_total", '{size="1"}') == 3
        assert metric(text, "max_batch") == 1
        svc.batcher.close()  # the inference thread gone: liveness probes must see it
        with client(svc, token=None) as c:
            assert c.get("/health").status_code == 503
    finally:
        svc.stop()
        thread.join(15)


def test_fixed_batch_2_model_gets_padded_batches(tmp_path: Path, predictor: Predictor) -> None:
    svc, thread = start(make_pixel_bundle(tmp_path / "b2", batch=2), max_batch=8, batch_timeout_ms=100)
    try:
        bodies = [image_bytes(v) for v in (60, 140, 220)]
        with client(svc, token=None) as c, ThreadPoolExecutor(3) as pool:
            replies = list(pool.map(lambda b: c.post("/v1/detect", content=b), bodies))
            text = c.get("/metrics").text
        for body, r in zip(bodies, replies):
            assert r.status_code == 200 and r.json()["boxes"] == expected(predictor, body)["boxes"]
        assert metric(text, "max_batch") == 2 and metric(text, "batched_images_total") == 3
    finally:
        svc.stop()
        thread.join(15)


def test_tensorrt_profile_caps_the_batch() -> None:
    plan = SimpleNamespace(inputs=[SimpleNamespace(alloc_shape=(4, 3, 32, 32))])
    assert profile_max_batch(SimpleNamespace(backend=SimpleNamespace(plan=plan))) == 4
    assert profile_max_batch(SimpleNamespace(backend=object())) is None


def test_token_is_required_and_compared(service: Service) -> None:
    body = image_bytes(100)
    for token in (None, "wrong", TOKEN + "x", TOKEN[:-1]):
        with client(service, token=token) as c:
            r = c.post("/v1/detect", content=body)
            assert r.status_code == 401 and "Bearer" in r.json()["error"]
            assert r.headers["WWW-Authenticate"] == "Bearer"
            assert c.get("/metrics").status_code == 401
            assert c.get("/health").json() == {"status": "ok"}  # liveness probes need no token
    with client(service) as c:
        r = c.post("/v1/detect", content=body, headers={"Authorization": f"Basic {TOKEN}"})
        assert r.status_code == 401
        assert c.post("/v1/detect", content=body).status_code == 200


def test_wrong_path_and_method_are_json_errors(service: Service) -> None:
    with client(service) as c:
        for method, path, status in (("GET", "/v1/detect", 405), ("POST", "/nope", 404),
                                     ("DELETE", "/health", 405), ("PUT", "/metrics", 405)):
            r = c.request(method, path)
            assert r.status_code == status and r.json()["status"] == status, (method, path)
        assert c.post("/v1/detect", content=image_bytes(10)).status_code == 200


def test_binding_beyond_loopback_needs_a_token() -> None:
    with pytest.raises(UserError, match=r"0\.0\.0\.0 is reachable .*--token SECRET.*--insecure"):
        ServeConfig(host="0.0.0.0").check()
    with pytest.raises(UserError, match="--token is empty"):
        ServeConfig(token="  ").check()
    ServeConfig(host="0.0.0.0", token="t").check()
    ServeConfig(host="0.0.0.0", insecure=True).check()
    ServeConfig(host="::1").check()


def test_cli_refuses_network_without_token_in_one_line(bundle_dir: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", "from edgevision.toolkit.cli import main; main()", "serve",
                           str(bundle_dir), "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--insecure" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_missing_extra_names_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgevision\[serve\]'"):
        require_stack()


def test_importing_the_serve_package_stays_lean() -> None:
    code = ("import sys, edgevision.runtime, edgevision.runtime.serve, edgevision.runtime.serve.decode, "
            "edgevision.runtime.serve.batcher\n"
            "heavy = [m for m in ('starlette', 'uvicorn', 'torch') if m in sys.modules]\n"
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
