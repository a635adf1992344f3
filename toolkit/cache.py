"""Content-addressed stage cache: a stage's output is keyed by a hash of its inputs + config.

``Cache.run(stage, key_material, fn)`` returns the cached artifact when one exists for the key; otherwise it
calls ``fn(workdir)`` in a temporary directory and moves the finished directory into place atomically, so
a killed build never leaves a half-written artifact and the rerun resumes at the first stage it lacks.
Changing one stage's config changes its key and, through the artifact hashes, the keys of all stages after
it; earlier stages are reused.

The cache does not trust its files. Each entry's ``_stage.json`` records the sha256 of every file the stage
wrote (and a checksum of the record itself), and a reuse re-hashes them (once per process per entry): a
truncated, edited or deleted file, or a missing or unreadable ``_stage.json``, makes the stage run again with
a one-line warning, so corruption is never served or copied into a later stage. Hashing is cheap next to
any stage it guards (hashlib's sha256 measured 325 MB/s on the loaded 2-core dev VM; a quickstart
checkpoint or ONNX file is a few MB).

Builds sharing one cache directory take a lock per stage key (``filelock``, an OS-level ``flock`` that the
kernel releases when a process dies): the second build waits for the first to finish that stage and then
reuses it. Leftover ``KEY.tmp-*`` directories are removed only while holding that key's lock, so a build never
deletes another live build's in-progress stage; temps of a killed build (its lock released) are cleared.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from edgevision.runtime.fsutil import atomic_dir, atomic_write_json, sha256_file, sha256_json

META = "_stage.json"
_TMP_MARK = ".tmp-"  # fsutil.atomic_dir's temporary-sibling marker
_LOCK_SUFFIX = ".lock"


@dataclass
class Artifact:
    """A finished stage output: its directory, the stage's result data and whether it came from cache."""

    stage: str
    key: str
    dir: Path
    data: dict[str, Any]
    cached: bool
    seconds: float

    def path(self, name: str) -> Path:
        return self.dir / name


def hash_files(directory: Path) -> dict[str, str]:
    """``{relative posix path: sha256}`` of every file under ``directory`` except the stage record."""
    return {p.relative_to(directory).as_posix(): sha256_file(p)
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != META}


def _record_hash(record: dict[str, Any]) -> str:
    return sha256_json({k: v for k, v in record.items() if k != "record_sha256"})


def check_entry(directory: Path) -> tuple[dict[str, Any] | None, str]:
    """``(record, "")`` for an intact cache entry, else ``(None, why)``: the record is missing or unreadable,
    lacks file hashes, or a file it lists is missing or has another hash."""
    meta_path = directory / META
    if not meta_path.is_file():
        return None, f"no {META}"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{META} unreadable ({type(exc).__name__})"
    files = meta.get("files") if isinstance(meta, dict) else None
    if not isinstance(files, dict) or not isinstance(meta.get("data"), dict):
        return None, f"{META} has no file hashes (older cache format)"
    if meta.get("record_sha256") != _record_hash(meta):
        return None, f"{META} does not match its own checksum"
    for rel, want in files.items():
        p = directory / rel
        if not p.is_file():
            return None, f"{rel} is missing"
        try:
            got = sha256_file(p)
        except OSError as exc:
            return None, f"{rel} unreadable ({exc.strerror})"
        if got != want:
            return None, f"{rel} does not match its recorded sha256"
    return meta, ""


@dataclass
class Cache:
    root: Path
    log: Callable[[str], None] = print
    events: list[dict[str, Any]] = field(default_factory=list)
    lock_timeout_s: float = -1  # wait for another build's stage as long as it takes (-1)
    _verified: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def key(self, stage: str, material: dict[str, Any]) -> str:
        return sha256_json({"stage": stage, **material})[:16]

    def lock(self, stage: str, key: str) -> FileLock:
        """The inter-process lock guarding one stage entry (``ROOT/.locks/STAGE/KEY.lock``)."""
        return _lock(self.root, stage, key, self.lock_timeout_s)

    def _reuse(self, stage: str, key: str, final: Path) -> dict[str, Any] | None:
        """The entry's record when it is intact; otherwise warn (if it exists at all) and return None."""
        if str(final) in self._verified:
            return self._verified[str(final)]
        if not final.exists():
            return None
        meta, why = check_entry(final)
        if meta is None:
            self.log(f"warning: [{stage}] cache entry {final} is not intact ({why}); recomputing the stage")
            return None
        self._verified[str(final)] = meta
        return meta

    def run(
        self,
        stage: str,
        material: dict[str, Any],
        fn: Callable[[Path], dict[str, Any]],
    ) -> Artifact:
        key = self.key(stage, material)
        final = self.root / stage / key
        with self.lock(stage, key):
            meta = self._reuse(stage, key, final)
            if meta is not None:
                self.log(f"[{stage}] cached ({key})")
                self.events.append({"stage": stage, "key": key, "cached": True, "seconds": 0.0})
                return Artifact(stage, key, final, meta["data"], True, 0.0)
            self._verified.pop(str(final), None)
            remove_stale_temps(self.root, stage, key)
            self.log(f"[{stage}] running ({key})")
            t0 = time.perf_counter()
            with atomic_dir(final) as tmp:
                data = fn(tmp)
                seconds = time.perf_counter() - t0
                record: dict[str, Any] = json.loads(json.dumps(
                    {"stage": stage, "key": key, "material": material, "seconds": seconds, "data": data,
                     "files": hash_files(tmp)}, default=str))
                record["record_sha256"] = _record_hash(record)
                atomic_write_json(tmp / META, record)
            self._verified[str(final)] = record
        self.log(f"[{stage}] done in {seconds:.1f}s")
        self.events.append({"stage": stage, "key": key, "cached": False, "seconds": round(seconds, 2)})
        return Artifact(stage, key, final, data, False, seconds)


def _lock(root: Path, stage: str, key: str, timeout: float) -> FileLock:
    d = root / ".locks" / stage  # apart from the entries: lock files stay behind (flock's files must)
    d.mkdir(parents=True, exist_ok=True)
    return FileLock(d / (key + _LOCK_SUFFIX), timeout=timeout)


def remove_stale_temps(root: Path, stage: str, held_key: str) -> int:
    """Delete leftovers of killed builds in ``root/stage``: ``held_key``'s temps (the caller holds its lock) and
    other keys' temps whose lock can be taken at once (no live build is writing them). Returns how many."""
    stage_dir = root / stage
    if not stage_dir.is_dir():
        return 0
    by_key: dict[str, list[Path]] = {}
    for p in stage_dir.iterdir():
        if _TMP_MARK in p.name:
            by_key.setdefault(p.name.split(_TMP_MARK, 1)[0], []).append(p)
    n = 0
    for key, temps in by_key.items():
        if key == held_key:
            n += _remove(temps)
            continue
        with contextlib.suppress(Timeout), _lock(root, stage, key, 0):
            n += _remove(temps)
    return n


def _remove(paths: list[Path]) -> int:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()
    return len(paths)
