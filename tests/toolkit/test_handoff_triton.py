"""export-triton: the written config.pbtxt parses as Triton's real ``ModelConfig`` and follows the documented rules,
and the written ONNX runs on ONNX Runtime fed exactly as the config says. No Triton server runs here.

``ModelConfig`` comes from tritonclient's generated ``tritonclient/grpc/model_config_pb2.py`` (the ``test``
extra installs tritonclient without its ``grpc`` extra, so the file is loaded by path: importing the
``tritonclient.grpc`` package would need grpcio). Rules checked, from Triton's docs/user_guide/
model_configuration.md: with ``max_batch_size`` > 0 the full shape is ``[-1] + dims`` and every input and output
has the batch axis first; with 0, ``dims`` are the full shape; variable dimensions are -1; data types are the
``TYPE_*`` names; platforms ``onnxruntime_onnx`` / ``tensorrt_plan`` with ``model.onnx`` / ``model.plan`` in a
numeric version folder.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from cli_helpers import run_main
from handoff_fixtures import add_engine, make_bundle, nms_bundle

from edgevision.runtime.postprocess import decode_yolo

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
text_format = pytest.importorskip("google.protobuf.text_format")

# Triton DataType names -> numpy (the test's own table, independent of the exporter's)
NUMPY = {"TYPE_FP32": np.float32, "TYPE_FP16": np.float16, "TYPE_INT32": np.int32, "TYPE_INT64": np.int64,
         "TYPE_UINT8": np.uint8, "TYPE_BOOL": np.bool_}


@functools.lru_cache(maxsize=1)
def model_config_pb2() -> ModuleType:
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("tritonclient is not installed (pip install 'edgevision[test]'): it carries Triton's ModelConfig")
    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    mod_spec = importlib.util.spec_from_file_location("edgevision_test_triton_model_config_pb2", path)
    assert mod_spec is not None and mod_spec.loader is not None
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def parse(config: Path) -> Any:
    pb2 = model_config_pb2()
    return text_format.Parse(config.read_text(), pb2.ModelConfig())


def dtype_name(msg: Any, value: int) -> str:
    return str(model_config_pb2().DataType.Name(value))


def ort_shapes(path: Path) -> dict[str, list[int]]:
    """Every I/O shape as ONNX Runtime reports it (an independent reader), dynamic axes as -1."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return {a.name: [d if isinstance(d, int) else -1 for d in a.shape] for a in sess.get_inputs() + sess.get_outputs()}


def check_against_docs(model_dir: Path) -> Any:
    """Parse ``config.pbtxt`` and check the documented rules against the model file beside it."""
    cfg = parse(model_dir / "config.pbtxt")
    assert cfg.name == model_dir.name
    files = {"onnxruntime_onnx": "model.onnx", "tensorrt_plan": "model.plan"}
    assert cfg.platform in files and (model_dir / "1" / files[cfg.platform]).is_file()
    onnx_file = model_dir / "1" / "model.onnx"
    if onnx_file.is_file():
        shapes = ort_shapes(onnx_file)
        tensors = list(cfg.input) + list(cfg.output)
        assert sorted(t.name for t in tensors) == sorted(shapes)
        for t in tensors:
            full = ([-1] if cfg.max_batch_size > 0 else []) + list(t.dims)
            assert full == shapes[t.name], (t.name, full, shapes[t.name])
            assert dtype_name(cfg, t.data_type).startswith("TYPE_") and t.data_type != 0
    return cfg


def run_as_configured(model_dir: Path, cfg: Any, batch: int = 2) -> dict[str, np.ndarray]:
    """Feed ``1/model.onnx`` what a Triton client sends per the config; check outputs against the config."""
    sess = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    lead = [batch] if cfg.max_batch_size > 0 else []
    feed = {t.name: np.random.default_rng(0).random(lead + list(t.dims)).astype(NUMPY[dtype_name(cfg, t.data_type)])
            for t in cfg.input}
    names = [t.name for t in cfg.output]
    outs = dict(zip(names, sess.run(names, feed), strict=True))
    for t in cfg.output:
        want = lead + list(t.dims)
        got = list(outs[t.name].shape)
        assert len(got) == len(want) and all(w in (-1, g) for w, g in zip(want, got, strict=True)), (t.name, want, got)
        assert outs[t.name].dtype == NUMPY[dtype_name(cfg, t.data_type)]
    return outs


def test_dynamic_batch_detector_gets_batching_and_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = make_bundle(tmp_path / "b", batch="batch")
    code, _, err = run_main(["export-triton", str(bundle), "--out", str(tmp_path / "repo"), "--max-batch", "16",
                               "--instances", "2", "--queue-delay-us", "500"], capsys)
    assert code == 0, err
    model_dir = tmp_path / "repo" / "tiny-detect"
    cfg = check_against_docs(model_dir)
    assert cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 16
    assert [list(t.dims) for t in cfg.input] == [[3, 32, 32]]  # the batch axis is left out
    assert [(t.name, list(t.dims)) for t in cfg.output] == [("output0", [7, 16])]
    assert cfg.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
    assert not cfg.dynamic_batching.preferred_batch_size  # Triton's batcher guide: not for most models
    assert [(g.count, g.kind) for g in cfg.instance_group] == [(2, model_config_pb2().ModelInstanceGroup.KIND_GPU)]
    outs = run_as_configured(model_dir, cfg, batch=3)
    assert outs["output0"].shape == (3, 7, 16)
    # the client step the README describes, done by the runtime's own decoder on what Triton would return
    dets = decode_yolo(outs["output0"], 3, conf=0.3, iou=0.5, max_det=50)
    assert [(d.class_ids.tolist(), d.xyxy.tolist()) for d in dets] == [([1], [[12.0, 12.0, 20.0, 20.0]])] * 3
    assert (model_dir / "labels.txt").read_text().splitlines() == ["cat", "dog", "bird"]
    readme = (model_dir / "README.md").read_text()
    assert "client step" in readme and "NMS" in readme and "letterbox" in readme
    assert (model_dir / "1" / "model.onnx").read_bytes() == (bundle / "model.onnx").read_bytes()


def test_static_batch_gets_max_batch_zero_and_full_dims(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = make_bundle(tmp_path / "b")
    code, _, err = run_main(["export-triton", str(bundle), "--out", str(tmp_path / "repo"), "--name", "det",
                             "--kind", "cpu"], capsys)
    assert code == 0, err
    cfg = check_against_docs(tmp_path / "repo" / "det")
    assert cfg.max_batch_size == 0 and [list(t.dims) for t in cfg.input] == [[1, 3, 32, 32]]
    assert cfg.WhichOneof("scheduling_choice") is None  # no dynamic batcher without a batch axis
    assert cfg.instance_group[0].kind == model_config_pb2().ModelInstanceGroup.KIND_CPU
    run_as_configured(tmp_path / "repo" / "det", cfg)
    # asking to batch a fixed-batch model is a user error, and nothing is written
    code, _, err = run_main(["export-triton", str(bundle), "--out", str(tmp_path / "r2"), "--max-batch", "4"], capsys)
    assert code == 2 and "fixed batch of 1" in err and not (tmp_path / "r2" / "tiny-detect").exists()


def test_nms_layout_postprocesses_in_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("edgevision.toolkit.nms_graph", reason="the NMS graph is the toolkit's (Python >= 3.10)",
                        exc_type=ImportError)
    bundle = nms_bundle(tmp_path / "b")
    code, _, err = run_main(["export-triton", str(bundle), "--out", str(tmp_path / "repo")], capsys)
    assert code == 0, err
    model_dir = tmp_path / "repo" / "tiny-detect"
    cfg = check_against_docs(model_dir)
    got = {t.name: (dtype_name(cfg, t.data_type), list(t.dims)) for t in cfg.output}
    assert got == {"num_dets": ("TYPE_INT32", [1, 1]), "boxes": ("TYPE_FP32", [1, 50, 4]),
                   "scores": ("TYPE_FP32", [1, 50]), "classes": ("TYPE_INT32", [1, 50])}
    assert cfg.max_batch_size == 0
    outs = run_as_configured(model_dir, cfg)
    assert int(outs["num_dets"][0, 0]) == 1 and int(outs["classes"][0, 0]) == 1
    assert outs["boxes"][0, 0].tolist() == [12.0, 12.0, 20.0, 20.0]
    assert "in the graph" in (model_dir / "README.md").read_text()


def test_pose_bundle_declares_the_keypoint_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = make_bundle(tmp_path / "b", task="pose", batch="batch")
    code, _, err = run_main(["export-triton", str(bundle), "--out", str(tmp_path / "repo")], capsys)
    assert code == 0, err
    cfg = check_against_docs(tmp_path / "repo" / "tiny-pose")
    assert cfg.max_batch_size == 8 and list(cfg.output[0].dims) == [4 + 3 + 3 * 4, 16]
    run_as_configured(tmp_path / "repo" / "tiny-pose", cfg)
    assert "keypoint" in (tmp_path / "repo" / "tiny-pose" / "README.md").read_text()


def test_engine_ships_the_plan_as_tensorrt_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = make_bundle(tmp_path / "b", batch="batch")
    plan = add_engine(bundle)
    code, _, err = run_main(["export-triton", str(bundle), "--out", str(tmp_path / "repo"),
                             "--engine", "jetson-orin-nano-8gb"], capsys)
    assert code == 0, err
    model_dir = tmp_path / "repo" / "tiny-detect"
    cfg = check_against_docs(model_dir)
    assert cfg.platform == "tensorrt_plan" and (model_dir / "1" / "model.plan").read_bytes() == plan
    assert not (model_dir / "1" / "model.onnx").exists()
    assert cfg.max_batch_size == 4  # the device profile's max_batch: the optimisation profile `engine` builds
    assert [list(t.dims) for t in cfg.input] == [[3, 32, 32]]
    add_engine(bundle, file="dla.plan", dla_core=0)  # DLA plans have static shapes: batch 1 unless told
    code, _, err = run_main(["export-triton", str(bundle), "--out", str(tmp_path / "repo"), "--name", "dla",
                             "--engine", "dla.plan"], capsys)
    assert code == 0, err
    assert check_against_docs(tmp_path / "repo" / "dla").max_batch_size == 1
    line = user_error(["export-triton", str(bundle), "--out", str(tmp_path / "r2"), "--engine", "dla.plan",
                       "--kind", "cpu"], capsys)
    assert "--kind cpu" in line and not (tmp_path / "r2").exists()


def user_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code, out, err = run_main(args, capsys)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    return lines[0]


def test_bad_bundles_are_one_line_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    missing = make_bundle(tmp_path / "missing")
    (missing / "model.onnx").unlink()
    line = user_error(["export-triton", str(missing), "--out", str(repo)], capsys)
    assert "model.onnx" in line and "missing" in line
    broken = make_bundle(tmp_path / "broken")
    (broken / "model.onnx").write_bytes(b"\x08\x07garbage, not protobuf" * 10)
    line = user_error(["export-triton", str(broken), "--out", str(repo)], capsys)
    assert str(broken / "model.onnx") in line and "not a valid ONNX model" in line
    good = make_bundle(tmp_path / "good")
    add_engine(good)
    line = user_error(["export-triton", str(good), "--out", str(repo), "--engine", "orin.plan"], capsys)
    assert "--engine orin.plan" in line and "jetson-orin-nano-8gb.fp16.plan" in line
    (good / "jetson-orin-nano-8gb.fp16.plan").unlink()
    line = user_error(["export-triton", str(good), "--out", str(repo), "--engine", "jetson-orin-nano-8gb"], capsys)
    assert "jetson-orin-nano-8gb.fp16.plan" in line and "missing" in line
    side = json.loads((good / "edgevision.json").read_text())
    side["input"]["name"] = "pixels"  # the sidecar no longer describes the graph
    (good / "edgevision.json").write_text(json.dumps(side))
    assert "input.name 'pixels'" in user_error(["export-triton", str(good), "--out", str(repo)], capsys)
    assert not repo.exists() or not any(repo.iterdir())


def test_out_rules_protect_other_content(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = make_bundle(tmp_path / "b")
    repo = tmp_path / "repo"
    other = repo / "other_model"
    other.mkdir(parents=True)
    (other / "config.pbtxt").write_text('name: "other_model"\n')
    foreign = repo / "tiny-detect"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    line = user_error(["export-triton", str(bundle), "--out", str(repo)], capsys)
    assert "--force" in line and (foreign / "notes.txt").read_text() == "mine"
    code, _, err = run_main(["export-triton", str(bundle), "--out", str(repo), "--force"], capsys)
    assert code == 0, err
    assert not (foreign / "notes.txt").exists() and (foreign / "config.pbtxt").is_file()
    code, _, err = run_main(["export-triton", str(bundle), "--out", str(repo), "--max-batch", "2"], capsys)
    assert code == 2  # a fixed-batch model: refused before anything is replaced
    code, _, err = run_main(["export-triton", str(bundle), "--out", str(repo)], capsys)  # a previous output
    assert code == 0, err
    assert (other / "config.pbtxt").read_text() == 'name: "other_model"\n'  # other models are never touched
    assert not [p for p in repo.iterdir() if ".tmp-" in p.name]
    (tmp_path / "file").write_text("x")
    assert "not a directory" in user_error(["export-triton", str(bundle), "--out", str(tmp_path / "file")], capsys)
