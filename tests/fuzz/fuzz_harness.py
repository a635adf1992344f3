"""Shared by the fuzz suite: run ``edgevision ARGS`` in-process and check what a user sees on bad input.

``expect_user_error`` asserts the contract every bad input must meet: exit code 2, exactly one line of output
(stderr; nothing on stdout), no traceback, and no file created or removed under the watched directory.
Every call is counted (``CASES``) and the total is printed at the end of the run (``conftest.py``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np

from edgevision.toolkit.cli import main

CASES: Counter[str] = Counter()
SIZE, NC, N = 32, 3, 16


def tree(root: Path) -> dict[str, int]:
    """Every path under ``root`` with its size (directories as -1)."""
    out: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.join(dirpath, d)] = -1
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[p] = os.lstat(p).st_size
    return out


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr); an exception escaping ``main`` (a traceback for a user) propagates."""
    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
        except SystemExit as exc:
            code = exc.code
    return int(code or 0) if not isinstance(code, str) else 1, out.getvalue(), err.getvalue()


def expect_user_error(category: str, args: list[str], watch: Path, *, must_contain: str = "") -> str:
    """Run ``args``; assert exit 2, one line, no traceback, ``watch`` unchanged. Returns the line."""
    before = tree(watch)
    code, out, err = run_cli(args)
    text = out + err
    assert "Traceback" not in text, text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert code == 2, f"exit {code} for {args}: {text}"
    assert len(lines) == 1, f"{len(lines)} lines for {args}: {text}"
    assert not out, f"stdout not empty for {args}: {out}"
    assert must_contain in lines[0], f"{must_contain!r} not in {lines[0]!r}"
    after = tree(watch)
    assert after == before, f"files changed by {args}: {sorted(set(after) ^ set(before))}"
    CASES[category] += 1
    return lines[0]


def make_onnx(path: Path, *, metadata: dict[str, str] | None = None, channels: int = 3, in_dtype: str = "float32",
              out_channels: int = 4 + NC, size: int = SIZE, out_name: str = "output0") -> Path:
    """A tiny yolo-layout model built with onnx.helper: ``images [1,C,S,S] -> out [1, out_channels, N]``."""
    import onnx

    h = onnx.helper
    elem = {"float32": onnx.TensorProto.FLOAT, "uint8": onnx.TensorProto.UINT8}[in_dtype]
    images = h.make_tensor_value_info("images", elem, [1, channels, size, size])
    output = h.make_tensor_value_info(out_name, onnx.TensorProto.FLOAT, [1, out_channels, N])
    head = np.zeros((1, out_channels, N), np.float32)
    inits = [onnx.numpy_helper.from_array(head, "head"), onnx.numpy_helper.from_array(np.zeros(1, np.float32), "z")]
    nodes = [h.make_node("Cast", ["images"], ["f"], to=onnx.TensorProto.FLOAT),
             h.make_node("ReduceMean", ["f"], ["m"], keepdims=0),
             h.make_node("Mul", ["m", "z"], ["m0"]),
             h.make_node("Add", ["head", "m0"], [out_name])]
    model = h.make_model(h.make_graph(nodes, "tiny", [images], [output], inits),
                         opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    for k, v in (metadata or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


def good_sidecar() -> dict[str, object]:
    return {"name": "tiny", "task": "detect", "class_names": ["a", "b", "c"],
            "input": {"name": "images", "shape": [1, 3, SIZE, SIZE]},
            "output": {"layout": "yolo", "names": ["output0"], "num_classes": NC}}


def make_bundle(root: Path, sidecar: object | None = None, **onnx_kw: object) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    make_onnx(root / "model.onnx", **onnx_kw)  # type: ignore[arg-type]
    side = good_sidecar() if sidecar is None else sidecar
    (root / "edgevision.json").write_text(side if isinstance(side, str) else json.dumps(side))
    return root


def fuzz_settings(max_examples: int) -> object:
    """Hypothesis settings of the suite: deterministic (same examples in CI and here), no example database
    written into the checkout, no per-example deadline (the first example pays for imports)."""
    from hypothesis import HealthCheck, settings

    return settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
