"""Side-by-side timing: every candidate is timed the same number of times and leads a round equally often,
so a thread pool still busy from one candidate does not always tax the same other one."""

from __future__ import annotations

from collections import Counter

from edgevision.runtime.benchmark import measure, summarize


def test_measure_rotates_the_order() -> None:
    calls: list[str] = []
    fns = {name: (lambda n=name: calls.append(n)) for name in ("a", "b", "c")}
    stats = measure(fns, warmup=2, iters=9)
    assert {k: s.iters for k, s in stats.items()} == {"a": 9, "b": 9, "c": 9}
    rounds = [calls[6 + 3 * r: 9 + 3 * r] for r in range(9)]  # after 2 warmup rounds of 3 calls
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds)
    assert Counter(r[0] for r in rounds) == {"a": 3, "b": 3, "c": 3}
    assert Counter(r[1] for r in rounds) == {"a": 3, "b": 3, "c": 3}


def test_summarize_percentiles() -> None:
    s = summarize([float(v) for v in range(1, 101)])
    assert (s.median, s.iters) == (50.5, 100) and s.p90 < s.p99 <= 100.0 and s.mean == 50.5
