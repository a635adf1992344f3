"""TrtBackend and the engine choice against fake ``tensorrt`` / ``pycuda`` (tests/runtime/fake_trt.py).

What a device would show: the bundle's matching engine is the one deserialized (exact TensorRT release and
GPU SM), a mismatch is one line with the rebuild command, dtypes work where ``trt.nptype`` is broken
(TensorRT 8.5 + numpy >= 1.24), and CUDA contexts are pushed / popped / destroyed by the right thread.
"""

from __future__ import annotations

import gc
import json
import shlex
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_trt import installed, plan_bytes

from edgevision.runtime.backends.choice import choose_backend
from edgevision.runtime.backends.tensorrt import TrtBackend
from edgevision.runtime.bundle import SIDECAR_NAME, load_bundle
from edgevision.runtime.errors import UserError
from edgevision.runtime.model_plan import load_model

SIDE = {"name": "t", "task": "detect", "class_names": ["a"], "input": {"shape": [1, 3, 4, 4]},
        "output": {"num_classes": 1}}
ORIN_JP6 = {"file": "model.orin.fp16.engine", "device_profile": "jetson-agx-orin-64gb",
            "tensorrt_version": "10.3.0.30", "gpu_sm": "8.7", "precision": "fp16"}
ORIN_JP5 = {"file": "model.orin-jp5.fp16.engine", "device_profile": "jetson-agx-orin-64gb",
            "tensorrt_version": "8.5.2.2", "gpu_sm": "8.7", "precision": "fp16"}
RTX = {"file": "model.rtx.fp16.engine", "device_profile": "desktop-rtx", "tensorrt_version": "10.3.0.30",
       "gpu_sm": "8.9", "precision": "fp16"}


def make_bundle(root: Path, engines: list[dict[str, Any]], scales: dict[str, float] | None = None) -> Path:
    root.mkdir(parents=True)
    (root / "model.onnx").write_bytes(b"\x08\x07")
    (root / SIDECAR_NAME).write_text(json.dumps({**SIDE, "engines": engines}))
    for i, e in enumerate(engines):
        (root / e["file"]).write_bytes(plan_bytes(scale=(scales or {}).get(e["file"], float(i + 2))))
    return root


def x(batch: int = 1) -> np.ndarray:
    return np.arange(batch * 48, dtype=np.float32).reshape(batch, 3, 4, 4)


# -- finding 2: no trt.nptype ------------------------------------------------------------------------


def test_dtypes_without_nptype_on_tensorrt_8_5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "m.engine").write_bytes(plan_bytes(scale=3.0))
    with installed(monkeypatch, version="8.5.2.2") as (trt, _), TrtBackend(tmp_path / "m.engine") as be:
        with pytest.raises(AttributeError):
            trt.nptype(trt.DataType.FLOAT)  # the fake reproduces 8.5's table
        assert [(s.name, s.shape, s.dtype) for s in be.inputs] == [("images", ("batch", 3, 4, 4), "float32")]
        np.testing.assert_array_equal(be.infer({"images": x(2)})["out"], x(2) * 3)


def test_type_numpy_cannot_hold_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "m.engine").write_bytes(plan_bytes(dtype="BF16"))
    with installed(monkeypatch) as (_, cuda), pytest.raises(UserError, match="type bf16, which numpy cannot hold"):
        TrtBackend(tmp_path / "m.engine")
    assert all(c.destroyed for c in cuda.contexts)  # the failed open released its context


# -- finding 7: CUDA contexts and threads ------------------------------------------------------------


def test_two_backends_in_one_thread_each_run_under_their_own_context(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.engine").write_bytes(plan_bytes(scale=2.0))
    (tmp_path / "b.engine").write_bytes(plan_bytes(scale=5.0))
    with installed(monkeypatch) as (trt, cuda):
        a, b = TrtBackend(tmp_path / "a.engine"), TrtBackend(tmp_path / "b.engine")
        assert cuda.current() is None  # neither is left current after opening
        for _ in range(2):
            np.testing.assert_array_equal(a.infer({"images": x()})["out"], x() * 2)
            np.testing.assert_array_equal(b.infer({"images": x()})["out"], x() * 5)
        assert [c for _, c in trt.executions] == [0, 1, 0, 1]
        b.close()
        np.testing.assert_array_equal(a.infer({"images": x()})["out"], x() * 2)  # a survives b's close
        a.close()
        assert cuda.current() is None and all(c.destroyed and not c.leaked for c in cuda.contexts)


def test_close_from_another_thread_destroys_the_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "m.engine").write_bytes(plan_bytes())
    with installed(monkeypatch) as (_, cuda):
        be = TrtBackend(tmp_path / "m.engine")
        t = threading.Thread(target=be.close)
        t.start()
        t.join()
        ctx = cuda.contexts[0]
        assert ctx.destroyed and not ctx.leaked
        detaches = [(tid, what) for tid, what, _ in cuda.events if what.startswith("detach")]
        assert detaches == [(t.ident, "detach-destroyed")]
        assert cuda.memory == {}  # every device buffer freed
        be.close()  # idempotent
        with pytest.raises(UserError, match="after close"):
            be.infer({"images": x()})


def test_garbage_collected_on_another_thread_does_not_leak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "m.engine").write_bytes(plan_bytes())
    with installed(monkeypatch) as (_, cuda):
        holder = [TrtBackend(tmp_path / "m.engine")]

        def drop() -> None:
            holder.clear()  # the last reference goes on this thread: __del__ runs here
            gc.collect()

        t = threading.Thread(target=drop)
        t.start()
        t.join()
        assert cuda.contexts[0].destroyed and not cuda.contexts[0].leaked


def test_infer_from_threads_is_serialised_under_the_right_context(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "m.engine").write_bytes(plan_bytes(scale=2.0))
    with installed(monkeypatch, exec_delay=0.005) as (trt, cuda), TrtBackend(tmp_path / "m.engine") as be:
        errors: list[BaseException] = []

        def work(k: int) -> None:
            try:
                for _ in range(5):
                    inp = x(k)
                    np.testing.assert_array_equal(be.infer({"images": inp})["out"], inp * 2)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in (1, 2, 3, 4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert trt.max_running == 1  # never two executions on one backend at once
        assert len(trt.executions) == 20 and {c for _, c in trt.executions} == {0}
        count = {w: sum(1 for _, what, _ in cuda.events if what == w) for w in ("make", "push", "pop")}
        assert count == {"make": 1, "push": 20, "pop": 21}  # each call pushed and popped; make was popped too


# -- findings 1 and 4: the engine for this device ----------------------------------------------------


def test_tensorrt_backend_runs_the_matching_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_bundle(tmp_path / "b", [RTX, ORIN_JP5, ORIN_JP6], {ORIN_JP6["file"]: 7.0})
    with installed(monkeypatch, version="10.3.0.30", sm=(8, 7)) as (trt, _):
        choice = choose_backend(load_bundle(root), "tensorrt")
        assert (choice.kind, choice.path.name) == ("tensorrt", ORIN_JP6["file"])
        for kind in ("tensorrt", "auto"):  # (the echo plan's "out" is no yolo head: no Predictor on top)
            be = choose_backend(load_bundle(root), kind).open()
            try:
                np.testing.assert_array_equal(be.infer({"images": x()})["out"], x() * 7)
            finally:
                be.close()
        assert [d["host_code_allowed"] for d in trt.deserialized] == [False, False]


def test_exact_release_is_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_bundle(tmp_path / "my bundle", [ORIN_JP6])
    with installed(monkeypatch, version="10.3.1.5", sm=(8, 7)), pytest.raises(UserError) as err:
        choose_backend(load_bundle(root), "tensorrt")
    msg = str(err.value)
    assert "\n" not in msg and "TensorRT 10.3.0.30 expected, 10.3.1.5 found" in msg
    cmd = msg.split("rebuild it on this device: ", 1)[1]
    assert shlex.split(cmd) == ["edgevision", "engine", str(root), "--device", "jetson-agx-orin-64gb"]


def test_auto_falls_back_to_onnxruntime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    root = make_bundle(tmp_path / "b", [RTX])
    with installed(monkeypatch, version="10.3.0.30", sm=(8, 7)):
        choice = choose_backend(load_bundle(root), "auto")  # SM 8.9 engine on an SM 8.7 device
    assert (choice.kind, choice.path.name) == ("onnxruntime", "model.onnx")
    assert "GPU SM 8.9 expected, SM 8.7 found" in caplog.text
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)  # TensorRT not installed
    assert choose_backend(load_bundle(root), "auto").kind == "onnxruntime"
    with pytest.raises(UserError, match=r"tensorrt is not installed.*python3-libnvinfer"):
        choose_backend(load_bundle(root), "tensorrt")


def test_bundle_without_engines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_bundle(tmp_path / "b", [])
    assert choose_backend(load_bundle(root), "auto").kind == "onnxruntime"  # TensorRT not even probed
    with installed(monkeypatch, version="10.3.0.30"), pytest.raises(UserError, match="has no TensorRT engine"):
        choose_backend(load_bundle(root), "tensorrt")


def test_version_compatible_plan_allows_host_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vc = {**RTX, "tensorrt_version": "10.0.1.6", "flags": ["version_compatible"]}
    root = make_bundle(tmp_path / "b", [vc])
    with installed(monkeypatch, version="10.3.0.30", sm=(8, 9)) as (trt, _):
        with choose_backend(load_bundle(root), "tensorrt").open() as be:
            assert be.infer({"images": x()})["out"].shape == (1, 3, 4, 4)
        assert [d["host_code_allowed"] for d in trt.deserialized] == [True]


def test_hardware_compatible_plan_refused_on_jetson(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hc = {**RTX, "gpu_sm": "8.6", "flags": ["hardware_compatible"]}
    root = make_bundle(tmp_path / "b", [hc])
    with installed(monkeypatch, version="10.3.0.30", sm=(8, 9)):
        assert choose_backend(load_bundle(root), "tensorrt").path.name == RTX["file"]
    with installed(monkeypatch, version="10.3.0.30", sm=(8, 7)), pytest.raises(UserError, match=r"GPU SM 8\.6"):
        choose_backend(load_bundle(root), "tensorrt")


def test_plain_plan_file_with_its_sidecar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_bundle(tmp_path / "b", [ORIN_JP5, ORIN_JP6], {ORIN_JP5["file"]: 3.0})
    with installed(monkeypatch, version="8.5.2.2", sm=(8, 7)):
        bundle = load_model(root / ORIN_JP5["file"])
        with choose_backend(bundle, "auto").open() as be:
            np.testing.assert_array_equal(be.infer({"images": x()})["out"], x() * 3)
        with pytest.raises(UserError, match=r"TensorRT 10\.3\.0\.30 expected, 8\.5\.2\.2 found"):
            choose_backend(load_model(root / ORIN_JP6["file"]), "auto")  # asked for explicitly: no fallback
        with pytest.raises(UserError, match="cannot run on ONNX Runtime"):
            choose_backend(bundle, "onnxruntime")
    (root / "stray.engine").write_bytes(plan_bytes())
    with pytest.raises(UserError, match=r"lists no engine .stray\.engine."):
        choose_backend(load_model(root / "stray.engine"), "tensorrt")
    lone = tmp_path / "lone.plan"
    lone.write_bytes(plan_bytes())
    with pytest.raises(UserError, match=r"edgevision\.json beside it"):
        load_model(lone)


def test_cli_run_tensorrt_mismatch_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from edgevision.toolkit.cli import main

    root = make_bundle(tmp_path / "b", [ORIN_JP6])
    with installed(monkeypatch, version="8.5.2.2", sm=(8, 7)), pytest.raises(SystemExit) as code:
        main(["run", str(root), "--source", "synthetic://?frames=1", "--backend", "tensorrt", "--no-status"])
    err = capsys.readouterr().err.strip()
    assert code.value.code == 2 and "\n" not in err
    assert err.startswith("error: ") and err.endswith(f"edgevision engine {root} --device jetson-agx-orin-64gb")


def test_cli_run_uses_the_engine_in_the_inference_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("cv2", reason="the pipeline's sources and preprocessing need OpenCV")
    from edgevision.toolkit.cli import main

    root = make_bundle(tmp_path / "b", [ORIN_JP5])
    (root / ORIN_JP5["file"]).write_bytes(plan_bytes(yolo=True))
    out = tmp_path / "out.jsonl"
    with installed(monkeypatch, version="8.5.2.2", sm=(8, 7)) as (trt, cuda):
        main(["run", str(root / ORIN_JP5["file"]), "--source", "synthetic://?frames=3&width=64&height=48",
              "--sink", f"jsonl:{out}", "--no-status"])
    assert len(out.read_text().splitlines()) == 3 and len(trt.executions) == 3
    (ctx,) = cuda.contexts
    assert ctx.creator != threading.get_ident()  # made by the pipeline's inference thread
    assert ctx.destroyed and not ctx.leaked and {tid for tid, _ in trt.executions} == {ctx.creator}


def test_pick_prefers_this_release_then_the_gpu(tmp_path: Path) -> None:
    from edgevision.runtime.backends.choice import pick_engine

    vc = {**ORIN_JP6, "file": "vc.engine", "tensorrt_version": "10.0.1.6", "flags": ["version_compatible"]}
    dla = {**ORIN_JP6, "file": "dla.engine", "dla_core": 0}
    root = make_bundle(tmp_path / "b", [vc, dla, ORIN_JP6])
    assert pick_engine(load_bundle(root), "10.3.0.30", "8.7").file == ORIN_JP6["file"]
    root2 = make_bundle(tmp_path / "b2", [vc, dla])
    assert pick_engine(load_bundle(root2), "10.3.0.30", "8.7").file == "dla.engine"
    assert pick_engine(load_bundle(root2), "10.4.0.1", "8.7").file == "vc.engine"  # only the VC plan runs there
