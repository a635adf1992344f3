"""Run by ``scripts/trt-surface typecheck``: mypy the TensorRT adapter against one release's stubs.

The adapter keeps ``trt`` typed ``Any`` (TensorRT is imported lazily and is absent where the tests run),
so mypy alone checks nothing about it. This makes a throwaway copy of each file where ``trt.X`` is the
stub module ``tensorrt.X`` (stubs from pybind11-stubgen, ``scripts/trt-surface stubs``) and the
parameters that hold TensorRT objects (``builder``, ``config``, ``engine``, ``context``, ...) are
annotated with their TensorRT classes (the ``trt`` parameters stay, unused), then runs mypy with the
stubs on ``MYPYPATH``.

Names that only exist in some releases and are reached only behind a version gate
(``EXPLICIT_BATCH`` before 10, ``STRONGLY_TYPED`` from 9) show up as errors in the releases that lack
them; ``GATED`` lists those, and any other error fails.

    python scripts/trt_surface_mypy.py STUB_DIR FILE...
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ANNOTATE = {
    "builder": "tensorrt.Builder", "config": "tensorrt.IBuilderConfig", "network": "tensorrt.INetworkDefinition",
    "parser": "tensorrt.OnnxParser", "engine": "tensorrt.ICudaEngine", "context": "tensorrt.IExecutionContext",
    "dt": "tensorrt.DataType",
}
# Reached only where trt_version's gate says the release has it (tests/runtime/test_trt_surface.py), and what
# the generated stubs cannot say about pybind11: Dims is a sequence (__len__/__getitem__) and converts from
# tuples, IHostMemory is a buffer, and close() drops its TensorRT objects by setting them to None.
GATED = [
    r'"type\[NetworkDefinitionCreationFlag\]" has no attribute "EXPLICIT_BATCH"',
    r'"type\[NetworkDefinitionCreationFlag\]" has no attribute "STRONGLY_TYPED"',
    r'"Dims" has no attribute "__iter__"', r'incompatible type "Dims"', r'expected "Dims"', r'expected "Buffer"',
    r'Need type annotation for "profile"', r'Incompatible types in assignment \(expression has type "None"',
]


def rewrite(src: str) -> str:
    out = re.sub(r"\btrt\.(?=[A-Za-z_])", "tensorrt.", src)
    for name, typ in ANNOTATE.items():
        out = re.sub(rf"\b{name}: Any\b", f"{name}: {typ}", out)
    return out.replace("from __future__ import annotations\n", "from __future__ import annotations\nimport tensorrt\n",
                       1)


def main() -> int:
    stub_dir, files = Path(sys.argv[1]).resolve(), sys.argv[2:]
    if not (stub_dir / "tensorrt" / "__init__.pyi").is_file():
        raise SystemExit(f"{stub_dir}: no tensorrt stubs (run scripts/trt-surface stubs)")
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        pkg = Path(tmp) / "edgevision"
        for sub in ("runtime", "toolkit"):
            (pkg / sub).parent.mkdir(parents=True, exist_ok=True)
            (pkg / sub).symlink_to(root / sub)
        checked = []
        for f in files:
            path = root / f
            if not path.is_file():
                continue
            copy = Path(tmp) / "adapter" / ("checked_" + path.name)  # not tensorrt.py: that would shadow the stubs
            copy.parent.mkdir(exist_ok=True)
            package = ["edgevision", *Path(f).parent.parts]

            def absolute(m: re.Match[str], package: list[str] = package) -> str:
                base = package[: len(package) - len(m.group(1)) + 1]
                return "from " + ".".join(base + ([m.group(2)] if m.group(2) else [])) + " import"

            text = re.sub(r"from (\.+)(\w*) import", absolute, rewrite(path.read_text()))
            copy.write_text(text)
            checked.append(str(copy))
        env = {"MYPYPATH": f"{stub_dir}:{tmp}", "PATH": "/usr/bin:/bin"}
        cmd = [sys.executable, "-m", "mypy", "--ignore-missing-imports", "--no-error-summary", "--hide-error-context",
               "--follow-imports=silent", "--python-version", "3.10", *checked]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp)
        if os.environ.get("TRT_SURFACE_DEBUG"):
            print(res.stdout, res.stderr)
        errors = [line.replace(tmp + "/", "").replace("adapter/checked_", "") for line in res.stdout.splitlines()
                  if ": error:" in line and line.replace(tmp + "/", "").startswith("adapter/")]  # not the stubs'
        bad = [e for e in errors if not any(re.search(g, e) for g in GATED)]
        print(f"{stub_dir.name}: {len(checked)} files, {len(bad)} errors ({len(errors) - len(bad)} behind version "
              "gates or pybind11 conversions the stubs cannot express)")
        for e in bad:
            print("  " + e)
        return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
