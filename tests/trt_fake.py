"""A fake ``tensorrt`` module generated from the real surface of one TensorRT release.

``tests/trt_surfaces/<version>.json`` is what NVIDIA's own pybind11 bindings expose in that release
(dumped by ``scripts/trt-surface``): classes, methods with their signatures, properties (read-only or
not), enums with their real values. ``FakeTrt(version)`` turns it into a module where

- a name the release does not have is absent (``AttributeError``, as the real module raises);
- enum members carry the real values and compare only with members of the same enum;
- every call is checked against the pybind11 signatures (arity, keyword names, and enum / TensorRT
  class arguments against the declared type), a property the release makes read-only cannot be set,
  and an attribute the class does not have cannot be set (pybind11 objects take no new attributes);
- classes without a pybind11 constructor cannot be instantiated from Python.

Each violation is appended to ``fake.mismatches`` and raised as the real bindings would (TypeError or
AttributeError), so code that swallows the exception is still caught by ``assert not fake.mismatches``.

Behaviour is not in the surface: what a call returns is scripted by the test with
``fake.script("Builder.build_serialized_network", fn)`` (``fn(self, *args)``); an unscripted call
raises ``NotScripted``. ``fake.make("IBuilderConfig", prop=value)`` creates an instance, as TensorRT
would hand one out. ``fake.calls`` logs every call and property set as ``("Class.name", args)``.
"""

from __future__ import annotations

import functools
import json
import re
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

SURFACES = Path(__file__).parent / "trt_surfaces"
# 8.6.1: the last 8.x bindings wheel (JetPack 5.1 ships 8.5.2: same surface for what edgevision calls);
# 10.3.0: JetPack 6; the newest 10.x and 11.x in the registry when the surfaces were dumped.
VERSIONS = ("8.6.1", "10.3.0", "10.16.1.11", "11.4.0.106")
# pybind11 converts these from Python values implicitly (tuples -> Dims, numpy -> Weights), so their
# arguments are not type-checked; IHostMemory is a buffer (py::buffer_protocol in NVIDIA's bindings).
_IMPLICIT = re.compile(r"^(Dims\w*|Weights|Permutation)$")
BUFFER_CLASSES = ("IHostMemory",)


class NotScripted(RuntimeError):
    """The code called something the test did not script."""


@functools.lru_cache(maxsize=None)  # noqa: UP033 (the runtime tests also run on Python 3.8)
def load_surface(version: str) -> dict[str, Any]:
    return json.loads((SURFACES / f"{version}.json").read_text())  # type: ignore[no-any-return]


class FakeEnumMember:
    def __init__(self, enum: type, name: str, value: int) -> None:
        self._enum, self.name, self.value = enum, name, value

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FakeEnumMember) and other._enum is self._enum and other.value == self.value

    def __hash__(self) -> int:
        return hash((self._enum.__name__, self.value))

    def __repr__(self) -> str:
        return f"<{self._enum.__name__}.{self.name}: {self.value}>"

    def __str__(self) -> str:
        return f"{self._enum.__name__}.{self.name}"


class FakeObject:
    """Base of every generated class; ``_fake`` is the owning ``FakeTrt``, ``_qual`` the class qualname."""

    _fake: FakeTrt
    _qual: str

    def __setattr__(self, key: str, value: Any) -> None:
        if key.startswith("_") or isinstance(getattr(type(self), key, None), property):
            object.__setattr__(self, key, value)
            return
        self._fake._mismatch(f"{self._qual}.{key}: no such attribute in TensorRT {self._fake.__version__}")
        raise AttributeError(f"'{self._qual}' object has no attribute '{key}'")

    def __getattr__(self, key: str) -> Any:  # only reached for names the class does not have
        if not key.startswith("_"):
            self._fake.absent.append(f"{self._qual}.{key}")
        raise AttributeError(f"'{self._qual}' object has no attribute '{key}'")


def _last(type_text: str) -> str:
    return type_text.replace("tensorrt.", "").strip()


def _bind(params: list[list[str]], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | str:
    """Bind like pybind11 does; a dict name -> value, or why the call does not fit this signature."""
    star = any(p[2].endswith("*") and not p[2].endswith("**") for p in params)
    dstar = any(p[2].endswith("**") for p in params)
    plain = [p for p in params if "*" not in p[2]]
    positional = [p for p in plain if "k" not in p[2]]
    if len(args) > len(positional) and not star:
        return f"takes {len(positional)} positional arguments, {len(args)} given"
    bound = {p[0]: a for p, a in zip(positional, args)}  # noqa: B905 (3.8: no strict=)
    for k, v in kwargs.items():
        match = [p for p in plain if p[0] == k and "p" not in p[2] and not re.fullmatch(r"arg\d+", k)]
        if k in bound:
            return f"got multiple values for {k!r}"
        if match:
            bound[k] = v
        elif not dstar:
            return f"unexpected keyword argument {k!r}"
    missing = [p[0] for p in plain if "d" not in p[2] and p[0] not in bound]
    if missing:
        return f"missing arguments {missing}"
    return bound


class FakeTrt(types.ModuleType):
    """The fake ``tensorrt`` for one version; install with ``monkeypatch.setitem(sys.modules, "tensorrt", fake)``."""

    def __init__(self, version: str) -> None:
        super().__init__("tensorrt")
        surface = load_surface(version)
        self.__version__ = surface["module_version"]
        self.surface_version = version
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.mismatches: list[str] = []
        self.absent: list[str] = []
        self._handlers: dict[str, Callable[..., Any]] = {}
        self._classes: dict[str, type] = {}
        self._enums: dict[str, type] = {}
        self._surface = surface
        for qual, entry in surface["classes"].items():
            if entry["kind"] == "enum":
                self._enums[qual] = self._make_enum(qual, entry)
        for qual, entry in surface["classes"].items():
            if entry["kind"] == "class":
                self._class(qual)
        for qual, entry in surface["classes"].items():  # class-level values and nested classes
            cls = self._enums.get(qual) or self._classes[qual]
            for name, info in entry.get("attrs", {}).items():
                if info["kind"] == "value" and "enum" in info:
                    type.__setattr__(cls, name, getattr(self._enums[info["enum"]], info["name"]))
                elif info["kind"] == "class":
                    type.__setattr__(cls, name, self._type(info["ref"]))
        for name, info in surface["module"].items():
            if info["kind"] == "class":
                setattr(self, name, self._type(info["ref"]))
            elif info["kind"] == "value" and "enum" in info:
                setattr(self, name, getattr(self._enums[info["enum"]], info["name"]))
            elif info["kind"] == "value" and "value" in info and name != "__version__":
                setattr(self, name, info["value"])
            elif info["kind"] == "function":
                setattr(self, name, self._function(name, info))
        self.nptype = self._nptype  # the real table, with its real exceptions

    # ---- what tests use ------------------------------------------------------------------------------
    def script(self, key: str, fn: Callable[..., Any]) -> None:
        """``key`` is "Class.member" (public class name); ``fn(self, *args, **kwargs)`` is its behaviour.
        A property's handler is ``fn(self)``."""
        cls_name, _, member = key.rpartition(".")
        qual = self._qualname(cls_name)
        entry = self._surface["classes"][qual]
        if member not in entry.get("attrs", {}):
            raise AssertionError(f"scripting {key}: TensorRT {self.surface_version} has no {qual}.{member}")
        self._handlers[f"{qual}.{member}"] = fn

    def make(self, cls_name: str, data: bytes | None = None, **values: Any) -> Any:
        """An instance as TensorRT hands one out (no constructor call); ``values`` preset properties."""
        cls = self._type(self._qualname(cls_name))
        obj = bytes.__new__(cls, data or b"") if issubclass(cls, bytes) else object.__new__(cls)
        object.__setattr__(obj, "_values", {})
        for k, v in values.items():
            if k not in self._surface["classes"][cls._qual]["attrs"]:
                raise AssertionError(f"{cls_name} has no {k} in TensorRT {self.surface_version}")
            obj._values[k] = v
        return obj

    def has(self, key: str) -> bool:
        """Whether "Class.member" or "Class" or "Enum.MEMBER" exists in this version."""
        cls_name, _, member = key.partition(".")
        if cls_name not in self._surface["module"]:
            return False
        if not member:
            return True
        entry = self._surface["classes"][self._qualname(cls_name)]
        return member in entry.get("attrs", {}) or member in entry.get("members", {})

    # ---- generation ----------------------------------------------------------------------------------
    def _mismatch(self, message: str) -> None:
        self.mismatches.append(message)

    def _qualname(self, public: str) -> str:
        info = self._surface["module"].get(public)
        if info and info.get("kind") == "class":
            return str(info["ref"])
        if public in self._surface["classes"]:
            return public
        raise AssertionError(f"TensorRT {self.surface_version} has no class {public}")

    def _type(self, qual: str) -> type:
        return self._enums.get(qual) or self._classes[qual]

    def _make_enum(self, qual: str, entry: dict[str, Any]) -> type:
        enum = type(qual.rsplit(".", 1)[-1], (), {"_qual": qual})
        members = {}
        for name, value in entry["members"].items():
            members[name] = FakeEnumMember(enum, name, value)
            setattr(enum, name, members[name])
        enum.__members__ = members  # type: ignore[attr-defined]
        return enum

    def _check_arg(self, where: str, type_text: str, value: Any) -> str | None:
        t = _last(type_text)
        if value is None or not t or _IMPLICIT.match(t.rsplit(".", 1)[-1]):
            return None
        if t in self._enums:
            if not (isinstance(value, FakeEnumMember) and value._enum is self._enums[t]):
                return f"{where}: expects {t}, got {value!r}"
        elif t in self._classes and not isinstance(value, self._classes[t]):
            return f"{where}: expects {t}, got {type(value).__name__}"
        return None

    def _check_call(self, where: str, sigs: list[dict[str, Any]], args: tuple[Any, ...], kwargs: dict[str, Any],
                    method: bool, typed: bool = True) -> None:
        if not sigs:
            return
        problems = []
        for sig in sigs:
            params = sig["params"][1:] if method and sig["params"] else sig["params"]
            bound = _bind(params, args, kwargs)
            if isinstance(bound, str):
                problems.append(bound)
                continue
            types_ = {p[0]: p[1] for p in params}
            bad = [m for k, v in bound.items()
                   if typed and (m := self._check_arg(f"{where}({k})", types_.get(k, ""), v))]
            if not bad:
                return
            problems.extend(bad)
        msg = f"{where}: no TensorRT {self.surface_version} signature fits: " + "; ".join(problems)
        self._mismatch(msg)
        raise TypeError(msg)

    def _handler(self, qual: str, member: str) -> Callable[..., Any] | None:
        entry = self._surface["classes"][qual]
        for q in (qual, *entry.get("bases", [])):
            fn = self._handlers.get(f"{q}.{member}")
            if fn is not None:
                return fn
        return None

    def _method(self, qual: str, name: str, info: dict[str, Any]) -> Callable[..., Any]:
        fake = self

        def method(obj: Any, *args: Any, **kwargs: Any) -> Any:
            fake._check_call(f"{qual}.{name}", info["signatures"], args, kwargs, method=True)
            fake.calls.append((f"{qual}.{name}", args + tuple(kwargs.items())))
            fn = fake._handler(qual, name)
            if fn is None:
                if name == "__init__":
                    return None
                if name in ("__enter__", "__exit__"):
                    return obj if name == "__enter__" else None
                raise NotScripted(f"{qual}.{name} was called but the test did not script it")
            return fn(obj, *args, **kwargs)

        method.__name__ = name
        return method

    def _property(self, qual: str, name: str, readonly: bool) -> property:
        fake = self

        def get(obj: Any) -> Any:
            if name in obj._values:
                return obj._values[name]
            fn = fake._handler(qual, name)
            if fn is None:
                raise NotScripted(f"{qual}.{name} was read but the test did not set or script it")
            return fn(obj)

        def set_(obj: Any, value: Any) -> None:
            if readonly:
                fake._mismatch(f"{qual}.{name} is read-only in TensorRT {fake.surface_version}")
                raise AttributeError(f"can't set attribute {name!r}")
            fake.calls.append((f"{qual}.{name}=", (value,)))
            obj._values[name] = value

        return property(get, set_)

    def _class(self, qual: str) -> type:
        if qual not in self._classes:
            entry = self._surface["classes"][qual]
            parent = self._class(entry["bases"][0]) if entry["bases"] else None
            self._classes[qual] = self._make_class(qual, entry, parent)
        return self._classes[qual]

    def _make_class(self, qual: str, entry: dict[str, Any], parent: type | None) -> type:
        fake = self
        attrs = entry.get("attrs", {})
        ns: dict[str, Any] = {"_fake": self, "_qual": qual}
        for name, info in attrs.items():
            if name == "__del__":
                continue
            if info["kind"] == "method":
                ns[name] = self._method(qual, name, info)
            elif info["kind"] == "staticmethod":
                ns[name] = staticmethod(self._function(f"{qual}.{name}", info))
            elif info["kind"] == "property":
                ns[name] = self._property(qual, name, bool(info.get("readonly")))
        init = ns.pop("__init__", None)

        def __init__(obj: Any, *args: Any, **kwargs: Any) -> None:
            object.__setattr__(obj, "_values", {})
            if init is None:
                fake._mismatch(f"{qual}: no constructor in TensorRT {fake.surface_version}")
                raise TypeError(f"{qual}: No constructor defined!")
            init(obj, *args, **kwargs)

        ns["__init__"] = __init__
        bases: tuple[type, ...] = (bytes, FakeObject) if qual in BUFFER_CLASSES else (parent or FakeObject,)
        if qual in BUFFER_CLASSES:
            ns["__new__"] = lambda cls, *a, **k: bytes.__new__(cls, b"")
        return type(qual.rsplit(".", 1)[-1], bases, ns)

    def _function(self, name: str, info: dict[str, Any]) -> Callable[..., Any]:
        fake = self

        def function(*args: Any, **kwargs: Any) -> Any:
            fake._check_call(name, info["signatures"], args, kwargs, method=False)
            fake.calls.append((name, args))
            fn = fake._handlers.get(name)
            if fn is None:
                raise NotScripted(f"{name} was called but the test did not script it")
            return fn(*args, **kwargs)

        return function

    def _nptype(self, dt: Any) -> Any:
        import numpy as np

        if not (isinstance(dt, FakeEnumMember) and dt._enum is self._enums["DataType"]):
            self._mismatch(f"nptype: expects a DataType, got {dt!r}")
        result = self._surface["nptype"][dt.name]
        if result.startswith("!"):
            raise {"TypeError": TypeError, "AttributeError": AttributeError}.get(result[1:], RuntimeError)(
                "Could not resolve TensorRT datatype to an equivalent numpy datatype.")
        return np.dtype(result).type

