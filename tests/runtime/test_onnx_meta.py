"""Bare ONNX models: a sidecar synthesised from Ultralytics-style metadata, tensor shapes and flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from stream_fixtures import make_onnx

from edgevision.runtime.errors import UserError
from edgevision.runtime.model_plan import load_model
from edgevision.runtime.onnx_meta import bundle_from_onnx, parse_names, read_onnx_info, sidecar_from_onnx
from edgevision.runtime.pipeline import Pipeline
from edgevision.runtime.predictor import Predictor

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

ULTRA = {"task": "detect", "names": "{0: 'person', 1: 'bicycle', 2: 'car'}", "imgsz": "[32, 32]",
         "stride": "32", "author": "Ultralytics", "batch": "1"}


def test_ultralytics_metadata_becomes_a_sidecar(tmp_path: Path) -> None:
    path = make_onnx(tmp_path / "yolo.onnx", ULTRA)
    info = read_onnx_info(path)
    assert info.metadata["names"] == ULTRA["names"] and [i.name for i in info.inputs] == ["images"]
    side = sidecar_from_onnx(info)
    assert side.task == "detect" and side.class_names == ["person", "bicycle", "car"]
    assert side.input.shape == [1, 3, 32, 32] and side.input.color == "rgb" and side.input.pad_value == 114
    assert side.output.layout == "yolo" and side.output.names == ["output0"] and side.output.num_classes == 3
    assert side.model_file == "yolo.onnx" and side.extra["origin"] == "bare-onnx"
    bundle = load_model(path)  # what `run`/`bench` do with a .onnx argument
    assert bundle.model_path == path
    det = Predictor(bundle).predict(np.zeros((48, 64, 3), np.uint8))
    assert det.class_ids.tolist() == [1]  # "bicycle", the tiny model's constant box


def test_pipeline_accepts_a_bare_onnx_file(tmp_path: Path) -> None:
    path = make_onnx(tmp_path / "yolo.onnx", ULTRA)
    dets = list(Pipeline(path, "synthetic://?width=64&height=48&frames=3&pool=1"))
    assert [len(d) for d in dets] == [1, 1, 1]


def test_without_metadata_shapes_decide_and_flags_override(tmp_path: Path) -> None:
    path = make_onnx(tmp_path / "plain.onnx")
    side = sidecar_from_onnx(read_onnx_info(path))
    assert side.class_names == ["class0", "class1", "class2"] and side.input.shape == [1, 3, 32, 32]
    side = bundle_from_onnx(path, names=["x", "y", "z"], color="bgr").sidecar
    assert side.class_names == ["x", "y", "z"] and side.input.color == "bgr"
    with pytest.raises(UserError, match=r"7 channels, expected 4 \+ 2 classes = 6"):
        bundle_from_onnx(path, names=["x", "y"])


def test_dynamic_input_needs_imgsz(tmp_path: Path) -> None:
    path = make_onnx(tmp_path / "dyn.onnx", size="size")
    with pytest.raises(UserError, match=r"dynamic .* pass --imgsz"):
        bundle_from_onnx(path)
    assert bundle_from_onnx(path, imgsz=32).sidecar.input.shape == [1, 3, 32, 32]
    assert bundle_from_onnx(path, imgsz=(24, 32)).sidecar.input.shape == [1, 3, 24, 32]


def test_pose_metadata_sets_keypoints(tmp_path: Path) -> None:
    meta = {"task": "pose", "names": "{0: 'person'}", "kpt_shape": "[17, 3]", "imgsz": "[32, 32]"}
    path = make_onnx(tmp_path / "pose.onnx", meta, out_shape=(1, 4 + 1 + 51, 16))
    side = bundle_from_onnx(path).sidecar
    assert side.task == "pose" and side.output.num_keypoints == 17 and side.keypoints is not None
    path2 = make_onnx(tmp_path / "pose2.onnx", {**meta, "kpt_shape": "[17, 2]"}, out_shape=(1, 39, 16))
    with pytest.raises(UserError, match=r"kpt_shape \[K, 3\]"):
        bundle_from_onnx(path2)


def test_bare_17_keypoint_pose_gets_coco_names_skeleton_and_sigmas(tmp_path: Path) -> None:
    """A YOLOv8/11-pose export names no keypoints: it gets COCO's, so OKS uses COCO's sigmas and the video
    draws limbs (not ``kpt0..kpt16`` with uniform sigmas and dots only)."""
    meta = {"task": "pose", "names": "{0: 'person'}", "kpt_shape": "[17, 3]", "imgsz": "[32, 32]"}
    kp = bundle_from_onnx(make_onnx(tmp_path / "pose.onnx", meta, out_shape=(1, 56, 16))).sidecar.keypoints
    assert kp is not None
    assert kp.names[:3] == ["nose", "left_eye", "right_eye"] and kp.names[-1] == "right_ankle"
    assert (15, 13) in kp.skeleton and (5, 6) in kp.skeleton and len(kp.skeleton) == 19  # 0-based COCO limbs
    assert kp.sigmas[0] == 0.026 and kp.sigmas[11] == 0.107 and len(kp.sigmas) == 17


def test_other_keypoint_counts_and_named_keypoints(tmp_path: Path) -> None:
    meta = {"task": "pose", "names": "{0: 'hand'}", "kpt_shape": "[5, 3]", "imgsz": "[32, 32]"}
    kp = bundle_from_onnx(make_onnx(tmp_path / "k5.onnx", meta, out_shape=(1, 20, 16))).sidecar.keypoints
    assert kp is not None and kp.names == [f"kpt{i}" for i in range(5)] and kp.skeleton == [] and kp.sigmas == []
    # Ultralytics >= 8.3 writes kpt_names per class: {0: [...]}; its names are used, no COCO limbs forced
    named = {**meta, "kpt_names": "{0: ['a', 'b', 'c', 'd', 'e']}"}
    kp = bundle_from_onnx(make_onnx(tmp_path / "k5n.onnx", named, out_shape=(1, 20, 16))).sidecar.keypoints
    assert kp is not None and kp.names == ["a", "b", "c", "d", "e"] and kp.sigmas == []


@pytest.mark.parametrize(
    ("meta", "out_shape", "match"),
    [
        ({"task": "segment"}, (1, 7, 16), "task 'segment' is not supported"),
        ({}, (1, 300, 6), r"end-to-end \[B, N, 6\]"),
        ({"names": "{0: 'a', 2: 'c'}"}, (1, 6, 16), "without gaps"),
        ({"names": "{0: __import__('os').system('true')}"}, (1, 7, 16), "not a Python/JSON literal"),
        ({"imgsz": "[32]"}, (1, 7, 16), "imgsz must be"),
    ],
)
def test_bad_metadata_is_a_one_line_user_error(tmp_path: Path, meta: dict[str, str],
                                              out_shape: tuple[int, ...], match: str) -> None:
    path = make_onnx(tmp_path / "m.onnx", meta, out_shape=out_shape)
    with pytest.raises(UserError, match=match) as info:
        bundle_from_onnx(path)
    assert "\n" not in str(info.value)


def test_parse_names_forms() -> None:
    assert parse_names("{1: 'b', 0: 'a'}") == ["a", "b"]
    assert parse_names("['a', 'b']") == ["a", "b"]
    assert parse_names('{"0": "a", "1": "b"}') == ["a", "b"]
    assert parse_names("cat, dog") == ["cat", "dog"]
    assert parse_names({0: "a"}) == ["a"] and parse_names(["x"]) == ["x"]
    with pytest.raises(UserError, match="class-name keys"):
        parse_names("{'a': 'b'}")


def test_not_an_onnx_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a valid ONNX model"):
        read_onnx_info(bad)
    with pytest.raises(UserError, match="not found"):
        read_onnx_info(tmp_path / "missing.onnx")
