"""Run by ``scripts/trt-surface dump`` inside a subprocess that can import one real ``tensorrt_bindings``.

Writes that module's surface as JSON: module functions and values, and per class its methods (pybind11
signature lines from ``__doc__``, parsed), properties (with ``readonly``), class-level values (enum
members re-exported on a class, e.g. ``Logger.WARNING``), nested classes, and per enum its members and
integer values. ``nptype`` is also called for every ``DataType`` member (its result or exception is
part of the real behaviour: 8.5's table used ``np.bool``).
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from typing import Any

SKIP = {"__class__", "__delattr__", "__dir__", "__doc__", "__format__", "__getattribute__", "__init_subclass__",
        "__new__", "__reduce__", "__reduce_ex__", "__repr__", "__setattr__", "__sizeof__", "__str__",
        "__subclasshook__", "__module__", "__dict__", "__weakref__", "_pybind11_conduit_v1_", "__getstate__",
        "__setstate__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__annotations__"}


def split_top(text: str) -> list[str]:
    """Split on commas at bracket depth 0 (types like ``List[Tuple[int, int]]`` and defaults hold commas)."""
    parts, depth, cur, quote = [], 0, "", ""
    for ch in text:
        if quote:
            cur += ch
            quote = "" if ch == quote else quote
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def parse_params(inner: str) -> list[dict[str, Any]]:
    params = []
    kwonly = False
    for p in split_top(inner):
        if p == "*":
            kwonly = True
            continue
        if p == "/":
            for q in params:
                q["posonly"] = True
            continue
        star = "**" if p.startswith("**") else "*" if p.startswith("*") else ""
        body = p[len(star):]
        default = None
        if "=" in body:
            body, default = (s.strip() for s in body.split("=", 1))
        name, _, typ = body.partition(":")
        params.append({"name": name.strip(), "type": typ.strip(), "default": default is not None,
                       "star": star, "kwonly": kwonly, "posonly": False})
    return params


def compact(params: list[dict[str, Any]]) -> list[list[str]]:
    """[name, type, flags]: flags hold "d" (has a default), "k" (keyword-only), "p" (positional-only), "*"/"**"."""
    return [[p["name"], re.sub(r"\btensorrt(?:_bindings)?\.tensorrt\.", "", p["type"]),
             ("d" if p["default"] else "") + ("k" if p["kwonly"] else "") + ("p" if p["posonly"] else "") + p["star"]]
            for p in params]


def signatures(name: str, doc: str | None) -> list[dict[str, Any]]:
    """pybind11 signature lines: ``name(a: T, b: U = x) -> R``; overloads are numbered ``1. name(...)``."""
    out = []
    for line in (doc or "").splitlines():
        m = re.match(rf"^\s*(?:\d+\.\s+)?{re.escape(name)}\((.*)\)\s*(?:->\s*(.*))?$", line)
        if m is None:
            continue
        params = parse_params(m.group(1))
        if [p["star"] for p in params] == ["*", "**"]:  # the overload header line
            continue
        out.append({"params": compact(params), "returns": re.sub(r"\btensorrt(?:_bindings)?\.tensorrt\.", "",
                                                                (m.group(2) or "").strip())})
    return out


def py_signature(fn: Any) -> list[dict[str, Any]]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    kinds = inspect.Parameter
    params = compact([{"name": p.name, "type": "", "default": p.default is not p.empty,
                       "star": "*" if p.kind == kinds.VAR_POSITIONAL else "**" if p.kind == kinds.VAR_KEYWORD else "",
                       "kwonly": p.kind == kinds.KEYWORD_ONLY, "posonly": p.kind == kinds.POSITIONAL_ONLY}
                      for p in sig.parameters.values()])
    return [{"params": params, "returns": ""}]


def is_enum(obj: Any) -> bool:
    return isinstance(obj, type) and isinstance(getattr(obj, "__members__", None), dict)


def value_of(v: Any) -> dict[str, Any]:
    if is_enum(type(v)):
        return {"kind": "value", "enum": type(v).__qualname__, "value": int(v), "name": v.name}
    if isinstance(v, (bool, int, float, str)):
        return {"kind": "value", "type": type(v).__name__, "value": v}
    return {"kind": "value", "type": type(v).__name__}


def function(name: str, fn: Any) -> dict[str, Any]:
    sigs = signatures(name, getattr(fn, "__doc__", None))
    info: dict[str, Any] = {"kind": "function", "signatures": sigs or py_signature(fn)}
    if inspect.isfunction(fn):
        info["python"] = True
    return info


def member(cls: type, name: str) -> dict[str, Any] | None:
    raw = inspect.getattr_static(cls, name)
    if isinstance(raw, property):
        return {"kind": "property", "readonly": True} if raw.fset is None else {"kind": "property"}
    if isinstance(raw, staticmethod):
        return {**function(name, raw.__func__), "kind": "staticmethod"}
    if isinstance(raw, type):
        return {"kind": "class", "ref": raw.__qualname__}
    if callable(raw):
        return {**function(name, raw), "kind": "method"}
    return value_of(raw)


def dump_class(cls: type, classes: dict[str, Any]) -> None:
    qual = cls.__qualname__
    if qual in classes:
        return
    entry: dict[str, Any] = {"bases": [b.__qualname__ for b in cls.__mro__[1:]
                                       if b is not object and b.__name__ != "pybind11_object"]}
    if is_enum(cls):
        entry["kind"] = "enum"
        entry["members"] = {k: int(v) for k, v in cls.__members__.items()}
    else:
        entry["kind"] = "class"
    classes[qual] = entry
    attrs: dict[str, Any] = {}
    for name in dir(cls):
        if name in SKIP or (entry["kind"] == "enum" and (name in entry["members"] or name.startswith("__"))):
            continue
        if name.startswith("__pybind11") or (hasattr(object, name) and name not in ("__init__", "__eq__")):
            continue
        if name in ("__init__", "__eq__", "__del__") and type(inspect.getattr_static(cls, name)).__name__ in (
                "wrapper_descriptor", "method-wrapper"):
            continue  # a C slot, not a pybind11 function: for __init__, "No constructor defined"
        info = member(cls, name)
        if info is None:
            continue
        attrs[name] = info
        raw = inspect.getattr_static(cls, name)
        if isinstance(raw, type):
            dump_class(raw, classes)
    entry["attrs"] = attrs


def main() -> None:
    version, out = sys.argv[1], sys.argv[2]
    import numpy as np
    import tensorrt_bindings as trt

    module: dict[str, Any] = {}
    classes: dict[str, Any] = {}
    for name in dir(trt):
        if name.startswith("__") and name != "__version__":
            continue
        obj = getattr(trt, name)
        if inspect.ismodule(obj):
            module[name] = {"kind": "module"}
        elif isinstance(obj, type):
            module[name] = {"kind": "class", "ref": obj.__qualname__}
            dump_class(obj, classes)
        elif callable(obj):
            module[name] = function(name, obj)
        else:
            module[name] = value_of(obj)
    nptype = {}
    for k, v in trt.DataType.__members__.items():
        try:
            nptype[k] = np.dtype(trt.nptype(v)).name
        except Exception as exc:  # the real behaviour, recorded
            nptype[k] = f"!{type(exc).__name__}"
    surface = {"version": version, "module_version": str(trt.__version__), "numpy": np.__version__,
               "python": ".".join(map(str, sys.version_info[:2])), "module": module, "classes": classes,
               "nptype": nptype}
    with open(out, "w") as f:  # one line per class: small, and diffs show what changed
        f.write("{\n")
        for key in sorted(surface):
            if key == "classes":
                f.write(' "classes": {\n' + ",\n".join(
                    f"  {json.dumps(k)}: {json.dumps(classes[k], sort_keys=True, separators=(',', ':'))}"
                    for k in sorted(classes)) + "\n },\n")
            else:
                f.write(f" {json.dumps(key)}: {json.dumps(surface[key], sort_keys=True, separators=(',', ':'))}"
                        + (",\n" if key != sorted(surface)[-1] else "\n"))
        f.write("}\n")


if __name__ == "__main__":
    main()
