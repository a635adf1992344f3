"""TrtBackend's TensorRT calls under the real surface of 8.6.1, 10.3.0, 10.16.1 and 11.4.0.

``tensorrt`` is generated from NVIDIA's bindings of each release (``tests/trt_fake.py``): a name the
release lacks, a wrong arity or keyword (``execute_async_v3(stream_handle=...)``), an int where an enum
is declared, or a set of a read-only property fails the test. What the engine does is scripted here
(``images [-1, 3, 4, 4] -> out = 2 * images``); pycuda is a minimal stand-in (device memory as numpy
bytes). The CUDA-context behaviour is tested in detail elsewhere; this file is about the TensorRT surface.
"""

from __future__ import annotations

import itertools
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from trt_fake import VERSIONS, FakeTrt

from edgevision.runtime.backends.tensorrt import TrtBackend

PROFILE = [(1, 3, 4, 4), (2, 3, 4, 4), (4, 3, 4, 4)]


def _pycuda() -> types.ModuleType:
    cuda = types.ModuleType("pycuda.driver")
    memory: dict[int, np.ndarray] = {}
    addrs = itertools.count(0x1000, 0x1000)

    class Error(RuntimeError):
        pass

    class Buf:
        def __init__(self, n: int) -> None:
            self.addr = next(addrs)
            memory[self.addr] = np.zeros(n, np.uint8)

        def __int__(self) -> int:
            return self.addr

        def free(self) -> None:
            memory.pop(self.addr, None)

    class Ctx:
        def push(self) -> None: ...
        def pop(self) -> None: ...
        def detach(self) -> None: ...
        def synchronize(self) -> None: ...

    class Context:
        @staticmethod
        def pop() -> None: ...

        @staticmethod
        def get_current() -> None:
            return None

        @staticmethod
        def synchronize() -> None: ...

    class Device:
        def __init__(self, index: int) -> None:
            self.index = index

        @staticmethod
        def count() -> int:
            return 1

        def compute_capability(self) -> tuple[int, int]:
            return (8, 6)

        def make_context(self) -> Ctx:
            return Ctx()

        def retain_primary_context(self) -> Ctx:
            return Ctx()

    class Stream:
        handle = 0x5EED

        def synchronize(self) -> None: ...

    def htod(dev: Buf, host: np.ndarray, stream: Any = None) -> None:
        raw = np.ascontiguousarray(host).view(np.uint8).reshape(-1)
        memory[int(dev)][: raw.size] = raw

    def dtoh(host: np.ndarray, dev: Buf, stream: Any = None) -> None:
        raw = host.view(np.uint8).reshape(-1)
        raw[:] = memory[int(dev)][: raw.size]

    ns = {"Error": Error, "Device": Device, "Context": Context, "Stream": Stream, "init": lambda: None,
          "mem_alloc": Buf, "pagelocked_empty": lambda n, dt: np.zeros(n, dt), "memcpy_htod_async": htod,
          "memcpy_dtoh_async": dtoh, "memory": memory}
    for k, v in ns.items():
        setattr(cuda, k, v)
    return cuda


def _script_engine(fake: FakeTrt, cuda: Any) -> None:
    names = ["images", "out"]
    fake.script("Runtime.deserialize_cuda_engine",
                lambda self, data: fake.make("ICudaEngine") if bytes(data) == b"PLAN" else None)
    fake.script("ICudaEngine.num_io_tensors", lambda self: 2)
    fake.script("ICudaEngine.get_tensor_name", lambda self, i: names[i])
    fake.script("ICudaEngine.get_tensor_mode", lambda self, name: (
        fake.TensorIOMode.INPUT if name == "images" else fake.TensorIOMode.OUTPUT))
    fake.script("ICudaEngine.get_tensor_shape", lambda self, name: (-1, 3, 4, 4))
    fake.script("ICudaEngine.get_tensor_dtype", lambda self, name: fake.DataType.FLOAT)
    fake.script("ICudaEngine.get_tensor_profile_shape", lambda self, name, index: list(PROFILE))
    state: dict[str, Any] = {"shape": PROFILE[2], "addr": {}}
    fake.script("ICudaEngine.create_execution_context", lambda self: fake.make("IExecutionContext"))

    def set_input_shape(self: Any, name: str, shape: Any) -> bool:
        state["shape"] = tuple(shape)
        return True

    def execute(self: Any, stream_handle: int) -> bool:
        n = int(np.prod(state["shape"]))
        src = cuda.memory[state["addr"]["images"]].view(np.float32)[:n]
        cuda.memory[state["addr"]["out"]].view(np.float32)[:n] = src * 2
        return True

    fake.script("IExecutionContext.set_input_shape", set_input_shape)
    fake.script("IExecutionContext.get_tensor_shape", lambda self, name: state["shape"])
    fake.script("IExecutionContext.set_tensor_address",
                lambda self, name, addr: state["addr"].__setitem__(name, int(addr)) or True)
    fake.script("IExecutionContext.execute_async_v3", execute)


@pytest.fixture(params=VERSIONS)
def fake(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTrt]:
    trt = FakeTrt(request.param)
    cuda = _pycuda()
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = cuda  # type: ignore[attr-defined]
    _script_engine(trt, cuda)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda)
    yield trt
    assert trt.mismatches == [], f"calls that TensorRT {trt.surface_version} would refuse"


def test_backend_runs_under_each_release(tmp_path: Path, fake: FakeTrt) -> None:
    plan = tmp_path / "m.engine"
    plan.write_bytes(b"PLAN")
    be = TrtBackend(plan)
    try:
        assert [(s.name, s.shape, s.dtype) for s in be.inputs] == [("images", ("batch", 3, 4, 4), "float32")]
        for batch in (1, 3):
            x = np.arange(batch * 48, dtype=np.float32).reshape(batch, 3, 4, 4)
            np.testing.assert_array_equal(be.infer({"images": x})["out"], x * 2)
    finally:
        be.close()
    assert any(name == "IExecutionContext.execute_async_v3" for name, _ in fake.calls)


def test_not_a_plan_is_one_line(tmp_path: Path, fake: FakeTrt) -> None:
    from edgevision.runtime.errors import UserError

    bad = tmp_path / "bad.engine"
    bad.write_bytes(b"\0" * 16)
    with pytest.raises(UserError, match="deserialize"):
        TrtBackend(bad)
