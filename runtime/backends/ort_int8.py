"""Run TensorRT-placed INT8 Q/DQ models fast on ONNX Runtime's CPU provider.

The bundle's INT8 ONNX is written for TensorRT, and two of its properties cost ONNX Runtime's CPU kernels:

1. **Placement.** TensorRT fuses ``conv + bias + activation`` only when no Q/DQ pair sits between the conv
   and its activation, so the quantize stage leaves activations as ``DQ -> Conv -> Sigmoid -> Mul -> Q``.
   ONNX Runtime, in contrast, runs a convolution in int8 (``QLinearConv``) only when a ``QuantizeLinear``
   follows it, and SiLU in int8 only with Q/DQ around ``Sigmoid`` and ``Mul``. The quantize stage therefore
   records the pairs it left out for TensorRT (tensor name + calibrated scale, under the ONNX metadata key
   ``ORT_CPU_QDQ_KEY``) and ``ort_cpu_model`` puts them back in memory: the CPU then runs exactly the model
   the toolkit calibrated, sensitivity-tested and evaluated. TensorRT ignores the metadata.
2. **Signedness.** Activations are *signed* int8 with zero point 0 (TensorRT rejects anything else), while
   the x86 kernels fuse only *unsigned* activations (VNNI is u8 x s8). On x86 every activation
   ``QuantizeLinear -> DequantizeLinear`` pair moves to uint8 / zero point 128 with the same scale, which is
   exact: ``clip(round(x/s), -128, 127) + 128 == clip(round(x/s) + 128, 0, 255)`` and dequantization
   subtracts the 128 back. Weights (int8 initializers feeding a DequantizeLinear) and float biases stay.
   Only where the CPU has VNNI (AVX512-VNNI, AVX-VNNI or AMX): without it, ONNX Runtime's u8 x s8 kernels
   (AVX2 ``vpmaddubsw``) saturate pairwise sums at int16, the overflow ONNX Runtime's quantization docs warn
   of, and the rewrite stops being exact (measured on an AVX2-only AMD EPYC: 875 of 1024 outputs of the
   restored test model differed, by up to 3.7). There the signed pairs run as they are, exactly.

Hand-written because neither onnxruntime nor onnx offers these rewrites (onnxruntime's own s8->u8 pass only
applies after fusion, which is what the signed activations prevent). Needs the ``onnx`` package, imported
only when an INT8 model is opened; without it the model still runs, just unfused.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path
from typing import Any

__all__ = ["ORT_CPU_QDQ_KEY", "needs_u8_activations", "ort_cpu_model"]

_X86 = {"x86_64", "amd64", "i386", "i686", "x86"}


#: ONNX metadata key of the activation Q/DQ pairs a TensorRT-placed model leaves out for ONNX Runtime's CPU:
#: a JSON list of ``[tensor name, scale]`` (signed int8, zero point 0), written by the toolkit's quantize stage.
ORT_CPU_QDQ_KEY = "edgevision.ort_cpu_qdq"


_VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def needs_u8_activations(providers: list[str]) -> bool:
    """True where ONNX Runtime's CPU provider runs the model on an x86 CPU with VNNI (its QDQ fusion wants
    u8, and only VNNI's u8 x s8 kernels compute it without int16 saturation)."""
    return (providers[:1] == ["CPUExecutionProvider"] and platform.machine().lower() in _X86
            and cpu_has_vnni())


@functools.lru_cache(maxsize=1)
def cpu_has_vnni(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU's flags (Linux ``/proc/cpuinfo``) include an int8 dot-product extension; ``False``
    where they cannot be read (the signed path is exact everywhere, only slower)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return not _VNNI_FLAGS.isdisjoint(line.split(":", 1)[-1].split())
    except OSError:
        return False
    return False


def ort_cpu_model(path: Path, *, u8: bool) -> bytes | None:
    """The serialized model with the recorded CPU Q/DQ pairs restored (``ORT_CPU_QDQ_KEY``) and, with
    ``u8``, its int8 activation pairs moved to uint8; ``None`` when nothing changes (plain FP32/FP16, or an
    INT8 model without hints and ``u8`` False) or the ``onnx`` package is not installed."""
    try:
        import onnx
    except ImportError:
        return None
    try:
        model = onnx.load(str(path))
    except Exception:  # a corrupt file: let onnxruntime report it with its own one-line error
        return None
    changed = _restore_pairs(model)
    if u8:
        changed = _to_u8(model) or changed
    return bytes(model.SerializeToString()) if changed else None


def _restore_pairs(model: Any) -> bool:
    """Insert ``T -> QuantizeLinear -> DequantizeLinear`` on each hinted tensor ``T``; every node that read
    ``T`` reads the dequantized copy. Hints naming tensors the graph lacks are ignored."""
    import json

    import numpy as np
    from onnx import helper, numpy_helper

    raw = next((p.value for p in model.metadata_props if p.key == ORT_CPU_QDQ_KEY), None)
    if not raw:
        return False
    graph = model.graph
    produced = {o for n in graph.node for o in n.output}
    readers: dict[str, list[tuple[Any, int]]] = {}  # tensor -> (node, input slot) that read it
    for node in graph.node:
        for j, name in enumerate(node.input):
            readers.setdefault(name, []).append((node, j))
    zero = "edgevision_ort_qdq_zero"
    added = False
    for k, (tensor, scale) in enumerate(json.loads(raw)):
        if tensor not in produced:
            continue
        s_name, q_out, dq_out = f"{tensor}__ort_scale", f"{tensor}__ort_q", f"{tensor}__ort_dq"
        for node, j in readers.get(tensor, []):
            node.input[j] = dq_out
        graph.initializer.append(numpy_helper.from_array(np.array(scale, dtype=np.float32), s_name))
        graph.node.extend([
            helper.make_node("QuantizeLinear", [tensor, s_name, zero], [q_out], name=f"ort_cpu_q_{k}"),
            helper.make_node("DequantizeLinear", [q_out, s_name, zero], [dq_out], name=f"ort_cpu_dq_{k}"),
        ])
        added = True
    if added:
        graph.initializer.append(numpy_helper.from_array(np.array(0, dtype=np.int8), zero))
        _toposort(graph)
    return added


def _toposort(graph: Any) -> None:
    """Order ``graph.node`` so every node follows its producers (ONNX requires it; appended nodes break it)."""
    producer = {o: i for i, n in enumerate(graph.node) for o in n.output}
    nodes = list(graph.node)
    done: set[int] = set()
    order: list[int] = []
    for start in range(len(nodes)):
        stack = [(start, False)]
        while stack:
            i, expanded = stack.pop()
            if i in done:
                continue
            if expanded:
                done.add(i)
                order.append(i)
                continue
            stack.append((i, True))
            stack.extend((producer[x], False) for x in nodes[i].input if x in producer and producer[x] not in done)
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)


def _to_u8(model: Any) -> bool:
    """Move every int8 activation Q -> DQ pair to uint8 / zero point 128 (exact; see the module docstring)."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}

    def int8_zero(name: str) -> bool:
        zp = inits.get(name)
        return (zp is not None and zp.data_type == TensorProto.INT8 and len(zp.dims) == 0
                and int(numpy_helper.to_array(zp)) == 0)

    u8_zero: dict[str, str] = {}
    rewritten: set[str] = set()
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or node.domain not in ("", "ai.onnx") or len(node.input) < 3:
            continue
        out = node.output[0]
        users = consumers.get(out, [])
        if not int8_zero(node.input[2]) or out in graph_outputs or not users:
            continue
        if any(u.op_type != "DequantizeLinear" or len(u.input) < 3 or not int8_zero(u.input[2]) for u in users):
            continue
        for n in (node, *users):
            zp_name = n.input[2]
            if zp_name not in u8_zero:
                u8_zero[zp_name] = f"{zp_name}__u8"
            n.input[2] = u8_zero[zp_name]
        rewritten.add(out)
    if not rewritten:
        return False
    for new in u8_zero.values():
        graph.initializer.append(numpy_helper.from_array(np.array(128, dtype=np.uint8), new))
    kept = [vi for vi in graph.value_info if vi.name not in rewritten]  # their element type changed
    del graph.value_info[:]
    graph.value_info.extend(kept)
    used = {name for n in graph.node for name in n.input}
    unused = [i for i in graph.initializer if i.name in u8_zero and i.name not in used]  # old int8 zero points
    for init in unused:
        graph.initializer.remove(init)
    return True
