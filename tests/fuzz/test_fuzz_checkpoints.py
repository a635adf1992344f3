"""Fuzzed checkpoints and ``export`` flags: malformed ``meta``, foreign or inconsistent weights, hostile --out.

``edgevision export CKPT --out OUT`` answers each with one line and exit 2, never creates OUT, and never
touches a file or a directory that is not a bundle (issue #19: it used to delete them)."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("hypothesis", reason="the fuzz suite needs hypothesis (pip install -e .[test])")
torch = pytest.importorskip("torch", reason="checkpoints are torch files")
from fuzz_harness import expect_user_error, fuzz_settings, run_cli  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

META = {"model": "edgedet", "size": "p", "task": "detect", "class_names": ["a", "b"], "input_size": 64,
        "num_keypoints": 0, "extra": {}}
_BLOB: dict[str, Any] = {}


def good_blob() -> dict[str, Any]:
    """A real checkpoint's contents (edgedet-p, random weights), built once."""
    if not _BLOB:
        from edgevision.toolkit.models.registry import build_model

        model = build_model("edgedet", "p", num_classes=2)
        _BLOB.update({"format": "edgevision-checkpoint", "meta": dict(META), "state_dict": model.state_dict()})
    return {"format": _BLOB["format"], "meta": copy.deepcopy(_BLOB["meta"]), "state_dict": dict(_BLOB["state_dict"])}


def export_error(tmp: Path, blob: Any, must_contain: str = "ckpt.pt", category: str = "checkpoint",
                 extra: tuple[str, ...] = ()) -> str:
    ckpt = tmp / "ckpt.pt"
    torch.save(blob, ckpt)
    return expect_user_error(category, ["export", str(ckpt), "--out", str(tmp / "out"), *extra], tmp,
                             must_contain=must_contain)


_JUNK = st.one_of(st.none(), st.integers(-5, 5), st.text(max_size=4), st.lists(st.integers(), max_size=2),
                  st.floats(allow_nan=True), st.booleans(),
                  st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))


@st.composite
def bad_meta(draw: st.DrawFn) -> tuple[Any, str]:
    meta = dict(META)
    kind = draw(st.sampled_from(["extra-key", "wrong-type", "missing", "range", "not-a-dict"]))
    if kind == "extra-key":
        key = draw(st.from_regex(r"\A[a-z_]{1,12}\Z").filter(lambda k: k not in META))
        meta[key] = draw(_JUNK)
        return meta, key
    if kind == "wrong-type":
        key = draw(st.sampled_from(sorted(META)))
        typ = type(META[key])
        value = draw(_JUNK.filter(lambda v: not isinstance(v, typ) or isinstance(v, bool)))
        meta[key] = value
        return meta, "meta"
    if kind == "missing":
        del meta[draw(st.sampled_from(["model", "size", "task", "class_names", "input_size"]))]
        return meta, "meta lacks"
    if kind == "range":
        key, value = draw(st.sampled_from([
            ("input_size", st.integers(max_value=31, min_value=-(10**9)) | st.integers(4097, 10**12)),
            ("num_keypoints", st.integers(max_value=-1, min_value=-(10**9)) | st.integers(1001, 10**9)),
            ("class_names", st.just([]) | st.lists(st.integers(), min_size=1, max_size=3)),
            ("task", st.sampled_from(["segment", "", "DETECT"])),
            ("model", st.sampled_from(["resnet", "", "edgedet-n"])),
            ("size", st.sampled_from(["q", "", "N", "nano"])),
        ]))
        meta[key] = draw(value)
        return meta, key if key not in ("model", "size") else "edgedet" if key == "size" else "unknown model"
    return draw(st.sampled_from([None, [], "meta", 5])), "meta"


@fuzz_settings(60)  # type: ignore[misc]
@given(bad_meta())
def test_malformed_meta(case: tuple[Any, str]) -> None:
    meta, key = case
    blob = good_blob()
    blob["meta"] = meta
    with tempfile.TemporaryDirectory() as tmp:
        export_error(Path(tmp), blob, key)


def _first_conv_halved(state: dict[str, Any]) -> dict[str, Any]:
    """Narrow the first conv's output channels (and its norm) only: each tensor loads, the chain does not."""
    state = dict(state)
    conv = next(k for k, v in state.items() if k.endswith(".weight") and v.ndim == 4)
    prefix = conv.rsplit(".", 2)[0]
    half = state[conv].shape[0] // 2
    for k in list(state):
        if k.startswith(prefix + ".") and state[k].ndim >= 1 and state[k].shape[0] == 2 * half:
            state[k] = state[k][:half].clone()
    return state


def _weights(kind: str) -> Any:
    blob = good_blob()
    state = blob["state_dict"]
    key = next(iter(state))
    if kind == "missing-state":
        del blob["state_dict"]
    elif kind == "state-not-dict":
        blob["state_dict"] = [1, 2]
    elif kind == "non-tensor":
        state[key] = "weights"
    elif kind == "wrong-shape":
        state[key] = torch.zeros(1)
    elif kind == "missing-key":
        del state[key]
    elif kind == "extra-key":
        state["bogus.weight"] = torch.zeros(3)
    elif kind == "pruned-inconsistent":
        blob["meta"]["extra"] = {"pruned": True}
        blob["state_dict"] = _first_conv_halved(state)
    elif kind == "pruned-lacks-param":
        blob["meta"]["extra"] = {"pruned": True}
        blob["state_dict"] = {k: v for k, v in state.items() if not k.endswith(".bias")}
    elif kind == "no-format":
        del blob["format"]
    elif kind == "foreign-format":
        blob["format"] = "ultralytics"
    elif kind == "a-list":
        return [blob]
    return blob


@pytest.mark.parametrize("kind", ["missing-state", "state-not-dict", "non-tensor", "wrong-shape", "missing-key",
                                  "extra-key", "pruned-inconsistent", "pruned-lacks-param", "no-format",
                                  "foreign-format", "a-list"])
def test_bad_weights(tmp_path: Path, kind: str) -> None:
    export_error(tmp_path, _weights(kind))


@pytest.mark.parametrize(("what", "content"), [("empty", b""), ("text", b"not a checkpoint\n"),
                                               ("zip junk", b"PK\x03\x04" + b"\x00" * 64), ("truncated", None)])
def test_unreadable_checkpoint_files(tmp_path: Path, what: str, content: bytes | None) -> None:
    ckpt = tmp_path / "ckpt.pt"
    if content is None:
        torch.save(good_blob(), ckpt)
        content = ckpt.read_bytes()[: ckpt.stat().st_size // 2]
    ckpt.write_bytes(content)
    expect_user_error("checkpoint-file", ["export", str(ckpt), "--out", str(tmp_path / "out")], tmp_path,
                      must_contain="ckpt.pt")


@pytest.mark.parametrize(("flags", "expected"), [
    (["--imgsz", "100000"], "--imgsz 100000"), (["--imgsz", "33"], "--imgsz 33"), (["--imgsz", "16"], "--imgsz 16"),
    (["--imgsz", "0"], "--imgsz"), (["--opset", "99"], "--opset"), (["--bogus"], "--bogus"),
])
def test_bad_export_flags(tmp_path: Path, flags: list[str], expected: str) -> None:
    export_error(tmp_path, good_blob(), expected, "export-flags", tuple(flags))


def test_out_never_replaces_what_is_not_a_bundle(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt.pt"
    torch.save(good_blob(), ckpt)
    (tmp_path / "notes.txt").write_text("my notes")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    (tmp_path / "link").symlink_to(tmp_path / "mine")
    for out, expected in (("notes.txt", "not a directory"), ("mine", "--force"), ("link", "not a directory")):
        expect_user_error("export-out", ["export", str(ckpt), "--out", str(tmp_path / out)], tmp_path,
                          must_contain=expected)
    assert (tmp_path / "notes.txt").read_text() == "my notes"
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "years of work"


def test_force_and_existing_bundles_are_replaced(tmp_path: Path) -> None:
    """The refusal is specific: --force replaces a non-bundle directory, and a bundle is replaced without it."""
    ckpt = tmp_path / "ckpt.pt"
    torch.save(good_blob(), ckpt)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "old.txt").write_text("x")
    code, _, err = run_cli(["export", str(ckpt), "--out", str(out), "--force", "--no-simplify"])
    assert code == 0, err
    assert not (out / "old.txt").exists() and (out / "edgevision.json").is_file()
    code, _, err = run_cli(["export", str(ckpt), "--out", str(out), "--no-simplify", "--imgsz", "96"])
    assert code == 0, err
    assert json.loads((out / "edgevision.json").read_text())["input"]["shape"] == [1, 3, 96, 96]
