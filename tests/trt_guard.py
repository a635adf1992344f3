"""Checking a hand-written fake ``tensorrt`` against the real surface of one TensorRT release.

``guard(fake_module, "10.3.0")`` wraps a fake (classes, objects, enums) and checks every attribute read,
set and call made through it against NVIDIA's bindings of that release (``tests/trt_surfaces``), the
same checks ``trt_fake.FakeTrt`` makes; ``guarded.mismatches`` lists what the real bindings would
refuse. Use it where a test needs behaviour richer than ``FakeTrt`` scripts (e.g. the CUDA-context fakes).
"""

from __future__ import annotations

from typing import Any

from trt_fake import _IMPLICIT, FakeTrt, _last


class _Guard:
    """Wraps a hand-written fake object (or class, enum, module) and checks every attribute read, set and
    call the code under test makes against the real surface of one release. Values from the fake are
    returned unchanged except TensorRT objects, which come back guarded with the type the real signature
    declares (``deserialize_cuda_engine -> ICudaEngine``)."""

    def __init__(self, inner: Any, qual: str | None, checker: FakeTrt) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_gqual", qual)
        object.__setattr__(self, "_checker", checker)

    def _entry(self) -> dict[str, Any]:
        c: FakeTrt = self._checker
        if self._gqual is None:
            return {"attrs": c._surface["module"]}
        return c._surface["classes"][self._gqual]  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        c: FakeTrt = self._checker
        entry = self._entry()
        where = f"{self._gqual or 'tensorrt'}.{name}"
        if name in entry.get("members", {}):
            return getattr(self._inner, name)
        info = entry.get("attrs", {}).get(name)
        if info is None and not name.startswith("__"):
            c._mismatch(f"{where}: not in TensorRT {c.surface_version}")
            raise AttributeError(where)
        value = getattr(self._inner, name)
        if info is None:
            return value
        if info["kind"] == "class":
            return _Guard(value, info["ref"], c)
        if info["kind"] in ("method", "function", "staticmethod"):
            return _GuardedCall(value, where, info, c, method=info["kind"] == "method")
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        c: FakeTrt = self._checker
        info = self._entry().get("attrs", {}).get(name)
        where = f"{self._gqual or 'tensorrt'}.{name}"
        if info is None or info["kind"] != "property" or info.get("readonly"):
            c._mismatch(f"{where}: cannot be set in TensorRT {c.surface_version}")
            raise AttributeError(where)
        setattr(self._inner, name, value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # constructing a guarded class
        c: FakeTrt = self._checker
        init = self._entry().get("attrs", {}).get("__init__")
        if init is None:
            c._mismatch(f"{self._gqual}: no constructor in TensorRT {c.surface_version}")
            raise TypeError(f"{self._gqual}: No constructor defined!")
        c._check_call(f"{self._gqual}.__init__", init["signatures"], args, kwargs, method=True, typed=False)
        return _Guard(self._inner(*_unwrap(args), **_unwrap(kwargs)), self._gqual, c)

    def __eq__(self, other: object) -> bool:
        return bool(self._inner == _unwrap(other))

    def __hash__(self) -> int:
        return hash(self._inner)

    def __bool__(self) -> bool:
        return bool(self._inner)


def _unwrap(v: Any) -> Any:
    if isinstance(v, _Guard):
        return v._inner
    if isinstance(v, tuple):
        return tuple(_unwrap(x) for x in v)
    if isinstance(v, dict):
        return {k: _unwrap(x) for k, x in v.items()}
    return v


class _GuardedCall:
    def __init__(self, fn: Any, where: str, info: dict[str, Any], checker: FakeTrt, method: bool) -> None:
        self.fn, self.where, self.info, self.checker, self.method = fn, where, info, checker, method

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        c = self.checker
        c._check_call(self.where, self.info["signatures"], args, kwargs, method=self.method, typed=False)
        result = self.fn(*_unwrap(args), **_unwrap(kwargs))
        returns = {_last(s["returns"]).replace("nvinfer1::", "").lstrip("I") for s in self.info["signatures"]}
        if result is None or isinstance(result, (bool, int, float, str, bytes, tuple, list, dict)):
            return result  # plain values (Dims come back as tuples from a hand-written fake)
        for qual, entry in c._surface["classes"].items():
            if entry["kind"] == "class" and qual.lstrip("I") in returns and not _IMPLICIT.match(qual):
                return _Guard(result, qual, c)
        return result


def guard(fake_module: Any, version: str) -> Any:
    """``fake_module`` (a hand-written fake ``tensorrt``) checked against ``version``'s real surface:
    ``guarded.mismatches`` lists what the real bindings would refuse."""
    checker = FakeTrt(version)
    guarded = _Guard(fake_module, None, checker)
    object.__setattr__(guarded, "mismatches", checker.mismatches)
    return guarded
