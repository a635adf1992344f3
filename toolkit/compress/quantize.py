"""INT8 post-training quantization to an explicit, TensorRT-style Q/DQ ONNX (onnxruntime.quantization).

``onnxruntime.quantization.quantize_static`` does the calibration (minmax / entropy / percentile) and the
Q/DQ insertion; this module only chooses its settings so that the result is what TensorRT 8.5 -> 11 builds:
symmetric INT8 everywhere (zero points 0), per-channel weights on axis 0 in [-127, 127], per-tensor
activations, biases left in float (TensorRT's parser dequantizes INT8 only), the ``yolo`` decode and the
head's output convs kept in float (``qdq_graph.head_split``), and finally no Q/DQ between a conv and its
activation (``qdq_place``: TensorRT's placement; the pairs ONNX Runtime's CPU kernels need travel in the
model's metadata). Ranges are calibrated once and cached, so the sensitivity analysis and the
accuracy-budget fallback re-quantize without re-running calibration. Calibration itself streams the images
in chunks (``calibration.calibrate``: memory bounded whatever ``calib_images``) and writes the cache that
``quantize_static`` reads, so ``quantize_static`` never holds the calibration set.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.calibrate import save_tensors_data

from edgevision.runtime.bundle import InputSpec
from edgevision.runtime.errors import UserError

from . import qdq_graph, qdq_place
from .calibration import ImageReader, calibrate
from .quantize_config import QuantizeConfig

_METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}

Score = Callable[[Path], float]
"""Task metric (e.g. mAP50-95 in [0, 1]) of an ONNX model on a held-out image set."""


@dataclass
class QuantPlan:
    """Which weighted layers are quantized, and why the others stay in float."""

    quantizable: list[str]
    float_layers: dict[str, str] = field(default_factory=dict)  # node name -> reason
    protected: frozenset[str] = frozenset()  # decode nodes (not weighted layers) kept in float

    @property
    def excluded(self) -> list[str]:
        return sorted(set(self.float_layers) | self.protected)

    @property
    def quantized(self) -> list[str]:
        return [n for n in self.quantizable if n not in self.float_layers]


def plan_for(model: onnx.ModelProto, cfg: QuantizeConfig, where: str) -> QuantPlan:
    """Initial plan from the config: head protection and user exclusions (names checked)."""
    quantizable = qdq_graph.quantizable_nodes(model)
    if not quantizable:
        raise UserError(f"{where}: the model has no quantizable layers (no Conv/Gemm/MatMul with constant weights)")
    names = {n.name for n in model.graph.node}
    for name in cfg.exclude:
        if name not in names:
            raise UserError(f"{where}.exclude: no node named {name!r} in the ONNX graph "
                            f"(weighted layers are e.g. {', '.join(quantizable[:3])})")
    plan = QuantPlan(quantizable)
    if cfg.protect_head:
        split = qdq_graph.head_split(model)
        plan.protected = split.decode
        plan.float_layers.update({n: "head output conv (protect_head)" for n in split.head_convs if n in quantizable})
    plan.float_layers.update({n: "recipe 'exclude'" for n in cfg.exclude if n in quantizable})
    plan.protected |= frozenset(n for n in cfg.exclude if n not in quantizable)
    if not plan.quantized:
        raise UserError(f"{where}: every quantizable layer is excluded (protect_head / exclude); nothing to quantize")
    return plan


class Quantizer:
    """Quantize one FP32 ONNX repeatedly with different float fallbacks, calibrating once."""

    def __init__(self, src: Path, workdir: Path, cfg: QuantizeConfig, spec: InputSpec, calib: list[Path]) -> None:
        self.cfg, self.spec, self.workdir = cfg, spec, workdir
        model = qdq_graph.ensure_node_names(onnx.load(str(src)))
        self.model = model
        self.src = workdir / "fp32_named.onnx"
        onnx.save(model, str(self.src))
        self.calib = list(calib)
        self.cache = workdir / "calibration_ranges.json"

    def calibrate(self) -> None:
        """Ranges into ``self.cache`` (once), with the calibrator options ``quantize_static`` would pass."""
        if not self.cache.is_file():
            method = _METHODS[self.cfg.method]
            ranges = calibrate(self.src, self.calib, self.spec, method, {"percentile": self.cfg.percentile})
            save_tensors_data(ranges, self.cache)

    def quantize(self, dst: Path, exclude: Iterable[str]) -> Path:
        self.calibrate()
        extra: dict[str, Any] = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                                 "CalibPercentile": self.cfg.percentile}
        logger = logging.getLogger()
        level = logger.level
        logger.setLevel(logging.ERROR)  # onnxruntime.quantization logs "consider pre-processing" at WARNING
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                quantize_static(
                    str(self.src), str(dst), None, quant_format=QuantFormat.QDQ,
                    per_channel=self.cfg.per_channel,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, nodes_to_exclude=sorted(exclude),
                    calibrate_method=_METHODS[self.cfg.method], extra_options=extra,
                    calibration_cache_path=self.cache,
                )
        finally:
            logger.setLevel(level)
        return dst


def output_error(reference: Path, candidate: Path, feeds: list[np.ndarray], input_name: str) -> float:
    """Proxy of a quantized model's damage: over anchors the FP32 model scores > 0.05, the mean box error
    (relative to the box size) plus the mean absolute score error (errors by the runtime's comparator's rule).
    Cheap enough to rank every layer."""
    from edgevision.runtime.backends.onnxruntime import OrtBackend
    from edgevision.runtime.compare import abs_errors, anchors_above

    errs: list[float] = []
    with OrtBackend(reference, providers=["CPUExecutionProvider"]) as ref, \
            OrtBackend(candidate, providers=["CPUExecutionProvider"]) as cand:
        for x in feeds:
            a = next(iter(ref.infer({input_name: x}).values()))[0]  # [4 + C (+3K), N]
            b = next(iter(cand.infer({input_name: x}).values()))[0]
            keep = anchors_above(a, 0.05)
            if not keep.any():
                continue
            size = np.maximum(a[2:4, keep].max(0), 1.0)
            box = (abs_errors(b[:4, keep], a[:4, keep]).max(0) / size).mean()
            score = abs_errors(b[4:, keep], a[4:, keep]).mean() if a.shape[0] > 4 else 0.0
            errs.append(float(box + score))
    return float(np.mean(errs)) if errs else 0.0


def layer_sensitivity(q: Quantizer, plan: QuantPlan, feeds: list[np.ndarray], log: Callable[[str], None]
                      ) -> dict[str, float]:
    """Output error with only that layer quantized (every other node float), per quantized layer."""
    out: dict[str, float] = {}
    everything = {n.name for n in q.model.graph.node}
    with tempfile.TemporaryDirectory(dir=q.workdir) as tmp:
        probe = Path(tmp) / "probe.onnx"
        for i, name in enumerate(plan.quantized):
            q.quantize(probe, everything - {name})
            out[name] = output_error(q.src, probe, feeds, q.spec.name)
            if (i + 1) % 10 == 0:
                log(f"[quantize] sensitivity {i + 1}/{len(plan.quantized)}")
    return out


def quantize_model(
    src: Path,
    dst: Path,
    cfg: QuantizeConfig,
    *,
    spec: InputSpec,
    calib: list[Path],
    sensitivity_images: list[Path],
    score: Score | None,
    where: str,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """PTQ ``src`` -> ``dst`` (Q/DQ ONNX). With ``cfg.max_drop`` and ``score``: rank layers by sensitivity and
    keep the most sensitive in float until the metric drop (in points) is within the budget. Returns the
    report that goes into the stage record and the manifest."""
    workdir = dst.parent
    q = Quantizer(src, workdir, cfg, spec, calib)
    plan = plan_for(q.model, cfg, where)
    q.quantize(dst, plan.excluded)
    report: dict[str, Any] = {"method": cfg.method, "calib_images": len(calib), "per_channel": cfg.per_channel,
                              "weighted_layers": len(plan.quantizable)}
    if cfg.max_drop is not None and score is not None:
        feeds = ImageReader(sensitivity_images[:16], spec).batches()
        sens = layer_sensitivity(q, plan, feeds, log)
        report["sensitivity"] = {k: round(v, 6) for k, v in sorted(sens.items(), key=lambda kv: -kv[1])}
        base = score(q.src)
        current = score(dst)
        steps: list[dict[str, Any]] = [{"layer": None, "metric": round(current, 6), "kept_float": False}]
        ranked = sorted(sens, key=lambda k: -sens[k])
        kept = 0
        for rank, layer in enumerate(ranked[: 2 * cfg.max_float_layers], 1):
            if (base - current) * 100 <= cfg.max_drop or kept >= cfg.max_float_layers:
                break
            plan.float_layers[layer] = f"sensitivity fallback: rank {rank}, output error {sens[layer]:.4f}"
            q.quantize(dst, plan.excluded)
            trial = score(dst)
            helped = trial > current
            steps.append({"layer": layer, "rank": rank, "metric": round(trial, 6), "kept_float": helped})
            log(f"[quantize] {layer} in float: metric {trial:.4f} (was {current:.4f}, fp32 {base:.4f})"
                f"{'' if helped else ': no gain, quantized again'}")
            if helped:
                plan.float_layers[layer] += f"; metric {current:.4f} -> {trial:.4f}"
                current, kept = trial, kept + 1
            else:
                del plan.float_layers[layer]
        q.quantize(dst, plan.excluded)  # the last trial may have been reverted
        report.update({"fp32_metric": round(base, 6), "int8_metric": round(current, 6),
                       "drop_points": round((base - current) * 100, 3), "max_drop": cfg.max_drop,
                       "budget_met": (base - current) * 100 <= cfg.max_drop, "fallback_steps": steps})
    report["quantized_layers"] = len(plan.quantized)
    report["float_layers"] = dict(sorted(plan.float_layers.items()))
    model = onnx.load(str(dst))  # what was scored above is what the CPU runs; now lay it out for TensorRT
    placed = qdq_place.to_tensorrt_placement(model)
    onnx.save(model, str(dst))
    report["tensorrt_placement"] = {"pairs_moved_to_cpu_hint": len(placed.removed), "activation_q_kept": placed.kept}
    q.src.unlink(missing_ok=True)  # a working copy; the FP32 model stays in its own stage
    return report
