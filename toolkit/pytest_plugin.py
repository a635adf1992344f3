"""pytest plugin (entry point ``pytest11``): put edgevision's regression gates in your own test suite.

Options ``--edgevision-candidate DIR`` and ``--edgevision-baseline DIR`` (build directories, or bundles
inside them) feed the fixtures ``edgevision_candidate`` / ``edgevision_baseline``; a test that uses a fixture
whose option was not given is skipped, saying which option to pass. The helpers apply exactly the checks of
`edgevision regress` (:mod:`edgevision.toolkit.regress`) and fail with the same one-line messages::

    from edgevision.toolkit.pytest_plugin import assert_accuracy, assert_latency

    def test_model_did_not_regress(edgevision_candidate, edgevision_baseline):
        assert_accuracy(edgevision_candidate, edgevision_baseline, tol_points=0.5)
        assert_latency(edgevision_candidate, edgevision_baseline, max_ratio=1.10)

Importing this module is cheap and works on every Python the runtime supports (no torch, no ONNX Runtime,
no toolkit module until a helper runs), because pytest loads it in every session of an environment where
edgevision is installed, a Jetson's Python 3.8 included.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .manifest import Variant
    from .regress import Check

__all__ = ["assert_accuracy", "assert_golden", "assert_latency", "assert_size"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("edgevision", "edgevision regression gates")
    group.addoption("--edgevision-candidate", default=None, help="candidate build directory (or bundle in one)")
    group.addoption("--edgevision-baseline", default=None, help="baseline build directory (or bundle in one)")


def _path_option(request: pytest.FixtureRequest, name: str) -> Path:
    value = request.config.getoption(name)
    if not value:
        pytest.skip(f"pass --{name.replace('_', '-')} DIR to run edgevision regression gates")
    return Path(value)


@pytest.fixture
def edgevision_candidate(request: pytest.FixtureRequest) -> Path:
    """The candidate build directory given with ``--edgevision-candidate``."""
    return _path_option(request, "edgevision_candidate")


@pytest.fixture
def edgevision_baseline(request: pytest.FixtureRequest) -> Path:
    """The baseline build directory given with ``--edgevision-baseline``."""
    return _path_option(request, "edgevision_baseline")


def _pairs(candidate: Path, baseline: Path) -> list[tuple[str, Path, Path, Variant, Variant]]:
    from .regress import open_side

    cand, base = open_side(Path(candidate), "candidate"), open_side(Path(baseline), "baseline")
    common = [n for n in cand.variants if n in base.variants]
    if not common:
        pytest.fail(f"{baseline}: none of the candidate's variants ({', '.join(cand.variants)})", pytrace=False)
    return [(n, cand.root / cand.variants[n].bundle, base.root / base.variants[n].bundle,
             cand.variants[n], base.variants[n]) for n in common]


def _fail_on(checks: list[Check], strict: bool) -> None:
    bad = [c for c in checks if c.failed(strict)]
    if bad:
        pytest.fail("; ".join(f"{c.name}: {c.message}" for c in bad), pytrace=False)


def assert_accuracy(candidate: Path, baseline: Path, *, tol_points: float = 0.5, strict: bool = False) -> None:
    """Every common variant's metrics within ``tol_points`` below the baseline (above too with ``strict``)."""
    from .regress import Tolerances, accuracy_checks

    tol = Tolerances(acc_tol=tol_points, strict=strict)
    checks = [c for n, _, _, cv, bv in _pairs(candidate, baseline)
              for c in accuracy_checks(n, cv, bv, tol)]
    _fail_on(checks, strict)


def assert_size(candidate: Path, baseline: Path, *, tol: float = 0.05) -> None:
    """ONNX size, MACs and parameters of every common variant within ``tol`` relative growth."""
    from .regress import Tolerances, size_checks

    t = Tolerances(size_tol=tol)
    _fail_on([c for n, _, _, cv, bv in _pairs(candidate, baseline)
              for c in size_checks(n, cv, bv, t)], strict=False)


def assert_latency(candidate: Path, baseline: Path, *, max_ratio: float = 1.10, rounds: int = 2000,
                   threads: int = 1, seconds: float = 20.0) -> None:
    """Timed side by side here: fails when the 95 % interval of the median ratio lies above ``max_ratio``."""
    from .regress import Tolerances, latency_check

    t = Tolerances(max_latency_ratio=max_ratio)
    _fail_on([latency_check(n, cd, bd, t, rounds=rounds, threads=threads, seconds=seconds)
              for n, cd, bd, _, _ in _pairs(candidate, baseline)], strict=False)


def assert_golden(candidate: Path, baseline: Path, *, backend: str = "auto") -> None:
    """Golden tensors of every common variant, as `edgevision regress` checks them: the candidate bundle
    reproduces its stored outputs on ``backend``, and the baseline's too when both come from the same weights."""
    from edgevision.runtime.errors import UserError

    from .regress_golden import golden_checks

    try:
        checks = [c for n, cd, bd, _, _ in _pairs(candidate, baseline)
                  for c in golden_checks(n, cd, bd, backend=backend)]
    except UserError as exc:
        pytest.fail(str(exc), pytrace=False)
    _fail_on(checks, strict=False)
