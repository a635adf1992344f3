"""INT8 PTQ of an Ultralytics YOLOv8n: the decode tail (DFL softmax + projection, box decode, sigmoid, concat)
is found structurally in the exported graph and stays float by design, and the INT8 outputs stay close to
FP32 on the same inputs (a relative check: random weights make mAP meaningless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from edgevision.runtime.bundle import InputSpec
from edgevision.toolkit.compress import qdq_graph
from edgevision.toolkit.compress.quantize import quantize_model
from edgevision.toolkit.compress.quantize_config import QuantizeConfig
from edgevision.toolkit.models.ultralytics.net import UltralyticsNet
from edgevision.toolkit.stages.export import export_onnx
from tests.toolkit.ultralytics_helpers import IMGSZ, ul_model


def _images(tmp: Path, n: int, seed: int) -> list[Path]:
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)  # smooth blobs, not pixel noise
        img = cv2.resize(small, (IMGSZ, IMGSZ), interpolation=cv2.INTER_CUBIC)
        out.append(tmp / f"img{seed}_{i}.png")
        cv2.imwrite(str(out[-1]), img)
    return out


def test_int8_keeps_decode_float_and_close_to_fp32(tmp_path: Path) -> None:
    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    export_onnx(UltralyticsNet(ul_model("yolov8n.yaml", nc=3)).eval(), IMGSZ, fp32)
    split = qdq_graph.head_split(qdq_graph.ensure_node_names(onnx.load(str(fp32))))
    ops = {n.op_type for n in onnx.load(str(fp32)).graph.node if n.name in split.decode}
    assert {"Softmax", "Sigmoid", "Concat"} <= ops  # DFL, scores, the output concat are in the decode tail
    assert len(split.head_convs) == 6  # box + class output convs of 3 levels: where the walk stops

    spec = InputSpec(name="images", shape=[1, 3, IMGSZ, IMGSZ])
    report = quantize_model(fp32, int8, QuantizeConfig(method="minmax", calib_images=8), spec=spec,
                            calib=_images(tmp_path, 8, 0), sensitivity_images=[], score=None, where="quantize",
                            log=lambda _m: None)
    assert report["quantized_layers"] > 50

    graph = onnx.load(str(int8)).graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    decode = [n for n in graph.node if n.name in split.decode]
    assert len(decode) == len(split.decode)
    for n in decode:  # no Q/DQ feeds or follows any decode node
        assert all(producer[i].op_type != "DequantizeLinear" for i in n.input if i in producer), n.name
        assert all(c.op_type != "QuantizeLinear" for o in n.output for c in consumers.get(o, [])), n.name
    for n in graph.node:
        if n.name in split.head_convs:
            assert all(producer[i].op_type != "DequantizeLinear" for i in n.input[1:2] if i in producer)

    from edgevision.toolkit.compress.calibration import ImageReader

    feeds = ImageReader(_images(tmp_path, 4, 1), spec).batches()
    a = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    for x in feeds:
        ya, yb = a.run(None, {"images": x})[0][0], b.run(None, {"images": x})[0][0]
        box_err = np.abs(ya[:4] - yb[:4]).mean() / np.abs(ya[:4]).mean()
        score_err = np.abs(ya[4:] - yb[4:]).mean() / max(float(ya[4:].mean()), 1e-6)
        assert box_err < 0.01 and score_err < 0.05, (box_err, score_err)
