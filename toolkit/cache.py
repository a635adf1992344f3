"""Content-addressed stage cache: a stage's output is keyed by a hash of its inputs + config.

``Cache.run(stage, key_material, fn)`` returns the cached artifact when one exists for the key; otherwise it
calls ``fn(workdir)`` in a temporary directory and moves the finished directory into place atomically, so
a killed build never leaves a half-written artifact and the rerun resumes at the first stage it lacks.
Changing one stage's config changes its key and, through the artifact hashes, the keys of all stages after
it; earlier stages are reused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevision.runtime.fsutil import atomic_dir, atomic_write_json, remove_stale_temps, sha256_json

META = "_stage.json"


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


@dataclass
class Cache:
    root: Path
    log: Callable[[str], None] = print
    events: list[dict[str, Any]] = field(default_factory=list)

    def key(self, stage: str, material: dict[str, Any]) -> str:
        return sha256_json({"stage": stage, **material})[:16]

    def run(
        self,
        stage: str,
        material: dict[str, Any],
        fn: Callable[[Path], dict[str, Any]],
    ) -> Artifact:
        key = self.key(stage, material)
        final = self.root / stage / key
        meta_path = final / META
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            self.log(f"[{stage}] cached ({key})")
            art = Artifact(stage, key, final, meta["data"], True, 0.0)
            self.events.append({"stage": stage, "key": key, "cached": True, "seconds": 0.0})
            return art
        remove_stale_temps(final.parent)
        self.log(f"[{stage}] running ({key})")
        t0 = time.perf_counter()
        with atomic_dir(final) as tmp:
            data = fn(tmp)
            seconds = time.perf_counter() - t0
            atomic_write_json(tmp / META, {"stage": stage, "key": key, "material": material,
                                           "seconds": seconds, "data": data})
        self.log(f"[{stage}] done in {seconds:.1f}s")
        self.events.append({"stage": stage, "key": key, "cached": False, "seconds": round(seconds, 2)})
        return Artifact(stage, key, final, data, False, seconds)
