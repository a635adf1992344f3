"""`edgevision regress --history FILE`: one JSON line per run, appended, and the trends read back from it.

A line records when the run was, what was compared, whether it passed, and per variant the candidate's
metrics and the latency check's numbers (candidate / baseline medians, their ratio and its interval). The
file is rewritten atomically on every append (read, add a line, replace), so a killed run never leaves a
half line; `edgevision report BUILD --history FILE` draws the trends from it (``report_html``).
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from edgevision.runtime.errors import UserError
from edgevision.runtime.fsutil import atomic_write_text

HISTORY_VERSION = 1


def history_entry(candidate: Path, baseline: Path, checks: list[Any], result: dict[str, Any]) -> dict[str, Any]:
    """The line for one `regress` run (``checks``: its ``regress.Check`` list; ``result``: its summary)."""
    from .regress import open_side

    side = open_side(candidate, "candidate")
    variants: dict[str, dict[str, Any]] = {
        name: {"metrics": dict(v.metrics)} for name, v in side.variants.items()}
    for c in checks:
        name = c.name.split(".", 1)[0]
        if c.kind == "latency" and c.status != "skip" and name in variants:
            vals = c.values
            variants[name].update({"latency_ms": vals.get("candidate_ms"), "baseline_ms": vals.get("baseline_ms"),
                                   "latency_ratio": vals.get("ratio"),
                                   "ratio_interval": [vals.get("ci_low"), vals.get("ci_high")]})
    return {"version": HISTORY_VERSION,
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "candidate": str(candidate), "baseline": str(baseline), "recipe_hash": side.manifest.recipe_hash,
            "passed": bool(result["passed"]), "failed": int(result["failed"]), "variants": variants}


def read_history(path: Path) -> list[dict[str, Any]]:
    """Every run in ``path``; a line that is not a history entry is a one-line ``UserError`` naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such history file (written by `edgevision regress --history`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: unreadable history file ({type(exc).__name__})") from None
    entries = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{path}:{i}: not a JSON line") from None
        if not isinstance(entry, dict) or entry.get("version") != HISTORY_VERSION or \
                not isinstance(entry.get("variants"), dict):
            raise UserError(f"{path}:{i}: not an edgevision regress history entry (version {HISTORY_VERSION})")
        entries.append(entry)
    return entries


def append_history(path: Path, entry: dict[str, Any]) -> None:
    """Add ``entry`` as the last line of ``path`` (created if missing), atomically."""
    old = read_history(path) if path.exists() else []
    atomic_write_text(path, "".join(json.dumps(e, sort_keys=True) + "\n" for e in [*old, entry]))


def trend_series(entries: list[dict[str, Any]], metric: str) -> tuple[list[str], dict[str, list[float | None]],
                                                                      dict[str, list[float | None]]]:
    """Run labels, ``{variant: [metric per run]}`` and ``{variant: [candidate median ms per run]}``."""
    runs = [str(e.get("time", i))[:16].replace("T", " ") for i, e in enumerate(entries)]
    names = sorted({n for e in entries for n in e["variants"]})
    metrics = {n: [e["variants"].get(n, {}).get("metrics", {}).get(metric) for e in entries] for n in names}
    latency = {n: [e["variants"].get(n, {}).get("latency_ms") for e in entries] for n in names}
    return runs, metrics, {n: v for n, v in latency.items() if any(x is not None for x in v)}
