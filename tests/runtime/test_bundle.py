"""Bundle reading: a good sidecar loads; broken bundles give one-line errors naming file and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgevision.runtime.bundle import SIDECAR_NAME, load_bundle
from edgevision.runtime.errors import UserError

GOOD = {
    "name": "t", "task": "detect", "class_names": ["a", "b"],
    "input": {"shape": [1, 3, 64, 64]}, "output": {"num_classes": 2},
}


def make(tmp_path: Path, side: object, model: bool = True) -> Path:
    d = tmp_path / "b"
    d.mkdir()
    (d / SIDECAR_NAME).write_text(side if isinstance(side, str) else json.dumps(side))
    if model:
        (d / "model.onnx").write_bytes(b"\x08\x07")
    return d


def test_good_bundle(tmp_path: Path) -> None:
    b = load_bundle(make(tmp_path, GOOD))
    assert b.sidecar.input.height == 64 and b.sidecar.output.layout == "yolo"
    assert b.model_path.name == "model.onnx"
    assert load_bundle(b.root / SIDECAR_NAME).root == b.root


@pytest.mark.parametrize(
    ("side", "expected"),
    [
        ({**GOOD, "colour": 1}, "colour: unknown key"),
        ({**GOOD, "task": "segment"}, "task:"),
        ({**GOOD, "input": {"shape": [1, 3, 64, 64], "color": "yuv"}}, "input.color:"),
        ({**GOOD, "schema_version": 99}, "schema_version 99 is newer"),
        ({**GOOD, "schema_version": "abc"}, "schema_version: Input should be a valid integer"),
        ({**GOOD, "input": {"shape": [1, 3, "h", "w"]}}, "input.shape: .*height must be a fixed number"),
        ({**GOOD, "input": {"shape": [1, 3]}}, r"input.shape: .*\[batch, 3, height, width\]"),
        ({**GOOD, "input": {"shape": [1, 3, 100000, 100000]}},
         r"input.shape: .*height 100000 out of range \[1, 8192\]"),
        ({**GOOD, "input": {"shape": [1, 4, 64, 64]}}, "input.shape: .*3 channels"),
        ({**GOOD, "model_file": "../../etc/passwd"}, r"model_file: .*inside the bundle directory \(no '\.\.'\)"),
        ({**GOOD, "model_file": "/etc/passwd"}, "model_file: .*absolute path"),
        ({**GOOD, "output": {"num_classes": 5}}, r"output.num_classes 5 != 2 class_names"),
        ({**GOOD, "output": {"num_classes": 2, "num_keypoints": 17}}, "keypoints need task 'pose'"),
        ({**GOOD, "postprocess": {"conf": float("nan")}}, "postprocess.conf: Input should be a finite number"),
        ("{not json", "invalid JSON"),
    ],
)
def test_bad_sidecar(tmp_path: Path, side: object, expected: str) -> None:
    with pytest.raises(UserError, match=expected) as err:
        load_bundle(make(tmp_path, side))
    assert SIDECAR_NAME in str(err.value)


def test_missing_pieces(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="bundle not found"):
        load_bundle(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"no edgevision\.json sidecar"):
        load_bundle(tmp_path / "empty")
    with pytest.raises(UserError, match=r"model_file .model\.onnx. is missing"):
        load_bundle(make(tmp_path, GOOD, model=False))
