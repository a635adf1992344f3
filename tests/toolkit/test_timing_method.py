"""One timing method (issue 16): the build's bench stage and `edgevision bench` open their sessions with the
same options and time them with the same function and settings, and both say what those settings were."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgevision.runtime import bench as runtime_bench
from edgevision.runtime import benchmark
from edgevision.runtime.backends import onnxruntime as ort_backend
from edgevision.toolkit.stages import bench as stage_bench
from edgevision.toolkit.stages.export import export_onnx

SIZE = 32


class YoloLike(nn.Module):
    """A raw ``yolo`` head shape, [1, 4 + 3 classes, anchors], so `bench`'s predictor check accepts it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4 + 3, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(x)).flatten(2) * SIZE


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("timing") / "tiny.onnx"
    export_onnx(YoloLike().eval(), SIZE, path, simplify=False)
    return path


def _spy(monkeypatch: pytest.MonkeyPatch) -> tuple[list[benchmark.TimingSettings], list[dict[str, Any]]]:
    timed: list[benchmark.TimingSettings] = []
    opened: list[dict[str, Any]] = []
    real_time_calls, real_init = benchmark.time_calls, ort_backend.OrtBackend.__init__

    def time_calls(fns: Any, settings: benchmark.TimingSettings) -> Any:
        timed.append(settings)
        return real_time_calls(fns, settings)

    def init(self: Any, model_path: Any, providers: Any = None, **kw: Any) -> None:
        opened.append({k: kw.get(k) for k in ("intra_op_threads", "spin")})
        real_init(self, model_path, providers, **kw)

    monkeypatch.setattr(benchmark, "time_calls", time_calls)
    monkeypatch.setattr(ort_backend.OrtBackend, "__init__", init)
    return timed, opened


def test_bench_stage_and_bench_command_time_alike(onnx_file: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from edgevision.toolkit.cli import cli

    assert stage_bench.time_backends is runtime_bench.time_backends is benchmark.time_backends
    timed, opened = _spy(monkeypatch)
    stage = stage_bench.bench_latency(None, onnx_file, SIZE, backends=["onnxruntime-cpu"], warmup=2, iters=7,
                                      threads=1)
    assert "[bench] timing: 1 intra-op thread(s), 2 warm-up + 7 timed calls" in capsys.readouterr().err
    res = CliRunner().invoke(cli, ["bench", str(onnx_file), "--imgsz", str(SIZE), "--names", "a,b,c", "--json",
                                   "--warmup", "2", "--iters", "7", "--threads", "1", "--backend", "onnxruntime"])
    assert res.exit_code == 0, res.output
    cli_out = json.loads(res.output)
    assert len(timed) == 2 and timed[0] == timed[1]  # one function, one set of settings
    assert timed[0] == benchmark.TimingSettings.make(1, 2, 7) and timed[0].spin is False
    assert opened == [{"intra_op_threads": 1, "spin": False}] * 2  # the same session options
    assert stage["onnxruntime-cpu"]["timing"] == cli_out["timing"] == timed[0].to_dict()
    assert stage["onnxruntime-cpu"]["iters"] == cli_out["latency_ms"]["iters"] == 7


def test_bench_names_a_bare_onnx_file_and_prints_its_method(onnx_file: Path) -> None:
    from edgevision.toolkit.cli import cli

    args = ["bench", str(onnx_file), "--imgsz", str(SIZE), "--names", "a,b,c", "--warmup", "1", "--iters", "3",
            "--threads", "1"]
    res = CliRunner().invoke(cli, [*args, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["bundle"] == str(onnx_file)  # the file, not its folder
    text = CliRunner().invoke(cli, args).output
    assert f"bundle: {onnx_file}\n" in text
    assert text.rstrip().splitlines()[-1] == benchmark.TimingSettings.make(1, 1, 3).describe()


def test_bench_and_the_cli_stay_lean() -> None:
    """report.html's matplotlib is the toolkit's: the CLI and `bench` never import it (nor torch)."""
    import subprocess
    import sys

    code = ("import sys\nfrom edgevision.toolkit import cli\nimport edgevision.runtime.bench\n"
            "print(sorted(m for m in ('matplotlib', 'torch') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
