"""Shared by the CLI tests: run the `edgevision` entry point in-process and capture what a user sees."""

from __future__ import annotations

import pytest

from edgevision.toolkit.cli import main


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``edgevision ARGS``."""
    with pytest.raises(SystemExit) as exc:
        main(args)
        raise SystemExit(0)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err
