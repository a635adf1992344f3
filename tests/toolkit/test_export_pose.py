"""`edgevision export` of pose checkpoints: the sidecar gets the keypoint block the build wrote (training
stores it in the checkpoint), COCO's for older 17-keypoint checkpoints, and a clear error otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import run_main

from edgevision.runtime.bundle import load_bundle
from edgevision.toolkit.build import build
from edgevision.toolkit.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from edgevision.toolkit.models.registry import build_model

POSE = """\
name: tinypose
task: pose
model: {name: edgepose, size: p}
input_size: 64
dataset: {kind: synthetic, seed: 3, num_train: 16, num_val: 4, image_size: 64, max_objects: 2}
train: {epochs: 1, batch: 8, num_threads: 2}
bench: {warmup: 1, iters: 2, threads: 1}
targets: [x86-cpu]
"""


def test_built_pose_checkpoint_exports_with_the_builds_keypoints(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "pose.yaml"
    recipe.write_text(POSE)
    build(recipe, tmp_path / "out", cache_dir=tmp_path / "cache", log=lambda m: None)
    ckpt = next((tmp_path / "cache" / "train").glob("*/checkpoint.pt"))
    _, meta = load_checkpoint(ckpt)
    assert meta.extra["keypoints"]["names"][0] == "nose"
    code, _, err = run_main(["export", str(ckpt), "--out", str(tmp_path / "b"), "--imgsz", "128"], capsys)
    assert code == 0, err
    exported, built = load_bundle(tmp_path / "b").sidecar, load_bundle(tmp_path / "out" / "fp32").sidecar
    assert exported.keypoints == built.keypoints and exported.input.shape == [1, 3, 128, 128]
    assert exported.output.num_keypoints == 17


def _pose_checkpoint(path: Path, k: int) -> Path:
    save_checkpoint(path, build_model("edgepose", "p", 1, num_keypoints=k).eval(),
                    CheckpointMeta(model="edgepose", size="p", task="pose", class_names=["person"], input_size=64,
                                   num_keypoints=k))
    return path


def test_older_17_keypoint_checkpoint_gets_coco_keypoints(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = _pose_checkpoint(tmp_path / "old.pt", 17)
    code, _, err = run_main(["export", str(ckpt), "--out", str(tmp_path / "b")], capsys)
    assert code == 0, err
    kp = load_bundle(tmp_path / "b").sidecar.keypoints
    assert kp is not None and len(kp.names) == 17 and len(kp.sigmas) == 17 and (15, 13) in kp.skeleton


def test_unnamed_keypoints_are_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = _pose_checkpoint(tmp_path / "k3.pt", 3)
    code, _, err = run_main(["export", str(ckpt), "--out", str(tmp_path / "b")], capsys)
    assert code == 2 and "k3.pt" in err and "3 keypoints" in err and not (tmp_path / "b").exists()
