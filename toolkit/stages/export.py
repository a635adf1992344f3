"""Export stage: torch module -> ONNX (TorchScript exporter), onnxsim simplification, parity check.

The TorchScript-based exporter (``dynamo=False``) is chosen deliberately: it needs no ``onnxscript``,
produces plain opset-17 graphs that TensorRT 8.5's ONNX parser reads, and keeps node names stable for the
later Q/DQ and pruning stages. Parity is checked on fresh random inputs through the runtime's own ONNX
Runtime backend (the deployed path), not through a separate session.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from edgevision.runtime.backends.onnxruntime import OrtBackend
from edgevision.runtime.compare import compare_arrays
from edgevision.runtime.errors import UserError
from edgevision.runtime.fsutil import atomic_write_bytes

INPUT_NAME = "images"
OUTPUT_NAME = "output0"


@dataclass(frozen=True)
class ParityResult:
    max_abs_err: float
    max_rel_err: float
    samples: int
    ok: bool

    def to_dict(self) -> dict[str, float | int | bool]:
        return {"max_abs_err": self.max_abs_err, "max_rel_err": self.max_rel_err,
                "samples": self.samples, "ok": self.ok}


def export_onnx(
    model: nn.Module,
    input_size: int,
    path: Path,
    *,
    opset: int = 17,
    dynamic_batch: bool = False,
    simplify: bool = True,
) -> dict[str, object]:
    """Export ``model`` (eval mode) to ``path``; returns node counts before/after simplification."""
    model = model.eval()
    dummy = torch.zeros(1, 3, input_size, input_size)
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = Path(tmp) / "raw.onnx"
        torch.onnx.export(
            model, (dummy,), str(raw), dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], dynamic_axes=dynamic_axes, do_constant_folding=True,
        )
        proto = onnx.load(str(raw))
    nodes_before = len(proto.graph.node)
    if simplify:
        import onnxsim

        proto, ok = onnxsim.simplify(proto)
        if not ok:
            raise UserError(f"{path}: onnxsim could not validate the simplified model; set export.simplify: false")
    onnx.checker.check_model(proto)
    atomic_write_bytes(path, proto.SerializeToString())
    return {"opset": opset, "dynamic_batch": dynamic_batch, "simplified": simplify,
            "nodes_before": nodes_before, "nodes_after": len(proto.graph.node)}


def check_parity(
    model: nn.Module,
    onnx_path: Path,
    input_size: int,
    *,
    samples: int = 4,
    atol: float = 1e-3,
    rtol: float = 1e-3,
    seed: int = 0,
) -> ParityResult:
    """Compare torch and ONNX Runtime outputs on fresh random images (uniform in [0, 1]) with the runtime's
    comparator (``edgevision.runtime.compare``: ``|ort - torch| <= atol + rtol * |torch|``)."""
    gen = torch.Generator().manual_seed(seed)
    backend = OrtBackend(onnx_path)
    max_abs = max_rel = 0.0
    ok = True
    try:
        for _ in range(samples):
            x = torch.rand(1, 3, input_size, input_size, generator=gen)
            with torch.no_grad():
                ref = model.eval()(x).numpy()
            got = backend.infer({INPUT_NAME: x.numpy()})[OUTPUT_NAME]
            r = compare_arrays(got, ref, atol=atol, rtol=rtol, name=OUTPUT_NAME)
            if r.reason is not None:
                raise UserError(f"{onnx_path}: ONNX output {r.reason} (torch)")
            max_abs = max(max_abs, r.max_abs_err)
            max_rel = max(max_rel, r.max_rel_err)
            ok = ok and r.ok
    finally:
        backend.close()
    return ParityResult(max_abs, max_rel, samples, ok)
