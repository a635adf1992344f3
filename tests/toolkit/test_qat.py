"""QAT pieces: BatchNorm folding round-trips exactly, fake quantization snaps weights to the INT8 grid
TensorRT uses, and a QAT checkpoint loads into the registry model and exports unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgevision.runtime.backends.onnxruntime import OrtBackend
from edgevision.toolkit.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from edgevision.toolkit.compress.qat import FakeQuant, WeightFakeQuant, fold_bn, qat_finetune, unfold_bn
from edgevision.toolkit.compress.quantize_config import QatConfig
from edgevision.toolkit.data.coco import load_coco
from edgevision.toolkit.data.synthetic import generate_detection_dataset
from edgevision.toolkit.models.registry import build_model
from edgevision.toolkit.recipe import TrainConfig
from edgevision.toolkit.stages.export import export_onnx


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    m = build_model("edgedet", "p", num_classes=2)
    for mod in m.modules():  # non-trivial BatchNorm statistics so folding is really exercised
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


def test_fold_then_unfold_is_exact() -> None:
    m = _model()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = m(x)
        blocks = fold_bn(m)
        folded = m(x)
        unfold_bn(blocks)
        back = m(x)
    assert blocks
    torch.testing.assert_close(folded, ref, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(back, ref, atol=1e-3, rtol=1e-4)
    assert set(m.state_dict()) == set(_model().state_dict())  # the registry's shapes and names


def test_weight_fake_quant_is_the_symmetric_per_channel_grid() -> None:
    w = torch.randn(4, 3, 3, 3)
    q = WeightFakeQuant()(w)
    scale = w.abs().amax(dim=(1, 2, 3), keepdim=True) / 127
    codes = q / scale
    assert torch.allclose(codes, codes.round(), atol=1e-3) and codes.abs().max() <= 127 + 1e-3
    assert (q - w).abs().max() <= scale.max() / 2 + 1e-6


def test_fake_quant_attaches_and_detaches_cleanly() -> None:
    m = _model()
    keep = list(m.head_outputs())
    fq = FakeQuant(m, keep)
    assert len(fq.convs) == sum(isinstance(c, torch.nn.Conv2d) for c in m.modules()) - len(keep)
    m.train()(torch.rand(2, 3, 64, 64))
    assert all(float(o.amax) > 0 for o in fq.observers)
    fq.remove()
    assert not hasattr(m, "qat_observers") and set(m.state_dict()) == set(_model().state_dict())


@pytest.mark.timeout(120)
def test_qat_checkpoint_loads_and_exports(tmp_path: Path) -> None:
    paths = generate_detection_dataset(tmp_path / "d", num_train=8, num_val=2, image_size=64, seed=2)
    train = load_coco(paths.train_json)
    src = tmp_path / "src.pt"
    save_checkpoint(src, _model(), CheckpointMeta(model="edgedet", size="p", task="detect",
                                                  class_names=list(train.class_names)[:2], input_size=64))
    info = qat_finetune(src, tmp_path / "qat.pt", QatConfig(epochs=1, distill=True), train=train, input_size=64,
                        train_cfg=TrainConfig(batch=4, num_threads=2), log=lambda m: None)
    assert info["fake_quantized_convs"] > 0 and len(info["epoch_losses"]) == 1
    model, meta = load_checkpoint(tmp_path / "qat.pt")
    assert meta.class_names == list(train.class_names)[:2]
    export_onnx(model, 64, tmp_path / "qat.onnx")
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    with OrtBackend(tmp_path / "qat.onnx") as b:
        np.testing.assert_allclose(b.infer({"images": x})["output0"], ref, atol=1e-3, rtol=1e-3)
