"""`edgevision regress`: the click command, and its JUnit XML and markdown outputs.

JUnit XML is written with the standard library's ElementTree (one ``testcase`` per check, so CI systems show
each; ``failure`` for a regression, ``skipped`` for a check that could not run, a stale baseline as a
failure only under ``--strict``).
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgevision.runtime.fsutil import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from .regress import Check

_PATH = click.Path(path_type=Path)


def junit_xml(cases: list[Check], strict: bool) -> bytes:
    """JUnit XML of the checks (one test case each)."""
    suite = ET.Element("testsuite", name="edgevision-regress", tests=str(len(cases)),
                       failures=str(sum(c.failed(strict) for c in cases)),
                       skipped=str(sum(c.status == "skip" for c in cases)))
    for c in cases:
        case = ET.SubElement(suite, "testcase", classname=f"edgevision.regress.{c.kind}", name=c.name)
        if c.failed(strict):
            ET.SubElement(case, "failure", message=c.message, type=c.status).text = json.dumps(c.values)
        elif c.status == "skip":
            ET.SubElement(case, "skipped", message=c.message)
        else:
            ET.SubElement(case, "system-out").text = c.message
    return bytes(ET.tostring(suite, encoding="utf-8", xml_declaration=True))


def markdown(cases: list[Check], strict: bool, candidate: Path, baseline: Path) -> str:
    """A markdown summary table of the checks."""
    failed = sum(c.failed(strict) for c in cases)
    icon = {"pass": "pass", "fail": "**FAIL**", "stale": "stale" + (" (**FAIL**, --strict)" if strict else ""),
            "skip": "skipped"}
    lines = [f"## edgevision regress: {'FAILED' if failed else 'passed'}", "",
             f"Candidate `{candidate}` against baseline `{baseline}`: {len(cases)} checks, {failed} failed.", "",
             "| check | result | detail |", "|---|---|---|"]
    lines += [f"| `{c.name}` | {icon[c.status]} | {c.message} |" for c in cases]
    return "\n".join(lines) + "\n"


@click.command()
@click.argument("candidate", type=_PATH)
@click.option("--baseline", type=_PATH, required=True, help="Baseline build directory (or a bundle inside one).")
@click.option("--acc-tol", type=click.FloatRange(0, 100), default=0.5, show_default=True,
              help="Allowed accuracy change in metric points (mAP x 100), both ways.")
@click.option("--metric", "metrics", multiple=True, metavar="NAME",
              help="Metric to gate (repeatable; default: map50_95, map50, kp_map50_95, kp_map50 where present).")
@click.option("--max-latency-ratio", type=click.FloatRange(1.0, 100), default=1.10, show_default=True,
              help="Fail when the 95% interval of candidate/baseline median latency lies above this.")
@click.option("--size-tol", type=click.FloatRange(0, 10), default=0.05, show_default=True,
              help="Allowed relative growth of ONNX size, MACs and parameters.")
@click.option("--rounds", type=click.IntRange(10, 100_000), default=2000, show_default=True,
              help="At most this many interleaved timing rounds per variant (fewer once the answer is clear).")
@click.option("--latency-seconds", type=click.FloatRange(1, 3600), default=30.0, show_default=True,
              help="At most this long timing, all variants together (split evenly).")
@click.option("--threads", type=click.IntRange(0, 1024), default=1, show_default=True,
              help="Intra-op threads for the timing (0 = all cores; 1 resists a busy machine best).")
@click.option("--device", default=None, metavar="PROFILE",
              help="This machine is PROFILE (devices/*.yaml): also check the candidate recipe's "
                   "gates.latency.budgets.PROFILE (p50/p99 ms, timed here with the profile's backend).")
@click.option("--reeval", is_flag=True,
              help="Re-evaluate the candidate's bundles on its recipe's eval split (through the runtime) instead "
                   "of using its manifest's metrics.")
@click.option("--no-latency", is_flag=True, help="Skip the timing (accuracy and size only).")
@click.option("--no-golden", is_flag=True, help="Skip the golden-tensor checks (bundles built without golden/).")
@click.option("--strict", is_flag=True, help="A stale baseline (accuracy gain beyond tolerance) fails too.")
@click.option("--junit", type=_PATH, default=None, help="Write JUnit XML (one test case per check).")
@click.option("--markdown", "md", type=_PATH, default=None, help="Write a markdown summary.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("--history", type=_PATH, default=None,
              help="Append this run (metrics, latency) to a JSON-lines file; `edgevision report --history` plots it.")
@click.option("--update-baseline", is_flag=True,
              help="After checking, make the candidate the new baseline (written atomically).")
def regress(candidate: Path, baseline: Path, acc_tol: float, metrics: tuple[str, ...], max_latency_ratio: float,
            size_tol: float, rounds: int, latency_seconds: float, threads: int, device: str | None,
            reeval: bool, no_latency: bool, strict: bool, junit: Path | None, md: Path | None, as_json: bool,
            history: Path | None, update_baseline: bool, no_golden: bool) -> None:
    """Gate CANDIDATE (a build directory, or a bundle inside one) against --baseline.

    Exit 0 when every check passes, 1 on a regression, 2 on a usage error.
    """
    from .regress import Tolerances, run_regress, summary
    from .regress import update_baseline as do_update

    tol = Tolerances(acc_tol=acc_tol, max_latency_ratio=max_latency_ratio, size_tol=size_tol, strict=strict,
                     **({"metrics": metrics} if metrics else {}))
    checks = run_regress(candidate, baseline, tol, latency=not no_latency, rounds=rounds, threads=threads,
                         seconds=latency_seconds, device=device, reeval=reeval,
                         log=lambda s: click.echo(s, err=True), golden=not no_golden)
    result = summary(checks, strict)
    if junit is not None:
        atomic_write_bytes(junit, junit_xml(checks, strict))
    if md is not None:
        atomic_write_text(md, markdown(checks, strict, candidate, baseline))
    if history is not None:
        from .regress_history import append_history, history_entry

        append_history(history, history_entry(candidate, baseline, checks, result))
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        for c in checks:
            click.echo(f"{'FAIL' if c.failed(strict) else c.status.upper():5} {c.name}: {c.message}")
        click.echo(f"{len(checks) - result['failed']} passed, {result['failed']} failed")
    if update_baseline:
        do_update(candidate, baseline)
        click.echo(f"baseline updated: {baseline}", err=True)
        return
    if not result["passed"]:
        sys.exit(1)
