"""`edgevision run` with several streams, `--sources FILE.yaml`, `--json` and honest FPS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from multistream_fixtures import make_dynamic_bundle, synthetic

from edgevision.toolkit.cli import main

pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dynamic_bundle(tmp_path_factory.mktemp("ms") / "dyn")


class Result:
    def __init__(self, exit_code: int, stdout: str, stderr: str) -> None:
        self.exit_code, self.stdout, self.stderr = exit_code, stdout, stderr
        self.output = stdout + stderr


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Any:
    """``edgevision run ARGS --no-status`` in this process, through the console entry point (exit codes, one-line
    errors), returning its exit code, stdout and stderr."""

    def go(*args: str) -> Result:
        capsys.readouterr()
        code = 0
        try:
            main(["run", *args, "--no-status"])
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return go


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in path.read_text().splitlines()]


def test_json_summary_on_stdout_with_wall_and_steady_fps_and_streams(run: Any, bundle: Path,
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "all.jsonl"
    res = run(str(bundle), "--source", synthetic(0, 7), "--source", synthetic(1, 5), "--json",
               "--sink", f"jsonl:{out}")
    assert res.exit_code == 0, res.output
    snap = json.loads(res.stdout)
    assert snap["frames"] == 12 and snap["exit"] == "ok" and snap["failed_to_open"] == []
    assert snap["fps_wall"] > 0 and snap["fps_steady"] > 0 and snap["startup_s"] >= 0
    # wall clock counts the start-up too: frames / (last - begin) against (frames - 1) / (last - first)
    assert snap["fps_wall"] <= snap["fps_steady"] * 12 / 11
    assert [(s["id"], s["frames"]) for s in snap["streams"]] == [(0, 7), (1, 5)]
    rows = _lines(out)
    assert sorted((r["stream_id"], r["frame"]) for r in rows) == [(0, i) for i in range(7)] + [(1, i) for i in range(5)]
    assert {r["source"] for r in rows if r["stream_id"] == 1} == {synthetic(1, 5)}


def test_text_summary_names_both_rates(run: Any, bundle: Path) -> None:
    res = run(str(bundle), "--source", synthetic(0, 4))
    assert res.exit_code == 0, res.output
    assert "fps steady (first to last result)" in res.stderr and "fps wall (from start, incl. model open)" in res.stderr
    assert res.stdout == ""


def test_sources_file_names_streams_and_routes_their_sinks(run: Any, bundle: Path, tmp_path: Path) -> None:
    gate, yard = tmp_path / "gate.jsonl", tmp_path / "yard.jsonl"
    spec = tmp_path / "cams.yaml"
    spec.write_text(f"""sources:
  - uri: "{synthetic(0, 6)}"
    name: gate
    sinks: ["jsonl:{gate}"]
  - uri: "{synthetic(1, 3)}"
    name: yard
    sinks: ["jsonl:{yard}"]
  - "{synthetic(2, 2)}"
""")
    res = run(str(bundle), "--sources", str(spec), "--json", "--replicas", "1")
    assert res.exit_code == 0, res.output
    assert [(r["stream_id"], r["source"]) for r in _lines(gate)] == [(0, "gate")] * 6
    assert [(r["stream_id"], r["source"]) for r in _lines(yard)] == [(1, "yard")] * 3
    snap = json.loads(res.stdout)
    assert [s["name"] for s in snap["streams"]] == ["gate", "yard", synthetic(2, 2)]


@pytest.mark.parametrize(("text", "match"), [
    ("sources:\n  - uri: a.mp4\n  - uri: b.mp4\n    sinkz: [display]\n", "cams.yaml: sources[1].sinkz: unknown key"),
    ("sources: []\n", "cams.yaml: sources: "),
    ("sources:\n  - name: x\n", "cams.yaml: sources[0].uri: required key is missing"),
    ("sources:\n  - {uri: a.mp4, name: cam}\n  - {uri: b.mp4, name: cam}\n", "'cam' appears twice"),
    ("sources: [a.mp4\n", "malformed YAML"),
    ("42\n", "expected a list of sources"),
])
def test_bad_sources_file_is_one_line_naming_the_key(run: Any, bundle: Path, tmp_path: Path, text: str,
                                                     match: str) -> None:
    spec = tmp_path / "cams.yaml"
    spec.write_text(text)
    res = run(str(bundle), "--sources", str(spec))
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert match in err and "\n" not in err and "Traceback" not in err


def test_source_and_sources_together_or_neither_are_refused(run: Any, bundle: Path, tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(f"- {synthetic(0, 2)}\n")
    both = run(str(bundle), "--sources", str(spec), "--source", synthetic(0, 2))
    neither = run(str(bundle))
    assert both.exit_code == neither.exit_code == 2
    assert "not both" in both.stderr and "missing --source" in neither.stderr


def test_a_source_that_cannot_open_is_reported_and_the_others_run(run: Any, bundle: Path,
                                                                  tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    res = run(str(bundle), "--source", synthetic(0, 5), "--source", str(tmp_path / "missing.mp4"),
               "--source", synthetic(1, 4), "--sink", f"jsonl:{out}")
    assert res.exit_code == 1, res.output
    assert sorted({r["stream_id"] for r in _lines(out)}) == [0, 2] and len(_lines(out)) == 9
    assert "error: 1 of 3 streams failed: stream 1" in res.stderr and "no such file" in res.stderr


def test_a_video_sink_for_all_streams_is_refused(run: Any, bundle: Path, tmp_path: Path) -> None:
    res = run(str(bundle), "--source", synthetic(0, 2), "--source", synthetic(1, 2),
               "--sink", f"video:{tmp_path / 'v.mp4'}")
    assert res.exit_code == 2 and "own video sink" in res.stderr
    assert not (tmp_path / "v.mp4").exists()


def test_image_folder_lines_carry_the_file_name(run: Any, bundle: Path, tmp_path: Path) -> None:
    import cv2
    import numpy as np

    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("x10.jpg", "x9.jpg"):
        cv2.imwrite(str(folder / name), np.full((48, 64, 3), 60, np.uint8))
    out = tmp_path / "r.jsonl"
    res = run(str(bundle), "--source", str(folder), "--sink", f"jsonl:{out}")
    assert res.exit_code == 0, res.output
    assert [r["file"] for r in _lines(out)] == ["x9.jpg", "x10.jpg"]
