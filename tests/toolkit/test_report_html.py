"""report.html: one self-contained file (nothing fetched over the network), the Pareto front computed right,
per-class AP rows equal to the manifest's, PR curves, gates when present, and trends from a regress history."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run_main

from edgevision.toolkit.manifest import SCHEMA_VERSION, check_manifest
from edgevision.toolkit.regress_history import read_history
from edgevision.toolkit.report_html import render_html
from edgevision.toolkit.report_plots import pareto_front
from edgevision.toolkit.stages.eval_curves import write_curves

PNG = b"\x89PNG\r\n\x1a\n"


def test_pareto_front_on_hand_computed_points() -> None:
    # (latency ms, accuracy): lower latency and higher accuracy are better
    pts = [(10.0, 0.60), (5.0, 0.55), (8.0, 0.50), (12.0, 0.60), (5.0, 0.40), (20.0, 0.70), (5.0, 0.55)]
    # 2 (8 ms, .50) is beaten by 1 (5 ms, .55); 3 by 0 (slower, same accuracy); 4 by 1 (same speed, worse);
    # 1 and 6 are equal (neither dominates the other); 0 and 5 buy accuracy with latency
    assert pareto_front(pts) == [1, 6, 0, 5]
    assert pareto_front([(1.0, 0.1)]) == [0]
    assert pareto_front([]) == []


def _variant(bundle: str, lat: float, acc: float, per_class: dict[str, dict[str, float | None]] | None = None,
             curves: str | None = None) -> dict[str, Any]:
    v: dict[str, Any] = {"bundle": bundle, "precision": "fp32", "metrics": {"map50_95": acc, "map50": acc + 0.2},
                         "latency_ms": {"onnxruntime-cpu": {"median": lat, "p90": lat * 1.1, "p99": lat * 1.2,
                                                            "timing": {"threads": 2, "warmup": 10, "iters": 100,
                                                                       "order": "rotating", "spin": False}},
                                        "onnxruntime-cpu-original": {"median": 10.0, "p90": 11.0, "p99": 12.0}},
                         "macs": int(lat * 1e6), "params": int(acc * 1e5), "size_bytes": int(lat * 1000)}
    if per_class is not None:
        v["ap_per_class"] = per_class
    if curves is not None:
        v["eval_curves"] = curves
    return v


PER_CLASS = {"fp32": {"cat": {"ap50": 0.9, "ap50_95": 0.61}, "dog": {"ap50": 0.7, "ap50_95": 0.42},
                      "emu": {"ap50": None, "ap50_95": None}},
             "int8": {"cat": {"ap50": 0.85, "ap50_95": 0.58}, "dog": {"ap50": 0.66, "ap50_95": 0.40},
                      "emu": {"ap50": None, "ap50_95": None}}}


@pytest.fixture
def build_dir(tmp_path: Path) -> Path:
    recall = [i / 100 for i in range(101)]
    write_curves(tmp_path / "eval" / "fp32", {"bbox": {"recall": recall, "classes": [
        {"name": "cat", "ap50": 0.9, "ap50_95": 0.61, "precision50": [1.0 - r / 2 for r in recall],
         "precision50_95": [0.8 - r / 2 for r in recall]},
        {"name": "emu", "ap50": None, "ap50_95": None, "precision50": [], "precision50_95": []}]}})
    m = {"schema_version": SCHEMA_VERSION, "name": "hand", "task": "detect", "created": "2026-12-03T00:00:00+00:00",
         "recipe": {}, "recipe_hash": "abc", "dataset": {"hash": "d", "train_images": 4, "val_images": 2,
                                                         "classes": ["cat", "dog", "emu"]},
         "variants": {"fp32": _variant("fp32", 10.0, 0.60, PER_CLASS["fp32"], "eval/fp32/pr_curves.json"),
                      "int8": _variant("int8", 5.0, 0.55, PER_CLASS["int8"]),
                      "pruned": _variant("pruned", 8.0, 0.50)},
         "stages": [{"stage": "data", "key": "k1", "cached": False, "seconds": 0.5}]}
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    return tmp_path


def _load(build_dir: Path) -> Any:
    return check_manifest(json.loads((build_dir / "manifest.json").read_text()), "manifest.json")


def _rows(page: str, table_id: str) -> list[list[str]]:
    table = re.search(rf'<table id="{table_id}">(.*?)</table>', page, re.S)
    assert table is not None, f"no table {table_id}"
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S)[1:]  # without the header
    return [[html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", r, re.S)] for r in rows]


def test_the_page_is_self_contained_with_a_correct_pareto_front(build_dir: Path) -> None:
    page = render_html(_load(build_dir), build_dir)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)  # nothing fetched
    assert "<script" not in page and "<link" not in page
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert all(base64.b64decode(s.split(",", 1)[1])[:8] == PNG for s in srcs)
    assert '<figure id="pareto">' in page and '<figure id="cost">' in page
    # pruned (8 ms, .50) is dominated by int8 (5 ms, .55); the original's reference timing is no variant
    assert "<li>onnxruntime-cpu: int8, fp32</li>" in page and "<li>onnxruntime-cpu-original" not in page
    assert '<figure id="pr-fp32-bbox">' in page and "pr-int8" not in page  # int8 kept no curves
    assert "spin: <code>False</code>" in page  # how latency was timed
    assert "<h2>Gates</h2>" not in page


def test_per_class_ap_rows_equal_the_manifest(build_dir: Path) -> None:
    rows = _rows(render_html(_load(build_dir), build_dir), "per-class-ap")
    want = [[c, f"{PER_CLASS['fp32'][c]['ap50_95']:.3f}" if PER_CLASS["fp32"][c]["ap50_95"] is not None else "-",
             f"{PER_CLASS['int8'][c]['ap50_95']:.3f}" if PER_CLASS["int8"][c]["ap50_95"] is not None else "-",
             f"{PER_CLASS['fp32'][c]['ap50']:.3f}" if PER_CLASS["fp32"][c]["ap50"] is not None else "-",
             f"{PER_CLASS['int8'][c]['ap50']:.3f}" if PER_CLASS["int8"][c]["ap50"] is not None else "-"]
            for c in ("cat", "dog", "emu")]
    assert rows == want


def test_gates_render_when_the_manifest_has_them(build_dir: Path) -> None:
    m = json.loads((build_dir / "manifest.json").read_text())
    m["gates"] = {"passed": False, "checks": [
        {"name": "fp32.accuracy.map50_95", "kind": "accuracy", "status": "pass", "message": "0.60 >= 0.50"},
        {"name": "int8.latency", "kind": "latency", "status": "fail", "message": "p50 5 ms > budget <4>"}]}
    page = render_html(check_manifest(m, "m"), build_dir)
    assert "<h2>Gates</h2>" in page and "FAILED" in page
    rows = _rows(page, "gates")
    assert [r[0] for r in rows] == ["fp32.accuracy.map50_95", "int8.latency"]
    assert "budget &lt;4&gt;" in page  # messages are escaped


def test_regress_history_and_report_draw_trends(build_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    hist = tmp_path / "runs" / "history.jsonl"
    for _ in range(3):
        code, _, err = run_main(["regress", str(build_dir), "--baseline", str(build_dir), "--no-latency",
                                 "--history", str(hist)], capsys)
        assert code == 0, err
    entries = read_history(hist)
    assert len(entries) == 3 and len(hist.read_text().splitlines()) == 3
    assert entries[0]["variants"]["int8"]["metrics"]["map50_95"] == 0.55 and entries[0]["passed"] is True
    code, out, err = run_main(["report", str(build_dir), "--history", str(hist)], capsys)
    assert code == 0, err
    page = (build_dir / "report.html").read_text()
    assert str(build_dir / "report.html") in out
    assert '<figure id="trends">' in page and len(_rows(page, "runs")) == 3


def test_a_bad_history_is_one_line_exit_2(build_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "h.jsonl"
    bad.write_text('{"version": 1, "variants": {}}\n{"hello": 1}\n')
    code, _, err = run_main(["report", str(build_dir), "--history", str(bad)], capsys)
    assert code == 2 and err.count("\n") == 1 and f"{bad}:2" in err
    assert not (build_dir / "report.html").exists()
