"""Stand-ins for ``tensorrt`` and ``pycuda.driver`` that the TensorRT backend's tests install in ``sys.modules``.

Hand-written, small and only as faithful as the backend needs: the names and call shapes the backend uses
(TensorRT 8.5+ name-based I/O; pycuda's ``Device`` / ``Context`` / ``mem_alloc`` / ``memcpy_*_async``), and the
one pycuda behaviour the context tests are about, copied from ``context::detach`` in pycuda's ``cuda.hpp``:
each thread has its own context stack; ``detach`` destroys a context that is current in the calling thread,
pushes + destroys one created by the calling thread, and otherwise does nothing (the "leaked out-of-thread
context"). Every push / pop / detach is recorded with its thread so tests can assert who did what.

A "plan" here is ``b"FAKEPLAN" + JSON``: ``{"inputs": {name: {"shape", "profile"?}}, "outputs": {name:
{"like": input} | {"shape"}}, "scale": s}``; an output ``like`` an input is that input times ``scale``.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest


class CudaError(RuntimeError):
    pass


class FakeCuda(types.ModuleType):
    """``pycuda.driver``: contexts with per-thread stacks, device memory as numpy byte arrays."""

    Error = CudaError

    def __init__(self, sm: tuple[int, int] = (8, 7), gpus: int = 1) -> None:
        super().__init__("pycuda.driver")
        self.sm, self.gpus = sm, gpus
        self.events: list[tuple[int, str, int]] = []  # (thread id, what, context id)
        self.local = threading.local()
        self.contexts: list[FakeContext] = []
        self.memory: dict[int, np.ndarray] = {}
        self._addr = itertools.count(0x1000, 0x1000)
        cuda = self

        class Device:
            def __init__(self, index: int) -> None:
                self.index = index

            @staticmethod
            def count() -> int:
                return cuda.gpus

            def compute_capability(self) -> tuple[int, int]:
                return cuda.sm

            def make_context(self) -> FakeContext:
                ctx = FakeContext(cuda, len(cuda.contexts))
                cuda.contexts.append(ctx)
                cuda.stack().append(ctx)
                cuda.record("make", ctx)
                return ctx

        class Context:
            @staticmethod
            def pop() -> None:
                if not cuda.stack():
                    raise CudaError("cannot pop: no current context")
                cuda.record("pop", cuda.stack().pop())

            @staticmethod
            def get_current() -> FakeContext | None:
                return cuda.current()

        class Stream:
            handle = 0x5EED

            def synchronize(self) -> None:
                cuda.need_context("Stream.synchronize")

        self.Device, self.Context, self.Stream = Device, Context, Stream

    # -- bookkeeping ---------------------------------------------------------------------------------
    def stack(self) -> list[FakeContext]:
        if not hasattr(self.local, "stack"):
            self.local.stack = []
        return self.local.stack  # type: ignore[no-any-return]

    def current(self) -> FakeContext | None:
        s = self.stack()
        return s[-1] if s else None

    def record(self, what: str, ctx: FakeContext) -> None:
        self.events.append((threading.get_ident(), what, ctx.id))

    def need_context(self, what: str) -> FakeContext:
        ctx = self.current()
        if ctx is None or ctx.destroyed:
            raise CudaError(f"{what}: no current context in this thread")
        return ctx

    # -- the driver API the backend calls --------------------------------------------------------------
    def init(self) -> None:
        pass

    def pagelocked_empty(self, size: int, dtype: Any) -> np.ndarray:
        return np.zeros(size, dtype)

    def mem_alloc(self, nbytes: int) -> FakeDevBuf:
        return FakeDevBuf(self, next(self._addr), nbytes, self.need_context("mem_alloc"))

    def memcpy_htod_async(self, dev: FakeDevBuf, host: np.ndarray, stream: Any = None) -> None:
        dev.check("memcpy_htod_async")
        raw = np.ascontiguousarray(host).view(np.uint8).reshape(-1)
        self.memory[int(dev)][: raw.size] = raw

    def memcpy_dtoh_async(self, host: np.ndarray, dev: FakeDevBuf, stream: Any = None) -> None:
        dev.check("memcpy_dtoh_async")
        raw = host.view(np.uint8).reshape(-1)
        raw[:] = self.memory[int(dev)][: raw.size]


class FakeContext:
    def __init__(self, cuda: FakeCuda, ident: int) -> None:
        self.cuda, self.id = cuda, ident
        self.creator = threading.get_ident()
        self.destroyed = False
        self.leaked = False

    def push(self) -> None:
        if self.destroyed:
            raise CudaError("push of a destroyed context")
        self.cuda.stack().append(self)
        self.cuda.record("push", self)

    def detach(self) -> None:  # pycuda's context::detach, branch for branch
        stack = self.cuda.stack()
        if stack and stack[-1] is self:
            self.destroyed = True
            stack.pop()
            self.cuda.record("detach-destroyed", self)
        elif self.creator == threading.get_ident():
            self.destroyed = True
            self.cuda.record("detach-destroyed", self)
        else:
            self.leaked = True
            self.cuda.record("detach-leaked", self)


class FakeDevBuf:
    def __init__(self, cuda: FakeCuda, addr: int, nbytes: int, ctx: FakeContext) -> None:
        self.cuda, self.addr, self.ctx = cuda, addr, ctx
        cuda.memory[addr] = np.zeros(nbytes, np.uint8)

    def __int__(self) -> int:
        return self.addr

    def check(self, what: str) -> None:
        if self.cuda.need_context(what) is not self.ctx:
            raise CudaError(f"{what}: buffer of context {self.ctx.id} used under another context")

    def free(self) -> None:
        self.check("free")
        del self.cuda.memory[self.addr]


class _Enum:
    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name = kind, name

    def __repr__(self) -> str:
        return f"{self.kind}.{self.name}"

    __str__ = __repr__


class FakeTrt(types.ModuleType):
    """``tensorrt``: Logger, Runtime, ICudaEngine and IExecutionContext over ``FakeCuda`` memory."""

    def __init__(self, cuda: FakeCuda, version: str = "8.5.2.2", exec_delay: float = 0.0) -> None:
        super().__init__("tensorrt")
        self.__version__ = version
        self.cuda, self.exec_delay = cuda, exec_delay
        self.deserialized: list[dict[str, Any]] = []  # one record per deserialize_cuda_engine call
        self.executions: list[tuple[int, int]] = []  # (thread id, context id current at execute)
        self.running = 0
        self.max_running = 0
        self._lock = threading.Lock()
        self.TensorIOMode = types.SimpleNamespace(INPUT=_Enum("TensorIOMode", "INPUT"),
                                                  OUTPUT=_Enum("TensorIOMode", "OUTPUT"))
        self.DataType = types.SimpleNamespace(**{n: _Enum("DataType", n) for n in ("FLOAT", "HALF", "INT8",
                                                                                    "INT32", "BOOL", "BF16")})
        trt = self

        class Logger:
            WARNING = 2

            def __init__(self, level: int = 2) -> None:
                self.level = level

        class Runtime:
            def __init__(self, logger: Any) -> None:
                self.engine_host_code_allowed = False

            def deserialize_cuda_engine(self, data: bytes) -> FakeEngine | None:
                ctx = trt.cuda.need_context("deserialize_cuda_engine")
                trt.deserialized.append({"host_code_allowed": self.engine_host_code_allowed, "context": ctx.id})
                if not data.startswith(b"FAKEPLAN"):
                    return None
                return FakeEngine(trt, json.loads(data[8:]))

        self.Logger, self.Runtime = Logger, Runtime

    def nptype(self, dt: Any) -> Any:
        # TensorRT 8.5.x's table names np.bool, which numpy >= 1.24 removed
        raise AttributeError("module 'numpy' has no attribute 'bool'")


class FakeEngine:
    def __init__(self, trt: FakeTrt, spec: dict[str, Any]) -> None:
        self.trt, self.spec = trt, spec
        self.names = list(spec["inputs"]) + list(spec["outputs"])
        self.num_io_tensors = len(self.names)

    def get_tensor_name(self, i: int) -> str:
        return self.names[i]

    def get_tensor_mode(self, name: str) -> Any:
        return self.trt.TensorIOMode.INPUT if name in self.spec["inputs"] else self.trt.TensorIOMode.OUTPUT

    def _t(self, name: str) -> dict[str, Any]:
        return dict(self.spec["inputs"].get(name) or self.spec["outputs"][name])

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        t = self._t(name)
        return tuple(t["shape"] if "shape" in t else self._t(t["like"])["shape"])

    def get_tensor_dtype(self, name: str) -> Any:
        return getattr(self.trt.DataType, self._t(name).get("dtype", "FLOAT"))

    def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple[int, ...]]:
        return [tuple(s) for s in self._t(name)["profile"]]

    def create_execution_context(self) -> FakeExecContext:
        return FakeExecContext(self)


class FakeExecContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: Any) -> bool:
        self.shapes[name] = tuple(int(d) for d in shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        t = self.engine._t(name)
        if "like" in t:
            return self.shapes.get(t["like"], self.engine.get_tensor_shape(t["like"]))
        return self.shapes.get(name, tuple(t["shape"]))

    def set_tensor_address(self, name: str, addr: int) -> bool:
        self.addresses[name] = addr
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        trt, cuda = self.engine.trt, self.engine.trt.cuda
        ctx = cuda.need_context("execute_async_v3")
        with trt._lock:
            trt.running += 1
            trt.max_running = max(trt.max_running, trt.running)
        try:
            trt.executions.append((threading.get_ident(), ctx.id))
            time.sleep(trt.exec_delay)
            scale = float(self.engine.spec.get("scale", 1.0))
            for name, t in self.engine.spec["outputs"].items():
                if "like" not in t:
                    continue
                src = t["like"]
                n = int(np.prod(self.get_tensor_shape(src)))
                x = cuda.memory[self.addresses[src]].view(np.float32)[:n]
                cuda.memory[self.addresses[name]].view(np.float32)[:n] = x * scale
        finally:
            with trt._lock:
                trt.running -= 1
        return True


def plan_bytes(scale: float = 2.0, batch: tuple[int, int] = (1, 4), dtype: str = "FLOAT",
               yolo: bool = False) -> bytes:
    """A fake plan: images [-1, 3, 4, 4] (batch within ``batch``) -> out = images * scale; ``yolo``: a static
    images [1, 3, 4, 4] -> output0 [1, 5, 3] of zeros (a one-class head with no detections)."""
    lo, hi = batch
    spec: dict[str, Any] = {
        "inputs": {"images": {"shape": [-1, 3, 4, 4], "dtype": dtype,
                              "profile": [[lo, 3, 4, 4], [lo, 3, 4, 4], [hi, 3, 4, 4]]}},
        "outputs": {"out": {"like": "images", "dtype": dtype}}, "scale": scale}
    if yolo:
        spec = {"inputs": {"images": {"shape": [1, 3, 4, 4]}}, "outputs": {"output0": {"shape": [1, 5, 3]}}}
    return b"FAKEPLAN" + json.dumps(spec).encode()


@contextmanager
def installed(monkeypatch: pytest.MonkeyPatch, version: str = "8.5.2.2", sm: tuple[int, int] = (8, 7),
              exec_delay: float = 0.0) -> Iterator[tuple[FakeTrt, FakeCuda]]:
    """Install the fakes as ``tensorrt``, ``pycuda``, ``pycuda.driver`` and a ``pycuda.compiler`` that cannot
    compile (so the GPU letterbox kernel is unavailable and predictors preprocess on the CPU) for the block."""
    cuda = FakeCuda(sm)
    trt = FakeTrt(cuda, version, exec_delay)
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = cuda  # type: ignore[attr-defined]
    compiler = types.ModuleType("pycuda.compiler")

    def source_module(*args: Any, **kwargs: Any) -> Any:  # as on a device whose PATH lacks nvcc
        raise RuntimeError("nvcc compilation failed: nvcc not found")

    compiler.SourceModule = source_module  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "pycuda.compiler", compiler)
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", trt)
    monkeypatch.setitem(__import__("sys").modules, "pycuda", pycuda)
    monkeypatch.setitem(__import__("sys").modules, "pycuda.driver", cuda)
    yield trt, cuda
