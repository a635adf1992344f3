"""One-line messages for bad user files (YAML syntax, pydantic validation), shared by every schema.

A user who mistypes a key sees ``FILE: compress[1].quantize.method: <what is wrong>`` instead of pydantic's
multi-line report.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import UserError


def parse_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` whose failure is one ``UserError`` line: ``SOURCE: line N: malformed YAML: ...``."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{source}:{where} malformed YAML: {problem}") from None


def format_loc(loc: Iterable[int | str]) -> str:
    """pydantic location tuple -> ``compress[1].quantize.method``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def validation_line(source: str, err: ValidationError, hints: dict[str, str] | None = None) -> str:
    """The first error as one line naming ``source`` and the key path; ``hints`` add text by error type."""
    first = err.errors()[0]
    msg = str(first["msg"])
    if msg.startswith("Value error, "):  # no str.removeprefix on Python 3.8
        msg = msg[len("Value error, ") :]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "required key is missing"
    msg += (hints or {}).get(first["type"], "")
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    loc = format_loc(first["loc"])  # empty for cross-field checks, whose message names the keys
    return f"{source}: {loc + ': ' if loc else ''}{msg}{more}"
