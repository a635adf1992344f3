"""Fuzzed source URIs and ONNX metadata: out-of-range or non-finite options, unknown schemes, hostile metadata.

URIs go through ``edgevision bench BUNDLE --source URI`` (the source is opened right after the model); bare
ONNX files with fuzzed ``metadata_props`` through ``edgevision bench MODEL.onnx``."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("hypothesis", reason="the fuzz suite needs hypothesis (pip install -e .[test])")
pytest.importorskip("onnx", reason="the fuzz models are built with onnx.helper")
from fuzz_harness import expect_user_error, fuzz_settings, make_bundle, make_onnx
from hypothesis import given
from hypothesis import strategies as st

BENCH = ["--iters", "1", "--warmup", "0"]
_NONFINITE = st.sampled_from(["nan", "inf", "-inf", "NaN", "1e999"])

# (option, lowest, highest) of synthetic:// (runtime/synthetic.py)
SYNTH = [("width", 32, 8192), ("height", 32, 8192), ("objects", 1, 100), ("pool", 1, 4096), ("frames", 0, 10**12),
         ("seed", 0, 2**32 - 1)]


@st.composite
def bad_synthetic(draw: st.DrawFn) -> tuple[str, str]:
    """(URI, the option its error names)."""
    kind = draw(st.sampled_from(["range", "fps", "nonnumber", "unknown", "memory"]))
    if kind == "range":
        key, lo, hi = draw(st.sampled_from(SYNTH))
        v = draw(st.integers(max_value=lo - 1, min_value=-(10**15)) | st.integers(min_value=hi + 1, max_value=10**20)
                 | _NONFINITE | st.floats(lo, min(hi, 10**6)).filter(lambda f: f != int(f)).map(repr))
        return f"synthetic://?{key}={v}", key
    if kind == "fps":
        v = draw(_NONFINITE | st.floats(max_value=0, min_value=-1e9).map(repr) | st.integers(1001, 10**12).map(str))
        return f"synthetic://?fps={v}", "fps"
    if kind == "nonnumber":
        key = draw(st.sampled_from([k for k, _, _ in SYNTH] + ["fps"]))
        v = draw(st.sampled_from(["", "abc", "1,2", "0x10", "--1"]))
        return f"synthetic://?{key}={v}", key
    if kind == "unknown":
        key = draw(st.from_regex(r"\A[a-z]{1,10}\Z").filter(lambda k: k not in {k for k, _, _ in SYNTH} | {"fps"}))
        return f"synthetic://?{key}=1", key
    side = draw(st.integers(4000, 8192))
    return f"synthetic://?width={side}&height={side}&pool={draw(st.integers(64, 4096))}", "pool"


@fuzz_settings(80)  # type: ignore[misc]
@given(bad_synthetic())
def test_synthetic_uris_are_bounded(case: tuple[str, str]) -> None:
    uri, key = case
    with tempfile.TemporaryDirectory() as tmp:
        b = make_bundle(Path(tmp) / "b")
        expect_user_error("uri-synthetic", ["bench", str(b), "--source", uri, "--frames", "2", "--rounds", "1"],
                          Path(tmp), must_contain=key)


@pytest.mark.parametrize(("uri", "extra", "expected"), [
    ("gopher://x/y", [], "unknown source scheme"),
    ("ftp://host/v.mp4", [], "unknown source scheme"),
    ("/definitely/not/here.mp4", [], "here.mp4"),
    ("file:///definitely/not/here.mp4", [], "here.mp4"),
    ("synthetic://?width=100000&height=100000", [], "width"),
    ("synthetic://?fps=nan", [], "fps"),
    ("synthetic://?fps=inf", [], "fps"),
])
def test_scripted_uris(tmp_path: Path, uri: str, extra: list[str], expected: str) -> None:
    b = make_bundle(tmp_path / "b")
    expect_user_error("uri-scripted", ["bench", str(b), "--source", uri, "--frames", "2", *extra], tmp_path,
                      must_contain=expected)


@pytest.mark.parametrize(("flags", "expected"), [
    (["--width", "100000"], "width 100000 out of range"),
    (["--height", "200000"], "height 200000 out of range"),
])
def test_run_resize_flags_are_bounded(tmp_path: Path, flags: list[str], expected: str) -> None:
    b = make_bundle(tmp_path / "b")
    expect_user_error("uri-flags", ["run", str(b), "--source", "synthetic://?frames=1", "--no-status", *flags],
                      tmp_path, must_contain=expected)


def _nested(depth: int, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + closer * depth


@st.composite
def bad_metadata(draw: st.DrawFn) -> tuple[dict[str, str], str]:
    """(metadata_props, the key its error names) for the tiny 3-class detector."""
    kind = draw(st.sampled_from(["deep", "names", "imgsz", "kpt", "task", "long"]))
    if kind == "deep":
        depth = draw(st.integers(100, 200_000))
        key = draw(st.sampled_from(["names", "imgsz"]))
        return {key: _nested(depth, *draw(st.sampled_from([("[", "]"), ("(", ")"), ("{", "}")])))}, key
    if kind == "names":
        v = draw(st.one_of(
            st.sampled_from(["{0: 'a', 2: 'b', 3: 'c'}", "{'x': 'a'}", "{1e999: 'a'}", "[1, 2, 3]", "{0: ", "[", "()",
                             "{0: 'a', 1: 'b', 2: 'c', 3: 'd'}", "['a']", "{-1: 'a', 0: 'b', 1: 'c'}"]),
            st.lists(st.text(min_size=1, max_size=5), min_size=4, max_size=9).map(repr),
            st.integers(1, 10**6).map(lambda n: "{" + ", ".join(f"{i}: 'c'" for i in range(0, min(n, 50), 2)) + "}"),
        ))
        return {"names": v}, "names"
    if kind == "imgsz":
        v = draw(st.one_of(
            st.integers(8193, 10**12).map(str), st.integers(max_value=0, min_value=-(10**9)).map(str),
            st.tuples(st.integers(8193, 10**9), st.integers(1, 64)).map(lambda t: str(list(t))),
            st.sampled_from(["[1, 2, 3]", "'big'", "[32.5, 32]", "[True, 32]", "None", "{}"]),
        ))
        return {"imgsz": v}, "imgsz"
    if kind == "kpt":
        v = draw(st.one_of(st.sampled_from(["[17]", "[17, 2]", "['a', 3]", "[0, 3]", "[-1, 3]", "None", "x"]),
                           st.integers(1001, 10**9).map(lambda k: f"[{k}, 3]")))
        return {"task": "pose", "kpt_shape": v}, "kpt_shape"
    if kind == "task":
        return {"task": draw(st.sampled_from(["segment", "classify", "obb", "", "DETECT"]))}, "task"
    return {"names": "[" + "'a', " * 300_000 + "]"}, "names"


@fuzz_settings(60)  # type: ignore[misc]
@given(bad_metadata())
def test_hostile_onnx_metadata(case: tuple[dict[str, str], str]) -> None:
    meta, key = case
    with tempfile.TemporaryDirectory() as tmp:
        model = make_onnx(Path(tmp) / "m.onnx", metadata=meta)
        expect_user_error("onnx-metadata", ["bench", str(model), *BENCH], Path(tmp), must_contain=key)


def test_metadata_nested_200000_deep_is_one_line(tmp_path: Path) -> None:
    """The reported case: a RecursionError before, one line naming the key now."""
    model = make_onnx(tmp_path / "m.onnx", metadata={"names": _nested(200_000)})
    line = expect_user_error("onnx-metadata", ["bench", str(model), *BENCH], tmp_path, must_contain="names")
    assert "RecursionError" not in line and not math.isnan(len(line))
