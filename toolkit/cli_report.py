"""`edgevision report BUILD_DIR [--history FILE]`: (re)write a build's ``report.html`` from its manifest, with
the trends of a `regress --history` file when given. The build writes ``report.html`` itself; this command
redraws it, e.g. in CI after `regress` has appended to the history."""

from __future__ import annotations

from pathlib import Path

import click

_PATH = click.Path(path_type=Path)


@click.command()
@click.argument("build_dir", type=_PATH)
@click.option("--history", type=_PATH, default=None,
              help="A `regress --history` file (JSON lines): add metric and latency trends over its runs.")
def report(build_dir: Path, history: Path | None) -> None:
    """Write BUILD_DIR/report.html (self-contained: figures embedded) from BUILD_DIR/manifest.json."""
    from .manifest import load_manifest
    from .regress_history import read_history
    from .report_html import write_html

    m = load_manifest(build_dir)
    root = build_dir if build_dir.is_dir() else build_dir.parent
    entries = read_history(history) if history is not None else None
    click.echo(f"report: {write_html(root, m, entries)}")
