"""CLI: every command explains itself; user mistakes give one line on stderr, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import run_main

from edgevision.toolkit.cli import cli

COMMANDS = ["build", "export", "eval", "bench", "devices", "doctor", "engine", "export-triton", "export-deepstream"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert command in cli.commands
    code, out, _ = run_main([command, "--help"], capsys)
    assert code == 0
    assert f"Usage: edgevision {command}" in out
    doc = cli.commands[command].help or ""
    assert len(doc) > 30 and doc.split("\n")[0][:25] in out.replace("\n", " ")


def test_top_level_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0
    for c in COMMANDS:
        assert c in out


def user_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code, _, err = run_main(args, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    return lines[0]


def test_build_malformed_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("name: x\ntrain: [1,\n")
    out = tmp_path / "out"
    line = user_error(["build", str(recipe), "--out", str(out)], capsys)
    assert "bad.yaml" in line and "malformed YAML" in line
    assert not out.exists()  # nothing half-written


def test_build_unknown_device_and_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\ntargets: [jetson-tx9]\n")
    assert "jetson-tx9" in user_error(["build", str(recipe), "--out", str(tmp_path / "o")], capsys)
    recipe.write_text("name: x\nmodel: {name: resnet9000}\n")
    assert "resnet9000" in user_error(["build", str(recipe), "--out", str(tmp_path / "o")], capsys)


@pytest.mark.parametrize(("text", "key"), [
    ("name: x\nmodel: {size: q}\n", "model: model 'edgedet' has no size 'q'"),
    ("name: x\ncompress:\n  - distill: {student: edgedet-zz}\n", "compress[0].distill.student: model 'edgedet' has no"),
    ("name: x\ncompress:\n  - distill: {student: nonet-n}\n", "compress[0].distill.student: unknown model 'nonet'"),
])
def test_build_checks_models_before_any_stage(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                              key: str) -> None:
    """A bad model size used to be found after the data stage ran, leaving its cache behind."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    out = tmp_path / "o"
    line = user_error(["build", str(recipe), "--out", str(out)], capsys)
    assert "r.yaml" in line and key in line
    assert not out.exists()


def test_missing_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "nope.yaml" in user_error(["build", str(tmp_path / "nope.yaml")], capsys)
    assert "ckpt.pt" in user_error(["export", str(tmp_path / "ckpt.pt"), "--out", str(tmp_path / "b")], capsys)
    assert "bundle not found" in user_error(["bench", str(tmp_path / "nob")], capsys)


def test_corrupt_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"definitely not a checkpoint")
    line = user_error(["export", str(ckpt), "--out", str(tmp_path / "b")], capsys)
    assert "ckpt.pt" in line and not (tmp_path / "b").exists()


def test_usage_error_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["build"], capsys)
    assert code == 2 and "Missing argument" in err


def test_console_script_runs(tmp_path: Path) -> None:
    """The installed entry point, as a user runs it."""
    res = subprocess.run([sys.executable, "-m", "edgevision.toolkit", "devices"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "jetson-orin-nano-8gb" in res.stdout


def test_corrupt_onnx_in_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = tmp_path / "bundle"
    b.mkdir()
    (b / "edgevision.json").write_text(
        '{"name": "x", "task": "detect", "class_names": ["a"], "input": {"shape": [1, 3, 32, 32]},'
        ' "output": {"num_classes": 1}}')
    (b / "model.onnx").write_bytes(b"\x00garbage\xff" * 10)
    line = user_error(["bench", str(b)], capsys)
    assert "model.onnx" in line
    ann = tmp_path / "gt.json"
    ann.write_text('{"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}')
    assert "model.onnx" in user_error(["eval", str(b), "--data", str(ann)], capsys)


def test_export_for_another_input_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A model trained at 64 px exports for 128 px: the ONNX input, the sidecar and the anchor count follow."""
    import onnx

    from edgevision.runtime.bundle import load_bundle
    from edgevision.toolkit.checkpoint import CheckpointMeta, save_checkpoint
    from edgevision.toolkit.models.registry import build_model

    ckpt = tmp_path / "ckpt.pt"
    save_checkpoint(ckpt, build_model("edgedet", "p", 2).eval(),
                    CheckpointMeta(model="edgedet", size="p", task="detect", class_names=["a", "b"], input_size=64))
    code, _, err = run_main(["export", str(ckpt), "--out", str(tmp_path / "b128"), "--imgsz", "128"], capsys)
    assert code == 0, err
    bundle = load_bundle(tmp_path / "b128")
    assert bundle.sidecar.input.shape == [1, 3, 128, 128]
    graph = onnx.load(str(bundle.model_path)).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [1, 3, 128, 128]
    anchors = sum((128 // s) ** 2 for s in (8, 16, 32))
    assert graph.output[0].type.tensor_type.shape.dim[2].dim_value == anchors
    line = user_error(["export", str(ckpt), "--out", str(tmp_path / "bad"), "--imgsz", "100"], capsys)
    assert "--imgsz 100" in line and "32" in line and not (tmp_path / "bad").exists()
