"""The project gates itself as its users do: the tiny recipe, built by this checkout, against the baseline
committed in tests/regression/baseline/ (a build of the same recipe: manifest + FP32 bundle), through the
pytest plugin's helpers (the semantics of `edgevision regress`).

Tolerances are wider than a user's default: 40 validation images make mAP move by about a point when a
library's kernels change, and the committed model is timed side by side with the fresh one here, so a
slowdown of the export or the runtime shows as a ratio, not as milliseconds of this machine.
The committed bundle carries golden/ (its own outputs on two synthetic scenes, 80 KB; added to the committed
model with the bundle stage's writer, `golden_tensors` + `make_golden` + `write_golden`).
Refresh the baseline after an intended change: `edgevision regress OUT --baseline tests/regression/baseline
--update-baseline` on a build of the recipe (see conftest.py), and say why in the commit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgevision.toolkit.pytest_plugin import assert_accuracy, assert_golden, assert_latency, assert_size

BASELINE = Path(__file__).parent / "baseline"


@pytest.mark.slow
def test_tiny_build_holds_the_committed_baseline(tiny_build: tuple[Path, dict[str, Any]]) -> None:
    out, _ = tiny_build
    assert_accuracy(out, BASELINE, tol_points=3.0)
    assert_size(out, BASELINE, tol=0.05)
    assert_golden(out, BASELINE)  # the fresh bundle reproduces its golden outputs (the baseline's: same weights only)
    assert_latency(out, BASELINE, max_ratio=1.25, rounds=100)
