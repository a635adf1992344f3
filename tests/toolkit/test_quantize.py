"""INT8 PTQ on a tiny detector: TensorRT-style Q/DQ, the head kept in float, close to FP32, named errors,
and the accuracy-budget fallback keeping exactly the layers that help."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from edgevision.runtime.backends.onnxruntime import OrtBackend
from edgevision.runtime.bundle import InputSpec
from edgevision.runtime.errors import UserError
from edgevision.toolkit.compress import quantize as quantize_mod
from edgevision.toolkit.compress.calibration import ImageReader, pick_images
from edgevision.toolkit.compress.fp16 import convert_fp16, output_parity
from edgevision.toolkit.compress.qdq_check import require_tensorrt_qdq
from edgevision.toolkit.compress.qdq_graph import head_split, quantizable_nodes
from edgevision.toolkit.compress.quantize import quantize_model
from edgevision.toolkit.compress.quantize_config import QuantizeConfig
from edgevision.toolkit.data.coco import load_coco
from edgevision.toolkit.data.synthetic import generate_detection_dataset
from edgevision.toolkit.models.registry import build_model
from edgevision.toolkit.stages.export import export_onnx

SIZE = 64
SPEC = InputSpec(name="images", shape=[1, 3, SIZE, SIZE])


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], torch.nn.Module]:
    root = tmp_path_factory.mktemp("q")
    paths = generate_detection_dataset(root / "data", num_train=12, num_val=2, image_size=SIZE, seed=1)
    images = [r.path for r in load_coco(paths.train_json).records]
    torch.manual_seed(0)
    model = build_model("edgedet", "p", num_classes=3).eval()
    export_onnx(model, SIZE, root / "fp32.onnx")
    return root / "fp32.onnx", images, model


def weight_quantized(model: onnx.ModelProto) -> set[str]:
    """Weighted nodes whose weight comes through a DequantizeLinear (i.e. run in INT8)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    return {n.name for n in model.graph.node if n.op_type == "Conv" and n.input[1] in producer
            and producer[n.input[1]].op_type == "DequantizeLinear"}


def test_head_split_finds_the_models_output_convs(setup: tuple[Path, list[Path], torch.nn.Module]) -> None:
    fp32, _, model = setup
    split = head_split(onnx.load(str(fp32)))
    names = {name for name, m in model.named_modules() if any(m is h for h in model.head_outputs())}
    # TorchScript names nodes by module path: head.box.0.2 -> /head/box.0/box.0.2/Conv
    expected = {f"/head/{n.split('.')[1]}.{n.split('.')[2]}/{n.removeprefix('head.')}/Conv" for n in names}
    assert split.head_convs == expected
    assert "Softmax" in {n.op_type for n in onnx.load(str(fp32)).graph.node if n.name in split.decode}


def test_ptq_is_tensorrt_style_with_the_head_in_float(setup: tuple[Path, list[Path], torch.nn.Module],
                                                      tmp_path: Path) -> None:
    fp32, images, _ = setup
    cfg = QuantizeConfig(method="minmax", calib_images=8)
    report = quantize_model(fp32, tmp_path / "int8.onnx", cfg, spec=SPEC, calib=images[:8], sensitivity_images=[],
                            score=None, where="compress[0].quantize")
    assert require_tensorrt_qdq(tmp_path / "int8.onnx").ok
    q = onnx.load(str(tmp_path / "int8.onnx"))
    split = head_split(onnx.load(str(fp32)))
    quantized = weight_quantized(q)
    assert quantized and not (quantized & split.head_convs)
    assert len(quantized) == report["quantized_layers"] == report["weighted_layers"] - len(split.head_convs)
    assert set(report["float_layers"]) == set(split.head_convs)
    # the decode (DFL softmax, anchors, strides) never sees a Q/DQ node
    producer = {o: n for n in q.graph.node for o in n.output}
    for node in q.graph.node:
        if node.name in split.decode:
            assert all(producer.get(i) is None or producer[i].op_type != "DequantizeLinear" for i in node.input)
    feeds = ImageReader(images[8:12], SPEC).batches()
    with OrtBackend(fp32) as a, OrtBackend(tmp_path / "int8.onnx") as b:
        for x in feeds:
            ya, yb = a.infer({"images": x})["output0"], b.infer({"images": x})["output0"]
            box_err = np.abs(ya[0, :4] - yb[0, :4]).mean()
            assert box_err < 0.05 * SIZE, box_err  # boxes within a few % of the image on average


def test_bad_requests_name_the_key(setup: tuple[Path, list[Path], torch.nn.Module], tmp_path: Path) -> None:
    fp32, images, _ = setup
    from edgevision.toolkit.data.coco import ImageRecord

    records = [ImageRecord(i, p, SIZE, SIZE, np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                           np.zeros(0, bool)) for i, p in enumerate(images)]
    with pytest.raises(UserError, match=r"compress\[0\]\.quantize\.calib_images: asks for 64 images .* only 12"):
        pick_images(records, 64, "compress[0].quantize.calib_images")
    with pytest.raises(UserError, match=r"calib_images: the calibration set is empty"):
        pick_images([], 4, "compress[0].quantize.calib_images")
    cfg = QuantizeConfig(exclude=["/no/such/Conv"], calib_images=2)
    with pytest.raises(UserError, match=r"compress\[0\]\.quantize\.exclude: no node named '/no/such/Conv'"):
        quantize_model(fp32, tmp_path / "x.onnx", cfg, spec=SPEC, calib=images[:2], sensitivity_images=[],
                       score=None, where="compress[0].quantize")
    relu = helper.make_graph([helper.make_node("Relu", ["images"], ["y"])], "g",
                             [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, SIZE, SIZE])])
    model = helper.make_model(relu, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(tmp_path / "relu.onnx"))
    with pytest.raises(UserError, match=r"compress\[0\]\.quantize: the model has no quantizable layers"):
        quantize_model(tmp_path / "relu.onnx", tmp_path / "y.onnx", QuantizeConfig(calib_images=2), spec=SPEC,
                       calib=images[:2], sensitivity_images=[], score=None, where="compress[0].quantize")


@pytest.mark.parametrize(("max_drop", "expect_float"), [(0.5, ["A"]), (0.1, ["A", "C"])])
def test_budget_fallback_keeps_only_layers_that_help(setup: tuple[Path, list[Path], torch.nn.Module],
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     max_drop: float, expect_float: list[str]) -> None:
    fp32, images, _ = setup
    body = [n for n in quantizable_nodes(onnx.load(str(fp32))) if not n.startswith("/head/")]
    names = {"A": body[0], "B": body[1], "C": body[2]}
    ranking = {names["A"]: 0.3, names["B"]: 0.2, names["C"]: 0.1}
    monkeypatch.setattr(quantize_mod, "layer_sensitivity",
                        lambda q, plan, feeds, log: {n: ranking.get(n, 0.0) for n in plan.quantized})
    cost = {names["A"]: 0.004, names["B"]: 0.0, names["C"]: 0.004}  # B in INT8 costs nothing

    def score(path: Path) -> float:  # an exact stand-in for the task metric
        return 1.0 - sum(c for n, c in cost.items() if n in weight_quantized(onnx.load(str(path))))

    cfg = QuantizeConfig(method="minmax", calib_images=4, max_drop=max_drop, sensitivity_images=2)
    report = quantize_model(fp32, tmp_path / "int8.onnx", cfg, spec=SPEC, calib=images[:4],
                            sensitivity_images=images[4:6], score=score, where="q", log=lambda m: None)
    kept = [k for k, n in names.items() if n in report["float_layers"]]
    assert kept == expect_float
    assert report["budget_met"] and report["drop_points"] <= max_drop
    assert report["drop_points"] == pytest.approx((1.0 - score(tmp_path / "int8.onnx")) * 100, abs=1e-6)
    assert list(report["sensitivity"])[:3] == [names["A"], names["B"], names["C"]]


def test_fp16_variant_keeps_float32_io_and_matches_fp32(setup: tuple[Path, list[Path], torch.nn.Module],
                                                        tmp_path: Path) -> None:
    fp32, images, _ = setup
    convert_fp16(fp32, tmp_path / "fp16.onnx")
    m = onnx.load(str(tmp_path / "fp16.onnx"))
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert any(i.data_type == TensorProto.FLOAT16 for i in m.graph.initializer)
    parity = output_parity(fp32, tmp_path / "fp16.onnx", ImageReader(images[:4], SPEC).batches(), "images",
                           min_score=0.0)
    assert parity["max_abs_err_box_px"] < 0.5 and parity["max_abs_err_scores"] < 0.01
