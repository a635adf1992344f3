"""The pytest plugin as a user meets it: options feed the fixtures, the helpers fail with regress's messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from test_regress import make_build, nudge_stored_output

USER_TEST = """
from edgevision.toolkit.pytest_plugin import assert_accuracy, assert_golden, assert_size

def test_gate(edgevision_candidate, edgevision_baseline):
    assert_accuracy(edgevision_candidate, edgevision_baseline, tol_points=0.5)
    assert_size(edgevision_candidate, edgevision_baseline)
    assert_golden(edgevision_candidate, edgevision_baseline)
"""


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_user.py").write_text(USER_TEST)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py", *args],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)


def test_options_feed_the_fixtures_and_a_drop_fails_with_its_message(tmp_path: Path) -> None:
    base = make_build(tmp_path / "base", {"map50_95": 0.60})
    same = make_build(tmp_path / "same", {"map50_95": 0.60})
    drop = make_build(tmp_path / "drop", {"map50_95": 0.58})
    ok = _pytest(tmp_path, "--edgevision-candidate", str(same), "--edgevision-baseline", str(base))
    assert ok.returncode == 0 and "1 passed" in ok.stdout, ok.stdout + ok.stderr
    bad = _pytest(tmp_path, "--edgevision-candidate", str(drop), "--edgevision-baseline", str(base))
    assert bad.returncode == 1 and "fp32.accuracy.map50_95: map50_95 dropped 2.00 pt" in bad.stdout


def test_assert_golden_fails_on_a_bundle_that_no_longer_reproduces_its_outputs(tmp_path: Path) -> None:
    base = make_build(tmp_path / "base")
    cand = make_build(tmp_path / "cand")
    nudge_stored_output(cand / "fp32")
    bad = _pytest(tmp_path, "--edgevision-candidate", str(cand), "--edgevision-baseline", str(base))
    assert bad.returncode == 1 and "fp32.golden.output0: max abs err 1," in bad.stdout, bad.stdout
    old = make_build(tmp_path / "old", golden=False)
    r = _pytest(tmp_path, "--edgevision-candidate", str(old), "--edgevision-baseline", str(base))
    assert r.returncode == 1 and "has no golden tensors" in r.stdout and "Traceback" not in r.stdout


def test_without_options_the_gate_is_skipped_with_the_reason(tmp_path: Path) -> None:
    r = _pytest(tmp_path, "-rs")
    assert r.returncode == 0 and "1 skipped" in r.stdout
    assert "--edgevision-candidate" in r.stdout


def test_the_plugin_is_registered_for_pytest() -> None:
    from importlib.metadata import entry_points

    names = {ep.value for ep in entry_points(group="pytest11")}
    assert "edgevision.toolkit.pytest_plugin" in names, "pytest11 entry point missing (pip install -e .)"
