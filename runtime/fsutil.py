"""Atomic file and directory writes, and content hashes.

Every artifact edgevision writes appears whole or not at all: content goes to a temporary sibling first
and is moved into place with ``os.replace`` (atomic on POSIX within one filesystem). A killed process
leaves only ``*.tmp-*`` siblings, which the next run removes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import UserError

_TMP_MARK = ".tmp-"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def new_file_mode() -> int:
    """The mode a plainly created file gets (0o666 less the umask); mkstemp's own 0o600 would surprise."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _ensure_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{path.parent}: cannot create directory ({exc.strerror})") from None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _ensure_parent(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.name + _TMP_MARK, dir=path.parent)
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror})") from None
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` as a whole when the block succeeds."""
    _ensure_parent(path)
    tmp = Path(tempfile.mkdtemp(prefix=path.name + _TMP_MARK, dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(path.name + _TMP_MARK + "old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_out_dir(out: Path, *, force: bool, marker: str, what: str) -> None:
    """``out`` may be replaced whole by a command's output: absent, an empty directory, or a previous output
    (it holds ``marker``). A directory holding anything else needs ``force``; a file, a symlink or anything not a
    directory is never replaced. ``what`` names the output kind in the error (e.g. "an edgevision bundle")."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"--out {out}: exists and is not a directory; not replacing it with {what}")
    if not out.exists() or force or (out / marker).is_file():
        return
    try:
        empty = next(out.iterdir(), None) is None
    except OSError as exc:
        raise UserError(f"--out {out}: cannot read the directory ({exc.strerror})") from None
    if not empty:
        raise UserError(f"--out {out}: is a non-empty directory that is not {what}; choose another "
                        "--out, or pass --force to replace it and everything in it")


def remove_stale_temps(directory: Path) -> int:
    """Delete leftovers of killed runs (``*.tmp-*``) directly inside ``directory``; returns how many."""
    if not directory.is_dir():
        return 0
    n = 0
    for p in directory.iterdir():
        if _TMP_MARK in p.name:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()
            n += 1
    return n
