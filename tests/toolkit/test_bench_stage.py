"""The bench stage's side-by-side timing: the compressed model and the original are interleaved with each
other, never with torch (whose spinning OpenMP pool slows whichever session runs next), and the ratios in
the manifest are the ratios of the reported medians."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from edgevision.runtime import benchmark
from edgevision.toolkit.stages import bench
from edgevision.toolkit.stages.export import export_onnx

SIZE = 32


class Tiny(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(), nn.Conv2d(width, 6, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(2)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path, Path]:
    root = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    small, big = Tiny(8).eval(), Tiny(64).eval()
    export_onnx(small, SIZE, root / "small.onnx", simplify=False)
    export_onnx(big, SIZE, root / "big.onnx", simplify=False)
    return small, root / "small.onnx", root / "big.onnx"


def test_torch_is_timed_apart_from_the_onnx_pair(models: tuple[nn.Module, Path, Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    model, small, big = models
    groups: list[set[str]] = []
    real = benchmark.time_calls

    def spy(fns, settings):  # type: ignore[no-untyped-def]
        groups.append(set(fns))
        return real(fns, settings)

    monkeypatch.setattr(benchmark, "time_calls", spy)  # behind time_backends (the ONNX Runtime pair)
    monkeypatch.setattr(bench, "time_calls", spy)  # torch
    out = bench.bench_latency(model, small, SIZE, backends=["torch-cpu", "onnxruntime-cpu"], warmup=1, iters=5,
                              threads=1, reference_onnx=big)
    assert {"onnxruntime-cpu", "onnxruntime-cpu-original"} in groups
    assert {"torch-cpu"} in groups and len(groups) == 2, groups
    ort, ref, tch = out["onnxruntime-cpu"], out["onnxruntime-cpu-original"], out["torch-cpu"]
    assert ort["iters"] == ref["iters"] == tch["iters"] == 5
    assert ort["vs_original"] == pytest.approx(ort["median"] / ref["median"], rel=1e-3)
    assert ort["vs_torch"] == pytest.approx(ort["median"] / tch["median"], rel=1e-3)


def test_onnx_only_has_no_torch_entry(models: tuple[nn.Module, Path, Path]) -> None:
    model, small, _ = models
    out = bench.bench_latency(model, small, SIZE, backends=["onnxruntime-cpu"], warmup=1, iters=3, threads=1)
    assert set(out) == {"onnxruntime-cpu"}
    assert "vs_original" not in out["onnxruntime-cpu"] and out["onnxruntime-cpu"]["median"] > 0
