"""The `edgevision` command line: a thin click layer over the toolkit and runtime APIs.

Heavy modules (torch, onnx, the toolkit stages) are imported inside the commands that need them, so `bench`,
`devices` and `doctor` work where only the runtime's dependencies are installed. User mistakes surface as
one line on stderr and exit code 2; no traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from edgevision.runtime.errors import EdgevisionError

from .cli_dataset import dataset
from .cli_engine import engine
from .cli_handoff import handoff_commands
from .cli_regress import regress
from .cli_report import report
from .cli_runtime import _load, _onnx_options, runtime_commands
from .cli_serve import serve
from .entry import release_guard

_PATH = click.Path(path_type=Path)
_LOAD_A_BUNDLE = frozenset({"bench", "engine", "export-deepstream", "export-triton", "serve"})


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="edgevision")
def cli() -> None:
    """edgevision: build, evaluate and benchmark detection/pose models for Jetson and desktop GPUs.

    Typical flow: `edgevision build RECIPE.yaml` trains/compresses/exports a model and writes a bundle
    (model.onnx + edgevision.json) with a report; `edgevision bench BUNDLE` times it on this machine.
    """
    command = click.get_current_context().invoked_subcommand
    if command == "run":  # `run` replaces the start-up guard with its own handler (run_signals.StopSignals)
        return
    if command in _LOAD_A_BUNDLE:  # the sidecar's pydantic models, built under the guard (see entry)
        import edgevision.runtime.bundle  # noqa: F401
    release_guard()


@cli.command()
@click.argument("recipe", type=_PATH)
@click.option("--out", type=_PATH, default=None, help="Output directory (default: runs/<recipe name>).")
@click.option("--cache", "cache_dir", type=_PATH, default=None,
              help="Stage cache directory (default: OUT/cache). Share it between builds to reuse stages.")
def build(recipe: Path, out: Path | None, cache_dir: Path | None) -> None:
    """Run every stage of RECIPE (a YAML file): data, train, export, bundle, evaluate, bench, report.

    Each stage is cached by a hash of its inputs and config: rerunning an unchanged recipe takes seconds,
    and an interrupted build resumes where it stopped. Writes OUT/manifest.json, OUT/report.md and one
    bundle directory per variant (OUT/fp32, ...).
    """
    from .build import build as run_build

    result = run_build(recipe, out, cache_dir=cache_dir, log=lambda m: click.echo(m, err=True))
    for name, v in result.manifest["variants"].items():
        lat = ", ".join(f"{b} {s['median']:.2f} ms" for b, s in v["latency_ms"].items())
        metrics = ", ".join(f"{k} {val:.3f}" for k, val in v["metrics"].items())
        click.echo(f"{name}: {metrics}; {lat}; bundle {result.out / v['bundle']}")
    click.echo(f"report: {result.out / 'report.md'}, {result.out / 'report.html'}")
    gates = result.manifest.get("gates")
    if gates is not None and not gates["passed"]:
        raise SystemExit(1)  # a failing gate (report.md's Gates section), after writing everything


@cli.command()
@click.argument("checkpoint", type=_PATH)
@click.option("--out", type=_PATH, required=True, help="Bundle directory to write.")
@click.option("--opset", type=click.IntRange(11, 21), default=17, show_default=True)
@click.option("--dynamic-batch/--static-batch", default=False, show_default=True,
              help="Export with a dynamic batch dimension.")
@click.option("--simplify/--no-simplify", default=True, show_default=True, help="Simplify with onnxsim.")
@click.option("--imgsz", type=click.IntRange(1), default=None,
              help="Square input size to export for (default: the size it was trained at), e.g. 640.")
@click.option("--nms", is_flag=True, help="NMS inside the graph (output layout 'nms'; batch 1, opset >= 13).")
@click.option("--force", is_flag=True, help="Replace --out even if it is a non-empty directory that is not a bundle.")
def export(checkpoint: Path, out: Path, opset: int, dynamic_batch: bool, simplify: bool, imgsz: int | None,
           nms: bool, force: bool) -> None:
    """Export an edgevision CHECKPOINT to a bundle (ONNX + sidecar), checking torch/ONNX Runtime parity."""
    from .export_cmd import export_checkpoint

    parity = export_checkpoint(checkpoint, out, opset=opset, dynamic_batch=dynamic_batch, simplify=simplify,
                               input_size=imgsz, nms=nms, force=force)
    click.echo(f"wrote {out} (parity: max abs err {parity['max_abs_err']:.2e}, "
               f"max rel err {parity['max_rel_err']:.2e})")


@cli.command(name="eval")
@click.argument("model", type=_PATH)
@click.option("--data", "ann_file", type=_PATH, required=True,
              help="COCO annotations json of the eval split, or a YOLO data.yaml (see --split).")
@click.option("--split", default="val", show_default=True, help="With a YOLO data.yaml: the split to score.")
@click.option("--images", type=_PATH, default=None, help="COCO json: image folder (default: found beside the json).")
@click.option("--conf", type=click.FloatRange(0, 1), default=0.001, show_default=True)
@click.option("--iou", type=click.FloatRange(0, 1), default=None, help="NMS IoU (default: the protocol's).")
@click.option("--max-det", type=click.IntRange(1), default=None, help="Detections per image (default: the protocol's).")
@click.option("--protocol", type=click.Choice(["coco", "ultralytics"]), default="coco", show_default=True,
              help="coco: pycocotools as is (one label per box, OKS scaled by the annotation's area, NMS IoU 0.6, "
                   "100 detections). ultralytics: Ultralytics val's conventions (multi-label NMS, OKS scaled by "
                   "0.53 x box area, IoU 0.7, 300 detections), to compare with `yolo val` like for like.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_onnx_options
def eval_cmd(model: Path, ann_file: Path, split: str, images: Path | None, conf: float, iou: float | None,
             max_det: int | None, protocol: str, as_json: bool, imgsz: str | None, names: str | None,
             task: str | None) -> None:
    """COCO mAP (pycocotools) of MODEL, a bundle directory or a bare .onnx, through the runtime.

    A bare .onnx gets its sidecar from its metadata as with `run` and `bench` (--imgsz/--names/--task fill
    gaps); a 17-keypoint pose model without keypoint names is scored with COCO's OKS sigmas.
    """
    import tempfile

    from .data.yolo import load_eval_split
    from .stages.evaluate import evaluate_bundle

    bundle = _load(model, imgsz, names, task)
    with tempfile.TemporaryDirectory(prefix="edgevision-eval-") as tmp:
        dataset = load_eval_split(ann_file, split, images, Path(tmp))
        metrics = evaluate_bundle(bundle, dataset, conf=conf, iou=iou, max_det=max_det, protocol=protocol)
    _emit(metrics, as_json)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def devices(as_json: bool) -> None:
    """List the target device profiles (GPU SM, precisions, DLA, TensorRT range)."""
    from .devices import list_profiles

    profiles = list_profiles()
    if as_json:
        click.echo(json.dumps([p.model_dump(mode="json") for p in profiles], indent=2))
        return
    click.echo(f"{'name':24s} {'SM':9s} {'fp16':5s} {'int8':5s} {'2:4':4s} {'DLA':4s} {'TensorRT':11s} default")
    for p in profiles:
        sm = ",".join(p.sms) or "-"
        trt = f"{p.tensorrt.min}-{p.tensorrt.max or ''}" if p.tensorrt else "-"
        yn = {True: "yes", False: "no"}
        s = p.supports
        click.echo(f"{p.name:24s} {sm:9s} {yn[s.fp16]:5s} {yn[s.int8]:5s} {yn[s.sparsity]:4s} {p.dla_cores:<4d} "
                   f"{trt:11s} {p.default_precision} on {p.backend}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def doctor(as_json: bool) -> None:
    """What is installed: torch, ONNX Runtime (providers), TensorRT, pycuda, CUDA GPU, OpenCV (+GStreamer)."""
    from edgevision.runtime.doctor import collect, format_report, profile_query

    from .devices import match_profile

    info = collect()
    matches = [p.name for p in match_profile(**profile_query(info))]
    if as_json:
        click.echo(json.dumps({"components": info, "matching_profiles": matches}, indent=2, default=str))
        return
    click.echo(format_report(info))
    click.echo(f"\nthis machine matches device profile(s): {', '.join(matches) or 'none'}")


for _cmd in runtime_commands():
    cli.add_command(_cmd)
cli.add_command(engine)
cli.add_command(regress)
cli.add_command(report)
cli.add_command(dataset)
for _cmd in handoff_commands():
    cli.add_command(_cmd)
cli.add_command(serve)


def _emit(obj: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(obj, indent=2))
        return
    for k, v in obj.items():
        click.echo(f"{k}: {v}")


def _quiet_native_logs() -> None:
    """OpenCV and its FFmpeg print their own lines on stderr (e.g. a warning and FFmpeg's socket error when a
    stream cannot be opened) next to our one-line error. Silence them unless the user set the variables
    (``OPENCV_LOG_LEVEL=INFO OPENCV_FFMPEG_LOGLEVEL=24`` shows them again); read when cv2 is first imported."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def main(argv: list[str] | None = None) -> None:
    """Console entry point: EdgevisionError -> one line on stderr and its exit code (2 for user errors)."""
    _quiet_native_logs()
    try:
        cli.main(args=argv, prog_name="edgevision", standalone_mode=False)
    except click.exceptions.Abort as exc:  # click's answer to Ctrl-C in a command (and to EOF at a prompt)
        click.echo("interrupted" if isinstance(exc.__cause__, KeyboardInterrupt) else "aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:  # one line like every other user error, with where to look
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"error: {' '.join(exc.format_message().split())}{where}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except EdgevisionError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
