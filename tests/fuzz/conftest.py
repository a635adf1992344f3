"""Prints how many bad inputs the fuzz suite fed the CLI (each one checked by ``fuzz_harness.expect_user_error``)."""

from __future__ import annotations

from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from fuzz_harness import CASES

    if CASES:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(CASES.items()))
        terminalreporter.write_line(f"fuzz: {sum(CASES.values())} bad inputs -> one-line exit-2 errors ({parts})")
