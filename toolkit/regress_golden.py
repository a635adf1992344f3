"""`edgevision regress`'s golden-tensor checks (``golden/`` in a bundle: ``edgevision.runtime.golden``).

Per variant, one JUnit case per model output for each of:

- ``<variant>.golden.<output>``: the candidate bundle's golden inputs through the candidate model, on the
  backend ``edgevision run`` would pick here, against the outputs stored at build time (is this bundle, on
  this machine, still the model that was built?);
- ``<variant>.golden_baseline.<output>``: the baseline's golden inputs through the candidate model against
  the baseline's stored outputs, with the baseline's tolerances (does the candidate still compute what the
  baseline computed?). That holds only for the same trained weights: when the two bundles come from
  different weights (provenance ``checkpoint_hash``, else ``onnx_hash``, differ: a retrain, an earlier
  epoch) their outputs are expected to differ, so the case is reported as skipped with the measured error,
  and accuracy decides; with the same weights (a new exporter, simplifier, opset or runtime) it gates. A
  candidate with other inputs (another input size) skips it, saying so.

A candidate bundle without ``golden/`` is a usage error (exit 2) unless the caller opts out (``--no-golden``);
a baseline without it only drops the second check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgevision.runtime.bundle import Bundle, load_bundle
from edgevision.runtime.compare import OutputComparison
from edgevision.runtime.errors import UserError
from edgevision.runtime.golden import GOLDEN_DIR, INDEX_NAME, check_golden, load_golden

from .regress import SIDECAR, Check, Status


def _same_weights(cand: Bundle, base: Bundle) -> tuple[bool, str]:
    for key in ("checkpoint_hash", "onnx_hash"):
        c, b = getattr(cand.sidecar.provenance, key), getattr(base.sidecar.provenance, key)
        if c is not None and b is not None:
            return c == b, f"{key} {c[:12]} vs {b[:12]}"
    return False, "no checkpoint or ONNX hash in the sidecars' provenance"


def _case(name: str, r: OutputComparison, status: Status | None = None, note: str = "") -> Check:
    values: dict[str, Any] = r.to_dict()
    message = r.line().split(": ", 1)[1] + note
    return Check(name, "golden", status or ("pass" if r.ok else "fail"), message, values)


def golden_checks(name: str, cand_dir: Path, base_dir: Path, *, backend: str = "auto") -> list[Check]:
    """The golden checks of variant ``name`` (module docstring); ``UserError`` when the candidate bundle has
    no golden tensors."""
    if not (cand_dir / SIDECAR).is_file():
        return [Check(f"{name}.golden", "golden", "skip", f"bundle {cand_dir} is not at hand; golden not run")]
    cand = load_bundle(cand_dir)
    golden = load_golden(cand_dir)
    if golden is None:
        raise UserError(f"{cand_dir}: the candidate bundle has no golden tensors ({GOLDEN_DIR}/{INDEX_NAME}); "
                        "rebuild it with this edgevision, or pass --no-golden")
    base_golden = load_golden(base_dir) if (base_dir / SIDECAR).is_file() else None
    from edgevision.runtime.backends.choice import choose_backend

    checks: list[Check] = []
    with choose_backend(cand, backend).open() as be:
        for r in check_golden(golden, be.infer):
            checks.append(_case(f"{name}.golden.{r.name}", r))
        if base_golden is None:
            why = "has no golden tensors" if (base_dir / SIDECAR).is_file() else "is not at hand"
            checks.append(Check(f"{name}.golden_baseline", "golden", "skip",
                                f"baseline bundle {base_dir} {why}; candidate checked against its own only"))
            return checks
        shapes = {k: list(v.shape[1:]) for k, v in golden.inputs.items()}
        base_shapes = {k: list(v.shape[1:]) for k, v in base_golden.inputs.items()}
        if shapes != base_shapes:
            checks.append(Check(f"{name}.golden_baseline", "golden", "skip",
                                f"the baseline's golden inputs {base_shapes} do not fit the candidate's {shapes}"))
            return checks
        same, detail = _same_weights(cand, load_bundle(base_dir))
        for r in check_golden(base_golden, be.infer):
            if same:
                checks.append(_case(f"{name}.golden_baseline.{r.name}", r))
            else:
                checks.append(_case(f"{name}.golden_baseline.{r.name}", r, "skip",
                                    f" (not gated: other weights than the baseline's, {detail})"))
    return checks
