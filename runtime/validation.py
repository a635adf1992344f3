"""One-line messages for bad user files (YAML syntax, pydantic validation), shared by every schema.

A user who mistypes a key sees ``FILE: compress[1].quantize.method: <what is wrong>`` instead of pydantic's
multi-line report.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

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


_BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number",
                 "int_parsing", "float_parsing", "int_from_float", "int_type", "float_type"}


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``annotation`` (``X``, ``X | None``, ``list[X]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def allowed_range(schema: type[BaseModel] | None, loc: Iterable[int | str]) -> str:
    """``"allowed range [1, 1000]"`` for the numeric field at ``loc`` of ``schema`` (ge/gt/le/lt bounds),
    or ``""`` where the field has no bounds or cannot be found (list indices in ``loc`` are skipped)."""
    cls, info = schema, None
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(cls, "model_fields", None)
        if not fields or part not in fields:
            return ""
        info = fields[part]
        cls = _model_in(info.annotation)
    if info is None:
        return ""
    lo, hi = "(-inf", "inf)"
    for m in info.metadata:
        for attr, fmt in (("ge", "[{}"), ("gt", "({}")):
            if getattr(m, attr, None) is not None:
                lo = fmt.format(getattr(m, attr))
        for attr, fmt in (("le", "{}]"), ("lt", "{})")):
            if getattr(m, attr, None) is not None:
                hi = fmt.format(getattr(m, attr))
    return "" if (lo, hi) == ("(-inf", "inf)") else f"allowed range {lo}, {hi}"


def validation_line(source: str, err: ValidationError, hints: dict[str, str] | None = None,
                    schema: type[BaseModel] | None = None) -> str:
    """The first error as one line naming ``source`` and the key path; ``hints`` add text by error type;
    ``schema`` (the validated model) adds a numeric field's allowed range to a bound or type error."""
    first = err.errors()[0]
    msg = str(first["msg"])
    if msg.startswith("Value error, "):  # no str.removeprefix on Python 3.8
        msg = msg[len("Value error, ") :]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "required key is missing"
    if first["type"] in _BOUND_ERRORS and (rng := allowed_range(schema, first["loc"])):
        msg += f" ({rng})"
    msg += (hints or {}).get(first["type"], "")
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    loc = format_loc(first["loc"])  # empty for cross-field checks, whose message names the keys
    return f"{source}: {loc + ': ' if loc else ''}{msg}{more}"
