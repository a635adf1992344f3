"""One output comparator: golden tensors, export parity, FP16 parity and quantization error all call it.

Modelled on Polygraphy's ``CompareFunc.simple``: per output, elementwise ``|got - expected| <= atol +
rtol * |expected|`` (numpy's ``isclose`` rule, asymmetric: ``expected`` is the reference), and a report of the
max / mean absolute error, the max relative error, the fraction of mismatching elements and the index of the
worst element with both values there. A shape or dtype mismatch, or an output missing on one side, is a
failure with a one-line reason, never an exception.

Non-finite values: NaN never matches (not even NaN, unless ``equal_nan``); +/-inf matches only the same
infinity. A mismatch involving a non-finite value counts as an infinite error, so it is the worst index.
The relative error divides by ``max(|expected|, atol)`` (by the smallest positive float when ``atol`` is 0):
where ``|expected|`` is below ``atol`` the absolute term decides anyway, and the floor keeps near-zero
references (background scores, padded box channels) from reporting meaningless relative errors of 1e6.

Hand-written rather than imported from Polygraphy: Polygraphy's comparator comes with its runner stack and
logger as a dependency of the lean runtime, which stays numpy-only on the device; the rule is a dozen lines
of numpy, and the hand-computed cases in tests/runtime/test_compare.py pin it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Union

import numpy as np

__all__ = ["OutputComparison", "Tolerance", "abs_errors", "anchors_above", "compare_arrays", "compare_outputs"]


@dataclass(frozen=True)
class Tolerance:
    """Elementwise tolerance of one output: ``|got - expected| <= atol + rtol * |expected|``, and the fraction
    of elements allowed outside it (0: none; for INT8, where one rounding flip moves a few values a lot)."""

    atol: float
    rtol: float
    max_mismatch: float = 0.0


@dataclass(frozen=True)
class OutputComparison:
    """The verdict on one output; ``reason`` is set when the arrays could not be compared elementwise."""

    name: str
    ok: bool
    atol: float
    rtol: float
    max_mismatch: float = 0.0  # allowed fraction of mismatching elements
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    mean_abs_err: float = 0.0
    mismatch_fraction: float = 0.0
    mismatches: int = 0
    elements: int = 0
    worst_index: tuple[int, ...] | None = None
    got_at_worst: float | None = None
    expected_at_worst: float | None = None
    nonfinite: int = 0  # non-finite values in ``got``
    reason: str | None = None

    def line(self) -> str:
        """One line for a terminal: verdict, name, the errors and where the worst element is."""
        head = f"{'PASS' if self.ok else 'FAIL'} {self.name}: "
        if self.reason is not None:
            return head + self.reason
        allowed = f", allowed {self.max_mismatch:.2%}" if self.max_mismatch else ""
        text = (f"max abs err {self.max_abs_err:.3g}, max rel err {self.max_rel_err:.3g}, "
                f"mismatch {self.mismatches}/{self.elements} ({self.mismatch_fraction:.2%}{allowed}) "
                f"with atol {self.atol:g} rtol {self.rtol:g}")
        if self.worst_index is not None and not self.ok:
            text += (f"; worst at {list(self.worst_index)}: got {self.got_at_worst:.6g}, "
                     f"expected {self.expected_at_worst:.6g}")
        if self.nonfinite:
            text += f"; {self.nonfinite} non-finite value(s)"
        return head + text

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["worst_index"] = list(self.worst_index) if self.worst_index is not None else None
        return out


def _failed(name: str, tol: Tolerance, reason: str) -> OutputComparison:
    inf = float("inf")
    return OutputComparison(name, False, tol.atol, tol.rtol, tol.max_mismatch, max_abs_err=inf, max_rel_err=inf,
                            mean_abs_err=inf, mismatch_fraction=1.0, reason=reason)


def compare_arrays(got: Any, expected: Any, *, atol: float, rtol: float, name: str = "output",
                   check_dtype: bool = True, equal_nan: bool = False, max_mismatch: float = 0.0) -> OutputComparison:
    """Compare ``got`` with the reference ``expected`` elementwise (module docstring); passes when at most
    ``max_mismatch`` (a fraction) of the elements lie outside the tolerance and every value of ``got`` is finite
    where ``expected`` is."""
    tol = Tolerance(float(atol), float(rtol), float(max_mismatch))
    a, b = np.asarray(got), np.asarray(expected)
    if a.shape != b.shape:
        return _failed(name, tol, f"shape {list(a.shape)} != expected {list(b.shape)}")
    if check_dtype and a.dtype != b.dtype:
        return _failed(name, tol, f"dtype {a.dtype} != expected {b.dtype}")
    if a.size == 0:
        return OutputComparison(name, True, tol.atol, tol.rtol)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    fin_a, fin_b = np.isfinite(a64), np.isfinite(b64)
    err = _abs_errors(a64, b64, equal_nan)
    bound = tol.atol + tol.rtol * np.where(fin_b, np.abs(b64), 0.0)
    match = err <= bound
    floor = tol.atol if tol.atol > 0 else float(np.finfo(np.float64).tiny)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = err / np.maximum(np.abs(np.where(fin_b, b64, 0.0)), floor)
    # the worst element: the largest excess over its bound (among mismatches), else the largest error
    excess = np.where(match, -np.inf, err - bound) if not match.all() else err
    flat = int(np.argmax(excess))
    worst = tuple(int(i) for i in np.unravel_index(flat, a.shape))
    bad = int(a.size - np.count_nonzero(match))
    ok = bad == 0 or (bad <= tol.max_mismatch * a.size and not np.isinf(err).any())
    return OutputComparison(
        name=name, ok=ok, atol=tol.atol, rtol=tol.rtol, max_mismatch=tol.max_mismatch,
        max_abs_err=float(err.max()), max_rel_err=float(rel.max()), mean_abs_err=float(err.mean()),
        mismatch_fraction=bad / a.size, mismatches=bad, elements=int(a.size), worst_index=worst,
        got_at_worst=float(a64[worst]), expected_at_worst=float(b64[worst]),
        nonfinite=int(a.size - np.count_nonzero(fin_a)),
    )


def abs_errors(got: Any, expected: Any, *, equal_nan: bool = False) -> np.ndarray:
    """Elementwise ``|got - expected|`` (float64) by the comparator's rule for non-finite values (module
    docstring: a non-finite mismatch is ``inf``); for callers that reduce errors their own way."""
    a, b = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape {list(a.shape)} != expected {list(b.shape)}")
    return _abs_errors(a, b, equal_nan)


def _abs_errors(a64: np.ndarray, b64: np.ndarray, equal_nan: bool) -> np.ndarray:
    both = np.isfinite(a64) & np.isfinite(b64)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.where(both, np.abs(a64 - b64), 0.0)
        same_inf = np.isinf(a64) & (a64 == b64)
        both_nan = np.isnan(a64) & np.isnan(b64) if equal_nan else np.zeros(a64.shape, bool)
    return np.where(both | same_inf | both_nan, err, np.inf)


ToleranceLike = Union[Tolerance, Mapping[str, Tolerance]]


def compare_outputs(got: Mapping[str, Any], expected: Mapping[str, Any], tolerance: ToleranceLike, *,
                    check_dtype: bool = True) -> list[OutputComparison]:
    """Per output of ``expected`` (in its order), the comparison with ``got``; an output missing from
    ``got`` fails, and one ``got`` has beyond ``expected`` is reported as a failure too (the model changed).
    ``tolerance``: one for all outputs, or one per output name."""
    out: list[OutputComparison] = []
    for name, ref in expected.items():
        tol = tolerance.get(name) if isinstance(tolerance, Mapping) else tolerance
        if tol is None:
            out.append(_failed(name, Tolerance(0.0, 0.0), "no tolerance given for this output"))
        elif name not in got:
            out.append(_failed(name, tol, f"missing (got outputs: {', '.join(got) or 'none'})"))
        else:
            out.append(compare_arrays(got[name], ref, atol=tol.atol, rtol=tol.rtol, name=name,
                                      check_dtype=check_dtype, max_mismatch=tol.max_mismatch))
    for name in got:
        if name not in expected:
            out.append(_failed(name, Tolerance(0.0, 0.0), "unexpected output (not in the reference)"))
    return out


def anchors_above(raw: np.ndarray, min_score: float) -> np.ndarray:
    """For one image's raw ``yolo``-layout output ``[4 + C (+ 3K), N]``: the anchors whose best class score
    exceeds ``min_score`` (the ones that can become detections); every anchor when there is no score row."""
    if raw.ndim != 2:
        raise ValueError(f"expected one image's [4 + C, N] output, got shape {list(raw.shape)}")
    if raw.shape[0] <= 4:
        return np.ones(raw.shape[1], bool)
    return np.asarray(raw[4:].max(0) > min_score)
