"""Synthetic data written in YOLO format: round trip through edgevision's YOLO reader (same boxes and
keypoints as the COCO json, within pixel rounding), the recipe's `kind: yolo` for detect and pose, and
Ultralytics' own dataset checker and label loader (when ultralytics is installed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_main

from edgevision.toolkit.cache import Cache
from edgevision.toolkit.data.coco import COCO_KEYPOINT_NAMES, COCO_SKELETON, CocoDataset, load_coco
from edgevision.toolkit.data.yolo import load_yolo
from edgevision.toolkit.recipe import YoloData
from edgevision.toolkit.stages.data import prepare_data

SIZE = {"detect": 64, "pose": 96}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`edgevision dataset synthetic --format yolo` for both tasks (3 train + 2 val images each)."""
    out = {}
    for task in ("detect", "pose"):
        d = tmp_path_factory.mktemp(task) / "data"
        args = ["dataset", "synthetic", "--out", str(d), "--task", task, "--num-train", "3", "--num-val", "2",
                "--image-size", str(SIZE[task])]
        proc = subprocess.run([sys.executable, "-m", "edgevision.toolkit", *args], capture_output=True, text=True,
                              timeout=300)  # as a user runs it (module fixture: no capsys)
        assert proc.returncode == 0, proc.stderr
        assert "data.yaml" in proc.stdout
        out[task] = d
    return out


def same_annotations(yolo: CocoDataset, coco: CocoDataset) -> None:
    assert yolo.class_names == coco.class_names and len(yolo.records) == len(coco.records) > 0
    assert sum(len(r.labels) for r in coco.records) > 0
    for ry, rc in zip(yolo.records, coco.records, strict=True):
        assert ry.path.resolve() == rc.path.resolve() and (ry.width, ry.height) == (rc.width, rc.height)
        assert ry.labels.tolist() == rc.labels.tolist()
        np.testing.assert_allclose(ry.boxes, rc.boxes, atol=1e-3)  # 6 decimals of 64..96 px
        if rc.keypoints is not None:
            assert ry.keypoints is not None
            np.testing.assert_array_equal(ry.keypoints[..., 2], rc.keypoints[..., 2])
            np.testing.assert_allclose(ry.keypoints[..., :2], rc.keypoints[..., :2], atol=1e-3)


@pytest.mark.parametrize("task", ["detect", "pose"])
def test_yolo_files_read_back_as_the_coco_json(written: dict[str, Path], task: str) -> None:
    root = written[task]
    for split in ("train", "val"):
        yolo = load_yolo(root / "data.yaml", split)
        same_annotations(yolo, load_coco(root / f"{split}.json"))
    if task == "pose":
        assert yolo.keypoint_names == COCO_KEYPOINT_NAMES and yolo.skeleton == COCO_SKELETON


@pytest.mark.parametrize("task", ["detect", "pose"])
def test_recipe_kind_yolo_reads_the_written_data(written: dict[str, Path], task: str, tmp_path: Path) -> None:
    root = written[task]
    data = prepare_data(YoloData(kind="yolo", data_yaml=root / "data.yaml"), Cache(tmp_path, log=lambda m: None),
                        task)
    same_annotations(data.val, load_coco(root / "val.json"))
    assert data.train.num_keypoints == (17 if task == "pose" else 0)


def test_out_folder_that_is_not_ours_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    code, _, err = run_main(["dataset", "synthetic", "--out", str(tmp_path), "--num-train", "1", "--num-val", "1",
                             "--image-size", "64"], capsys)
    assert code == 2 and "--out" in err and "new or empty folder" in err
    assert (tmp_path / "mine.txt").read_text() == "keep me" and not (tmp_path / "data.yaml").exists()


ULTRALYTICS_CHECK = """
import json, sys
from ultralytics.cfg import get_cfg
from ultralytics.data.dataset import YOLODataset
from ultralytics.data.utils import check_det_dataset
out = {}
for task, yaml_path in json.loads(sys.argv[1]).items():
    d = check_det_dataset(yaml_path)
    ds = YOLODataset(img_path=d["val"], imgsz=64, augment=False, data=d, task=task, hyp=get_cfg())
    labels = ds.get_labels()
    out[task] = {"nc": d["nc"], "kpt_shape": d.get("kpt_shape"), "flip_idx": d.get("flip_idx"),
                 "labels": [{"file": l["im_file"], "shape": list(l["shape"]), "cls": l["cls"].ravel().tolist(),
                             "bboxes": l["bboxes"].tolist(),
                             "keypoints": l["keypoints"].tolist() if l.get("keypoints") is not None else None}
                            for l in labels]}
print(json.dumps(out))
"""


def test_ultralytics_accepts_the_written_data_yaml(written: dict[str, Path]) -> None:
    """Ultralytics' own checker and label loader (an independent reader) see the same objects."""
    pytest.importorskip("ultralytics", reason="ultralytics not installed (pip install 'edgevision[ultralytics]')")
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    arg = json.dumps({t: str(p / "data.yaml") for t, p in written.items()})
    proc = subprocess.run([sys.executable, "-c", ULTRALYTICS_CHECK, arg], capture_output=True, text=True,
                          timeout=600, env=env, cwd=written["detect"].parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    flip = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]  # Ultralytics' coco-pose.yaml
    assert got["pose"]["kpt_shape"] == [17, 3] and got["pose"]["flip_idx"] == flip and got["pose"]["nc"] == 1
    for task, root in written.items():
        coco = load_coco(root / "val.json")
        assert got[task]["nc"] == coco.num_classes and len(got[task]["labels"]) == len(coco.records)
        for lab, rec in zip(sorted(got[task]["labels"], key=lambda x: x["file"]), coco.records, strict=True):
            assert Path(lab["file"]).resolve() == rec.path.resolve() and lab["shape"] == [rec.height, rec.width]
            assert lab["cls"] == rec.labels.tolist()
            xywh = np.asarray(lab["bboxes"]).reshape(-1, 4) * np.array([rec.width, rec.height] * 2)
            xyxy = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
            np.testing.assert_allclose(xyxy, rec.boxes, atol=1e-3)
            if rec.keypoints is not None:
                kp = np.asarray(lab["keypoints"]).reshape(-1, 17, 3)
                np.testing.assert_allclose(kp[..., :2] * [rec.width, rec.height], rec.keypoints[..., :2], atol=1e-3)
                np.testing.assert_array_equal(kp[..., 2], rec.keypoints[..., 2])


@pytest.mark.parametrize("kind", ["synthetic", "coco", "yolo"])
def test_every_dataset_kind_lists_the_data_stage(written: dict[str, Path], kind: str, tmp_path: Path) -> None:
    """The report's stage table is the cache's events: COCO data, read in place, used to leave no data row."""
    from edgevision.toolkit.recipe import CocoData, CocoSplit, SyntheticData

    root = written["detect"]
    cfg = {"synthetic": SyntheticData(num_train=2, num_val=1, image_size=64),
           "coco": CocoData(kind="coco", train=CocoSplit(annotations=root / "train.json", images=root / "images"),
                            val=CocoSplit(annotations=root / "val.json", images=root / "images")),
           "yolo": YoloData(kind="yolo", data_yaml=root / "data.yaml")}[kind]
    cache = Cache(tmp_path, log=lambda m: None)
    prepare_data(cfg, cache, "detect")
    assert [e["stage"] for e in cache.events] == ["data"]
    assert len(cache.events[0]["key"]) == 16 and cache.events[0]["seconds"] >= 0
