"""Stage cache: hits on unchanged material, atomic outputs, resume after a failure mid-stage."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgevision.toolkit.cache import Cache


def test_hit_miss_and_key_change(tmp_path: Path) -> None:
    calls: list[int] = []
    cache = Cache(tmp_path, log=lambda m: None)

    def fn(d: Path) -> dict[str, int]:
        calls.append(1)
        (d / "out.txt").write_text("x")
        return {"n": len(calls)}

    a = cache.run("s", {"cfg": 1}, fn)
    b = cache.run("s", {"cfg": 1}, fn)
    c = cache.run("s", {"cfg": 2}, fn)
    assert (a.cached, b.cached, c.cached) == (False, True, False)
    assert b.data == a.data == {"n": 1} and c.data == {"n": 2}
    assert b.path("out.txt").read_text() == "x"
    assert len(calls) == 2


def test_failed_stage_leaves_nothing_and_rerun_resumes(tmp_path: Path) -> None:
    cache = Cache(tmp_path, log=lambda m: None)

    def boom(d: Path) -> dict[str, int]:
        (d / "half.bin").write_bytes(b"partial")
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-stage

    with pytest.raises(KeyboardInterrupt):
        cache.run("s", {"k": 1}, boom)
    stage_dir = tmp_path / "s"
    assert [p for p in stage_dir.iterdir() if ".tmp-" not in p.name] == []
    art = cache.run("s", {"k": 1}, lambda d: {"ok": 1})
    assert art.cached is False and art.data == {"ok": 1}
    assert all(".tmp-" not in p.name for p in stage_dir.iterdir())
