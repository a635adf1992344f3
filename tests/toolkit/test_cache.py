"""Stage cache: hits on unchanged material, atomic outputs, resume after a failure mid-stage."""

from __future__ import annotations

import random
import subprocess
import sys
import time
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


# -- self-verification: corrupt any one cached file, the rerun detects it and ends with correct outputs ------

def _chain(root: Path, out: Path, logs: list[str]) -> None:
    """Two stages as a build has them: ``a`` writes files, ``b`` is keyed by a's recorded hash and copies a's
    file forward; the result is copied out of the cache like a build's bundle."""
    import hashlib
    import json
    import shutil

    cache = Cache(root, log=logs.append)

    def stage_a(d: Path) -> dict[str, str]:
        payload = bytes(range(256)) * 64
        (d / "model.bin").write_bytes(payload)
        (d / "sub").mkdir()
        (d / "sub" / "labels.json").write_text(json.dumps({"names": ["a", "b"]}))
        return {"sha": hashlib.sha256(payload).hexdigest()}

    a = cache.run("a", {"cfg": 1}, stage_a)

    def stage_b(d: Path) -> dict[str, int]:
        shutil.copy(a.path("model.bin"), d / "model.bin")
        (d / "names.txt").write_text(",".join(json.loads(a.path("sub/labels.json").read_text())["names"]))
        return {"size": a.path("model.bin").stat().st_size}

    b = cache.run("b", {"a": a.data["sha"]}, stage_b)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(b.dir, out, ignore=shutil.ignore_patterns("_stage.json"))


def _snapshot(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _corrupt(path: Path, how: str, rng: random.Random) -> None:
    data = path.read_bytes()
    if how == "delete":
        path.unlink()
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "flip":
        i = rng.randrange(len(data))
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:])
    else:
        path.write_bytes(b"\x00garbage" + data)


@pytest.mark.parametrize("seed", range(5))
def test_corrupting_any_cached_file_recomputes_and_ends_correct(tmp_path: Path, seed: int) -> None:
    from edgevision.toolkit.cache import check_entry

    rng = random.Random(seed)
    root, out = tmp_path / "cache", tmp_path / "out"
    _chain(root, out, [])
    reference = _snapshot(out)
    files = [p for p in root.rglob("*") if p.is_file() and ".locks" not in p.parts]
    victim, how = rng.choice(files), rng.choice(["delete", "truncate", "empty", "flip", "prepend"])
    _corrupt(victim, how, rng)
    logs: list[str] = []
    _chain(root, out, logs)  # a fresh Cache object, as a rerun of the build has
    assert _snapshot(out) == reference, f"{how} {victim.relative_to(root)}"
    warnings = [m for m in logs if m.startswith("warning:")]
    assert len(warnings) == 1 and "recomputing" in warnings[0], (how, victim, logs)
    assert victim.parent.relative_to(root).parts[0] in warnings[0]
    for entry in (e for stage in ("a", "b") for e in (root / stage).iterdir()):
        assert check_entry(entry)[0] is not None, entry


def test_unchanged_cache_is_reused_without_warnings(tmp_path: Path) -> None:
    root, out = tmp_path / "cache", tmp_path / "out"
    _chain(root, out, [])
    logs: list[str] = []
    _chain(root, out, logs)
    assert logs == [m for m in logs if "cached" in m] and len(logs) == 2


def test_entry_without_file_hashes_is_recomputed(tmp_path: Path) -> None:
    cache = Cache(tmp_path, log=lambda m: None)
    art = cache.run("s", {"k": 1}, lambda d: {"v": 1})
    (art.dir / "_stage.json").write_text('{"stage": "s", "data": {"v": 1}}')  # as an older cache wrote it
    logs: list[str] = []
    again = Cache(tmp_path, log=logs.append).run("s", {"k": 1}, lambda d: {"v": 2})
    assert again.cached is False and again.data == {"v": 2}
    assert any("no file hashes" in m for m in logs)


# -- builds sharing one cache: a lock per stage key; stale temps only of dead builds are removed -------------

_WORKER = """
import sys, time
from pathlib import Path
from edgevision.toolkit.cache import Cache

root, key, calls = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])

def slow(d):
    with open(calls, "a") as f:
        f.write(f"{key}\\n")
    (d / "out.txt").write_text(str(key))
    time.sleep(1.5)
    return {"key": key}

art = Cache(root, log=lambda m: None).run("s", {"k": key}, slow)
assert (art.path("out.txt").read_text(), art.data["key"]) == (str(key), key)
print("ok", art.cached)
"""


def test_builds_sharing_a_cache_wait_for_each_other(tmp_path: Path) -> None:
    root, calls = tmp_path / "cache", tmp_path / "calls.txt"
    stale = root / "s" / "deadbeef.tmp-x1"  # left by a build killed long ago: nobody holds its lock
    stale.mkdir(parents=True)
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)

    def start(key: int) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, str(script), str(root), str(key), str(calls)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    first = start(1)
    deadline = time.monotonic() + 30
    while not calls.exists() and time.monotonic() < deadline:  # the first build is inside its stage
        time.sleep(0.05)
    others = [start(2), start(1)]  # another key (cleans temps) and the same key (must wait, then reuse)
    results = [(*p.communicate(timeout=60), p.returncode) for p in (first, *others)]
    for _out, err, rc in results:
        assert rc == 0, err
    assert [r[0].split() for r in results] == [["ok", "False"], ["ok", "False"], ["ok", "True"]]
    assert sorted(calls.read_text().split()) == ["1", "2"]  # key 1 computed once
    assert not stale.exists()
    assert [p.name for p in (root / "s").iterdir() if ".tmp-" in p.name] == []
