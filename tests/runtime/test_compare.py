"""The one output comparator, on hand-computed cases (the rule is |got - expected| <= atol + rtol * |expected|)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgevision.runtime.compare import Tolerance, anchors_above, compare_arrays, compare_outputs


def test_the_atol_rtol_boundary_is_inclusive_and_asymmetric() -> None:
    expected = np.array([10.0, 0.0], np.float64)
    # bound at 10: 0.5 + 0.1 * 10 = 1.5; at 0: 0.5
    at_bound = compare_arrays(np.array([11.5, 0.5]), expected, atol=0.5, rtol=0.1)
    assert at_bound.ok and at_bound.mismatches == 0
    assert at_bound.max_abs_err == pytest.approx(1.5)
    just_over = compare_arrays(np.array([11.5001, 0.5]), expected, atol=0.5, rtol=0.1)
    assert not just_over.ok and just_over.mismatches == 1 and just_over.worst_index == (0,)
    # the reference is `expected`: swapping the sides changes the bound (rtol * |11.5| > rtol * |10|)
    assert compare_arrays(expected[:1], np.array([11.6]), atol=0.5, rtol=0.1).ok
    assert not compare_arrays(np.array([11.6]), expected[:1], atol=0.5, rtol=0.1).ok


def test_errors_fraction_and_worst_index_by_hand() -> None:
    expected = np.array([[1.0, 2.0, 4.0], [0.0, 100.0, 8.0]], np.float32)
    got = np.array([[1.0, 2.5, 4.0], [0.05, 101.0, 8.0]], np.float32)
    r = compare_arrays(got, expected, atol=0.1, rtol=0.0)
    # errors: 0, .5, 0 / .05, 1, 0 -> mismatches at (0, 1) and (1, 1); the worst excess is 1 - 0.1 at (1, 1)
    assert (r.mismatches, r.elements) == (2, 6)
    assert r.mismatch_fraction == pytest.approx(2 / 6)
    assert r.max_abs_err == pytest.approx(1.0)
    assert r.mean_abs_err == pytest.approx(1.55 / 6, rel=1e-6)
    assert r.worst_index == (1, 1) and r.got_at_worst == pytest.approx(101.0) and r.expected_at_worst == 100.0
    # relative error divides by max(|expected|, atol): 0.05 / 0.1 at the zero, 0.5 / 2 at (0, 1)
    assert r.max_rel_err == pytest.approx(0.5, rel=1e-6)
    assert "FAIL" in r.line() and "[1, 1]" in r.line()


def test_the_worst_index_is_the_largest_excess_not_the_largest_error() -> None:
    expected = np.array([1000.0, 1.0])
    got = np.array([1005.0, 2.0])  # |err| 5 within 0 + 0.01 * 1000 = 10; 1 > 0.01
    r = compare_arrays(got, expected, atol=0.0, rtol=0.01)
    assert r.mismatches == 1 and r.worst_index == (1,) and r.max_abs_err == pytest.approx(5.0)


def test_nan_never_matches_and_is_the_worst_element() -> None:
    expected = np.array([1.0, 2.0, 3.0])
    got = np.array([1.5, np.nan, 3.0])
    r = compare_arrays(got, expected, atol=1.0, rtol=0.0)
    assert not r.ok and r.mismatches == 1 and r.worst_index == (1,) and r.nonfinite == 1
    assert math.isinf(r.max_abs_err)
    assert not compare_arrays(np.array([np.nan]), np.array([np.nan]), atol=1, rtol=1).ok
    assert compare_arrays(np.array([np.nan]), np.array([np.nan]), atol=0, rtol=0, equal_nan=True).ok
    # a NaN in the reference fails too
    assert not compare_arrays(np.array([1.0]), np.array([np.nan]), atol=1e9, rtol=0).ok


def test_an_allowed_mismatch_fraction_passes_a_few_outliers_but_never_a_nan() -> None:
    expected = np.zeros(100)
    got = np.zeros(100)
    got[:3] = 5.0  # 3 % of the elements far off
    assert not compare_arrays(got, expected, atol=0.1, rtol=0).ok
    r = compare_arrays(got, expected, atol=0.1, rtol=0, max_mismatch=0.03)
    assert r.ok and r.mismatches == 3 and "allowed 3.00%" in r.line()
    assert not compare_arrays(got, expected, atol=0.1, rtol=0, max_mismatch=0.02).ok
    got[3] = np.nan
    assert not compare_arrays(got, expected, atol=0.1, rtol=0, max_mismatch=0.5).ok
    per_output = compare_outputs({"o": got[:3]}, {"o": expected[:3]}, {"o": Tolerance(0.1, 0, max_mismatch=1.0)})
    assert per_output[0].ok


def test_infinities_match_only_the_same_infinity() -> None:
    assert compare_arrays(np.array([np.inf, -np.inf]), np.array([np.inf, -np.inf]), atol=0, rtol=0).ok
    r = compare_arrays(np.array([np.inf, 0.0]), np.array([-np.inf, 0.0]), atol=1e9, rtol=1e9)
    assert not r.ok and r.worst_index == (0,)
    assert not compare_arrays(np.array([np.inf]), np.array([1e30]), atol=1e9, rtol=1e9).ok


def test_shape_and_dtype_mismatch_are_failures_with_a_reason() -> None:
    r = compare_arrays(np.zeros((1, 5)), np.zeros((1, 6)), atol=1, rtol=1, name="output0")
    assert not r.ok and r.reason == "shape [1, 5] != expected [1, 6]"
    assert r.line() == "FAIL output0: shape [1, 5] != expected [1, 6]"
    d = compare_arrays(np.zeros(3, np.float16), np.zeros(3, np.float32), atol=1, rtol=1)
    assert not d.ok and d.reason == "dtype float16 != expected float32"
    assert compare_arrays(np.zeros(3, np.float16), np.zeros(3, np.float32), atol=0, rtol=0, check_dtype=False).ok


def test_compare_outputs_per_name_tolerances_missing_and_extra_outputs() -> None:
    exp = {"boxes": np.array([10.0]), "scores": np.array([0.5])}
    got = {"boxes": np.array([10.4]), "scores": np.array([0.56])}
    tol = {"boxes": Tolerance(0.5, 0.0), "scores": Tolerance(0.05, 0.0)}
    r = compare_outputs(got, exp, tol)
    assert [(c.name, c.ok) for c in r] == [("boxes", True), ("scores", False)]
    missing = compare_outputs({"boxes": got["boxes"], "extra": np.zeros(1)}, exp, tol)
    assert [(c.name, c.ok) for c in missing] == [("boxes", True), ("scores", False), ("extra", False)]
    assert "missing" in (missing[1].reason or "") and "unexpected" in (missing[2].reason or "")
    one = compare_outputs(got, exp, Tolerance(0.5, 0.0))
    assert all(c.ok for c in one)


def test_anchors_above_selects_by_the_best_class_score() -> None:
    raw = np.array([[0, 0, 0], [0, 0, 0], [1, 1, 1], [1, 1, 1], [0.1, 0.9, 0.3], [0.2, 0.1, 0.26]])
    assert anchors_above(raw, 0.25).tolist() == [False, True, True]
    assert anchors_above(raw[:4], 0.25).tolist() == [True, True, True]
