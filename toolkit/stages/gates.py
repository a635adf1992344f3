"""Gates stage: the recipe's ``gates:`` evaluated on the finished build (:mod:`edgevision.toolkit.gates`), their
record stored in ``manifest.json`` (``gates``: every check and whether all passed, read by both reports) and
report.md re-rendered with its Gates section. Runs after the report stage has written everything, so a
failing gate still leaves a complete build behind; the CLI then exits 1.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgevision.runtime.fsutil import atomic_write_json, atomic_write_text

from ..gates import evaluate_build_gates, gates_record
from ..manifest import check_manifest
from ..recipe import Recipe
from .report import MANIFEST, REPORT, render_report


def gates_stage(out: Path, recipe: Recipe, manifest: dict[str, Any],
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """Evaluate ``recipe.gates`` on the build in ``out``; rewrite its manifest and report; return the manifest."""
    checks = evaluate_build_gates(recipe.gates, check_manifest(manifest, str(out / MANIFEST)), out, log=log)
    record = gates_record(checks)
    updated = {**manifest, "gates": record.model_dump(mode="json")}
    check_manifest(updated, str(out / MANIFEST))
    atomic_write_json(out / MANIFEST, updated)
    atomic_write_text(out / REPORT, render_report(updated))
    for c in checks:
        if c.status != "pass":
            log(f"gate {c.status.upper()}: {c.name}: {c.message}")
    log(f"gates: {'passed' if record.passed else 'FAILED'} ({len(checks)} checks)")
    return updated
