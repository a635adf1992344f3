"""Golden tensors: a few preprocessed inputs and the outputs the bundle's model gave on them at build time.

A bundle may hold ``golden/``: ``index.json`` (:class:`GoldenIndex`: input and output names, per-output
atol/rtol, what produced the reference), ``inputs.npz`` and ``outputs.npz`` (one array per tensor name, the
samples stacked on a new leading axis). ``edgevision run MODEL --check`` and ``edgevision regress`` feed the
inputs through whatever backend is in use here and compare with :mod:`.compare`. A bundle without
``golden/`` (older builds) loads and runs everywhere as before; only the check needs it. The sidecar does
not reference the folder: its place is fixed, and a new sidecar key would make older runtimes (whose schema
forbids unknown keys) refuse new bundles.

Decisions:

- **Inputs are preprocessed tensors** (float32 NCHW, exactly what the model is fed), so a failure points at
  the backend and the model file, not at image decoding or letterboxing.
- **The reference is the variant's own model on ONNX Runtime CPU** on the build machine (for the FP32
  variant the same graph the export stage proved against torch: parity max abs err 4.6e-5 on the
  quickstart). Not the FP32 outputs for every variant: INT8 differs from FP32 by its quantization error
  (last row of the table below: box edges off by up to 6.9 px), a tolerance that wide would let a corrupted
  INT8 weight through;
  against its own outputs the check stays sharp and the tolerance covers only what the device's backend
  computes differently.
- **Tolerances per precision** (:data:`TOLERANCES`), from what this machine can measure of "another backend
  computes the same model": ``python scripts/golden-tolerances runs/quickstart-detect/fp32`` (the quickstart
  detector, 256 px, 4 seeded synthetic scenes, 53,760 output values up to 254 px; onnxruntime 1.32 on the
  2-core dev VM):

  ============================================  =======  =======  ===============================
  two computations of one model                 max abs  max rel  atol needed at rtol 0.01 (99 %)
  ============================================  =======  =======  ===============================
  fp32 ORT, all graph optimisations vs none     4.6e-5   1.8e-5   1.3e-7
  fp32 weights + input rounded to TF32          0.090    0.025    6.5e-4 (3.9e-8)
  fp16 graph vs fp32 graph                      0.078    0.020    8.8e-4 (4.1e-8)
  int8 ORT CPU rewrites vs literal Q/DQ         0        0        0
  int8 integer kernels vs float-simulated Q/DQ  4.4      0.67     4.1 (1.3; at rtol 0.02: 0.94)
  int8 vs fp32 (why the reference is not fp32)  6.9      1.65     6.7 (2.1)
  ============================================  =======  =======  ===============================

  - fp32 ``atol 0.01, rtol 0.01``: not 1e-3: TensorRT runs FP32 convolutions in TF32 by default on Ampere
    and later (Jetson Orin), which rounds like the TF32 row (an underestimate: activations between layers
    are not rounded there), 15x under the atol; two ONNX Runtime paths differ by 1e-7;
  - fp16 ``atol 0.05, rtol 0.02``: two FP16 implementations can each sit the FP16 row's distance from FP32,
    in opposite directions (rtol 0.02 covers twice the row's max rel err);
  - int8 ``atol 1.0, rtol 0.02`` with up to 2 % of the values outside: an integer kernel that rounds a
    requantization the other way flips a value by one step and moves a few box edges by pixels (the
    integer-vs-float row: all elements need atol 3.9 at rtol 0.02, 99 % need 0.94; 0.90 % of the values lie
    outside this tolerance), while the whole quantization error (the int8-vs-fp32 row) puts 2.55 % outside
    and fails. The margin is about 2x each way; an INT8 bundle whose device backend differs more than
    ONNX Runtime's integer and float paths do would fail this check (not measured on TensorRT here).
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .compare import OutputComparison, Tolerance, compare_outputs
from .errors import UserError
from .fsutil import atomic_write_bytes, atomic_write_text
from .validation import validation_line

GOLDEN_DIR = "golden"
INDEX_NAME = "index.json"
INPUTS_NAME = "inputs.npz"
OUTPUTS_NAME = "outputs.npz"
GOLDEN_VERSION = 1
SAMPLES = 2
MAX_SAMPLES = 64

#: per precision of the bundle (module docstring has the measurement)
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-2, rtol=1e-2),
    "fp16": Tolerance(atol=5e-2, rtol=2e-2),
    "int8": Tolerance(atol=1.0, rtol=2e-2, max_mismatch=0.02),
}

__all__ = ["GOLDEN_DIR", "TOLERANCES", "Golden", "GoldenIndex", "check_bundle", "check_golden", "check_lines",
           "load_golden", "make_golden", "write_golden"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class GoldenOutput(_Model):
    name: str = Field(min_length=1)
    atol: float = Field(ge=0)
    rtol: float = Field(ge=0)
    max_mismatch: float = Field(default=0.0, ge=0, le=1, description="fraction of elements allowed outside")


class GoldenIndex(_Model):
    schema_version: int = Field(default=GOLDEN_VERSION, ge=1, le=GOLDEN_VERSION, strict=True)
    samples: int = Field(ge=1, le=MAX_SAMPLES)
    inputs: list[str] = Field(min_length=1)
    outputs: list[GoldenOutput] = Field(min_length=1)
    precision: str
    reference: str = Field(description="what computed the outputs, e.g. 'onnxruntime 1.23.2 CPU, model.onnx'")
    source: str = Field(description="where the inputs came from")


@dataclass
class Golden:
    index: GoldenIndex
    inputs: dict[str, np.ndarray]  # name -> [samples, *input shape]
    outputs: dict[str, np.ndarray]  # name -> [samples, *output shape]

    def tolerances(self) -> dict[str, Tolerance]:
        return {o.name: Tolerance(o.atol, o.rtol, o.max_mismatch) for o in self.index.outputs}


def make_golden(model_path: Path, precision: str, tensors: Sequence[dict[str, np.ndarray]], *, source: str,
                tolerance: Tolerance | None = None) -> Golden:
    """Run ``tensors`` (one feed per sample) through ``model_path`` on ONNX Runtime CPU: the reference."""
    import onnxruntime

    from .backends.onnxruntime import OrtBackend

    if not tensors:
        raise UserError(f"{model_path}: golden tensors need at least one input sample")
    tol = tolerance or TOLERANCES[precision]
    outs: list[dict[str, np.ndarray]] = []
    with OrtBackend(model_path, providers=["CPUExecutionProvider"]) as backend:
        for feed in tensors:
            outs.append(backend.infer(feed))
    names = list(outs[0])
    index = GoldenIndex(
        samples=len(tensors), inputs=list(tensors[0]),
        outputs=[GoldenOutput(name=n, atol=tol.atol, rtol=tol.rtol, max_mismatch=tol.max_mismatch) for n in names],
        precision=precision,
        reference=f"onnxruntime {onnxruntime.__version__} CPU, {model_path.name}", source=source)
    return Golden(index, _stacked(tensors), _stacked(outs))


def _stacked(samples: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.stack([np.asarray(s[k]) for s in samples]) for k in samples[0]}


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def write_golden(bundle_dir: Path, golden: Golden) -> list[str]:
    """Write ``golden/`` into ``bundle_dir`` (each file atomically, the index last); returns the paths."""
    d = bundle_dir / GOLDEN_DIR
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(d / INPUTS_NAME, _npz(golden.inputs))
    atomic_write_bytes(d / OUTPUTS_NAME, _npz(golden.outputs))
    atomic_write_text(d / INDEX_NAME, golden.index.model_dump_json(indent=2) + "\n")
    return [f"{GOLDEN_DIR}/{n}" for n in (INDEX_NAME, INPUTS_NAME, OUTPUTS_NAME)]


def has_golden(bundle_dir: Path) -> bool:
    return (bundle_dir / GOLDEN_DIR / INDEX_NAME).is_file()


def load_golden(bundle_dir: Path) -> Golden | None:
    """The bundle's golden tensors, None when it has none; a damaged ``golden/`` is a one-line ``UserError``."""
    d = bundle_dir / GOLDEN_DIR
    index_path = d / INDEX_NAME
    if not index_path.is_file():
        return None
    try:
        index = GoldenIndex.model_validate(json.loads(index_path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{index_path}: invalid JSON: {exc}") from None
    except ValidationError as exc:
        raise UserError(validation_line(str(index_path), exc, schema=GoldenIndex)) from None
    inputs = _load_npz(d / INPUTS_NAME, index.inputs, index.samples)
    outputs = _load_npz(d / OUTPUTS_NAME, [o.name for o in index.outputs], index.samples)
    return Golden(index, inputs, outputs)


def _load_npz(path: Path, names: list[str], samples: int) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except FileNotFoundError:
        raise UserError(f"{path}: missing (listed by {INDEX_NAME})") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"{path}: not a readable .npz file ({exc})") from None
    missing = [n for n in names if n not in arrays]
    if missing:
        raise UserError(f"{path}: no array for {', '.join(missing)} (listed by {INDEX_NAME})")
    short = [n for n in names if arrays[n].ndim < 1 or arrays[n].shape[0] != samples]
    if short:
        raise UserError(f"{path}: {short[0]} does not hold {samples} samples (shape {list(arrays[short[0]].shape)})")
    return {n: arrays[n] for n in names}


def check_golden(golden: Golden, infer: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
                 ) -> list[OutputComparison]:
    """Feed every golden sample to ``infer`` and compare each output, over all samples at once (the worst
    index's first coordinate is the sample), with the index's per-output tolerances."""
    got: list[dict[str, np.ndarray]] = []
    for i in range(golden.index.samples):
        got.append(infer({k: v[i] for k, v in golden.inputs.items()}))
    names = [o.name for o in golden.index.outputs]
    shared = [n for n in names if all(n in g for g in got)]
    stacked = {n: np.stack([np.asarray(g[n]) for g in got]) for n in shared}
    extra = {n: got[0][n] for n in got[0] if n not in names}
    return compare_outputs({**stacked, **extra}, golden.outputs, golden.tolerances())


def check_bundle(bundle: Any, backend: str = "auto", threads: int = 0) -> tuple[Golden, list[OutputComparison]]:
    """Run ``bundle``'s golden tensors through the backend ``edgevision run`` would use (``choose_backend``):
    (the golden tensors, one comparison per output); ``UserError`` when the bundle has none."""
    from .backends.choice import choose_backend

    golden = load_golden(bundle.root)
    if golden is None:
        raise UserError(f"{bundle.root}: the bundle has no golden tensors ({GOLDEN_DIR}/{INDEX_NAME}); "
                        "rebuild it with an edgevision that writes them (`edgevision build`)")
    choice = choose_backend(bundle, backend)
    opts: dict[str, Any] = {"intra_op_threads": threads} if threads and choice.kind == "onnxruntime" else {}
    with choice.open(**opts) as be:
        return golden, check_golden(golden, be.infer)


def check_lines(bundle: Any, backend: str = "auto", threads: int = 0) -> tuple[int, list[str]]:
    """(exit status 0 pass / 1 fail, lines): one line per output and a verdict; what ``run --check`` prints."""
    golden, results = check_bundle(bundle, backend, threads)
    ok = all(r.ok for r in results)
    lines = [r.line() for r in results]
    lines.append(f"golden check {'passed' if ok else 'FAILED'}: {bundle.root} ({golden.index.samples} sample(s), "
                 f"{golden.index.precision}, reference {golden.index.reference})")
    return (0 if ok else 1), lines
