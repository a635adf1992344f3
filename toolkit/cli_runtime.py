"""Runtime-side commands, `run` and `bench`: they import only edgevision.runtime, never torch.

Both take a bundle directory, a plain TensorRT plan with its bundle's sidecar beside it, or a bare ``.onnx``
file; for the latter, ``--imgsz``/``--names``/``--task``
fill in (or override) what the model's own metadata says (see ``edgevision.runtime.onnx_meta``).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .run_signals import StopSignals, exit_if_stages_alive

if TYPE_CHECKING:
    from edgevision.runtime.bundle import Bundle

_PATH = click.Path(path_type=Path)
_BACKENDS = click.Choice(["auto", "onnxruntime", "tensorrt"])


def _onnx_options(fn: Any) -> Any:
    fn = click.option("--task", type=click.Choice(["detect", "pose"]), default=None,
                      help="Bare ONNX: task (default: metadata, else detect).")(fn)
    fn = click.option("--names", default=None,
                      help="Bare ONNX: class names, comma-separated or a text file with one per line.")(fn)
    fn = click.option("--imgsz", default=None, help="Bare ONNX: input size, N or H,W (default: metadata/model).")(fn)
    return fn


def _load(model: Path, imgsz: str | None, names: str | None, task: str | None) -> Bundle:
    from edgevision.runtime.errors import UserError
    from edgevision.runtime.model_plan import load_model
    from edgevision.runtime.onnx_meta import bundle_from_onnx, parse_names

    overrides: dict[str, Any] = {}
    if imgsz:
        try:
            parts = [int(v) for v in imgsz.replace("x", ",").split(",")]
        except ValueError:
            raise UserError(f"--imgsz {imgsz!r}: expected N or H,W") from None
        overrides["imgsz"] = parts[0] if len(parts) == 1 else tuple(parts)
    if names:
        p = Path(names)
        text = ",".join(ln.strip() for ln in p.read_text().splitlines() if ln.strip()) if p.is_file() else names
        overrides["names"] = parse_names(text, "--names")
    if task:
        overrides["task"] = task
    if model.suffix.lower() == ".onnx" and model.is_file():
        return bundle_from_onnx(model, **overrides)
    if overrides:
        raise UserError(f"{model}: --imgsz/--names/--task apply to a bare .onnx file, not a bundle")
    return load_model(model)


def _setup_logging() -> None:
    logger = logging.getLogger("edgevision")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("edgevision: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


@click.command()
@click.argument("model", type=_PATH)
@click.option("--source", "source_uri", default=None,
              help="Video file or image folder: measure backend-only vs full-pipeline throughput on it.")
@click.option("--frames", type=click.IntRange(2), default=None, help="With --source: frames per pipeline run.")
@click.option("--rounds", type=click.IntRange(1), default=3, show_default=True,
              help="With --source: alternating backend/pipeline rounds (medians are reported).")
@click.option("--warmup", type=click.IntRange(0), default=10, show_default=True)
@click.option("--iters", type=click.IntRange(1), default=100, show_default=True)
@click.option("--threads", type=click.IntRange(0), default=0, show_default=True, help="0 = all cores.")
@click.option("--backend", type=_BACKENDS, default="auto", show_default=True,
              help="auto: the bundle's TensorRT engine for this device if one matches, else ONNX Runtime.")
@click.option("--replicas", type=click.IntRange(1), default=None,
              help="With --source: inference sessions sharing --threads (default: 2 on a multi-core CPU).")
@_onnx_options
@click.option("--seconds", type=click.FloatRange(0, min_open=True), default=30.0, show_default=True,
              help="With a live --source: how long to run.")
@click.option("--no-fresh-frames", is_flag=True, help="With a live --source: as `run --no-fresh-frames`.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench(model: Path, source_uri: str | None, frames: int | None, rounds: int, warmup: int, iters: int,
          threads: int, backend: str, replicas: int | None, imgsz: str | None, names: str | None,
          task: str | None, seconds: float, no_fresh_frames: bool, as_json: bool) -> None:
    """Speed of MODEL (bundle or .onnx) on this machine. Runtime-only.

    Without --source: batch-1 latency on random input (median / p90 / p99 in ms). With --source FILE:
    backend-only FPS, full-pipeline FPS (decode -> preprocess -> infer -> postprocess) and their ratio
    `efficiency`, plus per-stage latencies. With a live --source (camera, stream, synthetic://?fps=N): the
    newest-frame pipeline for --seconds, capture -> result latency against inference time, per tenth of the run.
    """
    from edgevision.runtime.bench import bench_bundle, bench_live, bench_stream
    from edgevision.runtime.sources import open_source

    bundle = _load(model, imgsz, names, task)
    live = False
    if source_uri is not None:
        with open_source(source_uri) as src:
            live = src.is_live
    if source_uri is None:
        result = bench_bundle(bundle, warmup=warmup, iters=iters, threads=threads, backend=backend)
    elif live:
        result = bench_live(bundle, source_uri, seconds=seconds, threads=threads, backend=backend,
                            fresh_frames=not no_fresh_frames)
    else:
        result = bench_stream(bundle, source_uri, frames=frames, rounds=rounds, warmup=warmup, threads=threads,
                              backend=backend, replicas=replicas)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    from edgevision.runtime.benchmark import TimingSettings

    timing = result.pop("timing", None)
    click.echo("\n".join(f"{k}: {v}" for k, v in result.items()))
    if timing is not None:  # the method, as the build's bench stage prints it
        click.echo(TimingSettings(**timing).describe())


@click.command()
@click.argument("model", type=_PATH)
@click.option("--source", "source_uris", multiple=True,
              help="File, folder, glob, v4l2:///dev/video0, csi://0, rtsp://..., http(s)://..., "
                   "synthetic://?fps=30. Repeatable: several streams share one batched inference call.")
@click.option("--sources", "sources_file", type=_PATH, default=None,
              help="YAML listing the streams (uri, optional name, optional sinks per stream) instead of --source.")
@click.option("--check", is_flag=True,
              help="Instead of a stream: run the bundle's golden tensors through the backend and compare with "
                   "the outputs stored at build time; one line per output, exit 0 pass / 1 mismatch / 2 none.")
@click.option("--sink", "sink_specs", multiple=True,
              help="Repeatable: video:out.mp4, jsonl:out.jsonl, display, http://127.0.0.1:8080[?token=T] "
                   "(beyond loopback: ?token=T, or ?insecure=1).")
@click.option("--conf", type=click.FloatRange(0, 1), default=None, help="Score threshold (default: bundle).")
@click.option("--iou", type=click.FloatRange(0, 1, min_open=True), default=None, help="NMS IoU (default: bundle).")
@click.option("--max-det", type=click.IntRange(1), default=None, help="Detections per frame (default: bundle).")
@click.option("--backend", type=_BACKENDS, default="auto", show_default=True,
              help="auto: the bundle's TensorRT engine for this device if one matches, else ONNX Runtime; "
                   "tensorrt: that engine or an error with the command that rebuilds it.")
@click.option("--threads", type=click.IntRange(0), default=0, show_default=True,
              help="CPU threads for inference (0 = all cores; files split them between 2 ONNX Runtime sessions).")
@click.option("--max-frames", type=click.IntRange(1), default=None, help="Stop after N frames.")
@click.option("--width", type=click.IntRange(1), default=None, help="Resize frames / ask the camera for this.")
@click.option("--height", type=click.IntRange(1), default=None)
@click.option("--fps", type=click.FloatRange(0, min_open=True), default=None,
              help="Camera rate; paces files, folders and synthetic:// like a camera.")
@click.option("--loop", is_flag=True, help="Restart files and folders at their end.")
@click.option("--drop-policy", type=click.Choice(["auto", "newest", "lossless"]), default="auto",
              show_default=True, help="auto: newest frame for live sources, lossless for files.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True,
              help="Seconds to wait when opening a device or stream.")
@_onnx_options
@click.option("--no-status", is_flag=True, help="No live status line on stderr.")
@click.option("--no-fresh-frames", is_flag=True,
              help="Live sources: take the waiting frame at once instead of waiting (under half a frame period) "
                   "for a fresher one: ~10-15% more FPS under overload, ~20% more latency.")
@click.option("--replicas", type=click.IntRange(1), default=None,
              help="Files: inference sessions sharing --threads (default: 2 on a multi-core CPU); live: always 1.")
@click.option("--batch-timeout", "batch_timeout_ms", type=click.FloatRange(0), default=10.0, show_default=True,
              help="Several streams: ms a ready frame may wait for the other streams before its batch is inferred.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the exit summary as one JSON object on stdout (fps_wall, fps_steady, per stream, ...).")
@click.option("--track", is_flag=True,
              help="Follow objects across frames (ByteTrack-style, one tracker per stream): results carry track "
                   "ids and show only tracked objects. --conf is then the score that starts a track (default 0.5); "
                   "boxes down to 0.1 may continue one. Needs scipy.")
@click.option("--track-buffer", type=click.IntRange(0), default=30, show_default=True,
              help="With --track: frames an unseen object keeps its id.")
def run(model: Path, source_uris: tuple[str, ...], sources_file: Path | None, sink_specs: tuple[str, ...],
        conf: float | None, iou: float | None, max_det: int | None, backend: str, threads: int,
        max_frames: int | None, width: int | None, height: int | None, fps: float | None, loop: bool,
        drop_policy: str, timeout_s: float, imgsz: str | None, names: str | None, task: str | None,
        no_status: bool, no_fresh_frames: bool, replicas: int | None, batch_timeout_ms: float,
        as_json: bool, track: bool, track_buffer: int, check: bool) -> None:
    """Run MODEL (bundle or .onnx) on a stream and send the results to sinks. Runtime-only.

    Prints a live status line (FPS, latency, drops) and a summary at exit; Ctrl-C (exit 130) and SIGTERM
    (exit 0, e.g. `docker stop`) stop cleanly and flush the sinks.
    Example: edgevision run runs/quickstart/fp32 --source synthetic://?fps=30
    --sink video:demo.mp4 --sink http://127.0.0.1:8080

    Several --source (or --sources FILE.yaml): frames of all streams are batched into one inference call
    (one frame per stream, newest frame for live streams, every frame of files); --max-frames counts per
    stream; a stream that fails is reported and the others go on (exit 1 at the end if any failed).
    """
    holder: list[Any] = []
    stops = StopSignals(holder)  # first: the imports below build pydantic models (see entry)
    failures: list[str] = []
    ok = interrupted = False
    try:
        if check:  # golden tensors (edgevision.runtime.golden) instead of a stream
            _check_golden(model, bool(source_uris) or sources_file is not None, backend, threads, imgsz, names,
                          task)
        import time

        from edgevision.runtime.pipeline import Pipeline
        from edgevision.runtime.streams.spec import open_streams

        t_begin = time.monotonic()  # fps_wall counts from here: loading and opening the model included
        _setup_logging()
        # the model (sidecar + graph checks) first; sinks only check their targets (files appear with the first
        # result); the pipeline opens the model's sessions before it reads a frame or starts a sink
        bundle = _load(model, imgsz, names, task)
        factory = None
        if track:  # the detector keeps low-score boxes for the tracker's second stage (tracking.setup)
            from edgevision.runtime.tracking.setup import tracker_setup

            conf, factory = tracker_setup(conf, track_buffer)
        specs = _stream_specs(source_uris, sources_file)
        sinks = _make_sinks(sink_specs, bundle)
        per_stream: dict[int, list[Any]] = {}
        try:
            if len(specs) > 1 and any(sp.startswith("video:") for sp in sink_specs):
                from edgevision.runtime.errors import UserError

                raise UserError("--sink video:... with several streams would interleave them in one file; give "
                                "each stream its own video sink in --sources FILE.yaml")
            for i, spec in enumerate(specs):
                if spec.sinks:
                    per_stream[i] = _make_sinks(tuple(spec.sinks), bundle)
            sources, failures = open_streams(specs, width=width, height=height, fps=fps, loop=loop,
                                             timeout_s=timeout_s)
            opened = {s.stream_id for s in sources}
            for i in [i for i in per_stream if i not in opened]:
                _close_all(per_stream.pop(i))
            pipe = Pipeline(bundle, sources, sinks, drop_policy=drop_policy,  # type: ignore[arg-type]
                            max_frames=max_frames, conf=conf, iou=iou, max_det=max_det, backend=backend,
                            threads=threads, replicas=replicas, status=not no_status,
                            fresh_frames=not no_fresh_frames, stream_sinks=per_stream,
                            batch_timeout_s=batch_timeout_ms / 1000.0, tracker_factory=factory)
            pipe.metrics.t_begin = t_begin
            holder.append(pipe)  # from here a signal stops it (run_signals.StopSignals)
        except BaseException:
            _close_all(sinks + [s for group in per_stream.values() for s in group])
            raise
        try:
            pipe.run()
        except Exception as exc:
            if not stops.interrupted:
                raise
            # a stage broken by the stop: the user's Ctrl-C wins, its error is still shown
            click.echo(f"warning: while stopping: {exc}", err=True)
        if stops.interrupted:
            raise KeyboardInterrupt  # the summary says "interrupted", cli.main exits 130
        ok = True
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if holder:
            exit_if_stages_alive(holder[0])
            if holder[0].model_opened and (ok or interrupted):  # on an error: its one line only
                _print_summary(holder[0], failures, as_json, "interrupted" if interrupted else "ok")
        stops.restore()
    failed = failures + [f"stream {st['id']} ({st['name']}): {st['error']}"
                         for st in holder[0].metrics.snapshot().get("streams", []) if st.get("error")]
    if failed:
        click.echo(f"error: {len(failed)} of {len(specs)} streams failed: {'; '.join(failed)}", err=True)
        sys.exit(1)


def _stream_specs(source_uris: tuple[str, ...], sources_file: Path | None) -> list[Any]:
    from edgevision.runtime.errors import UserError
    from edgevision.runtime.streams.spec import MAX_STREAMS, StreamSpec, load_sources_file

    if sources_file is not None and source_uris:
        raise UserError("give streams with --source or --sources FILE.yaml, not both")
    if sources_file is not None:
        return load_sources_file(sources_file)
    if not source_uris:
        raise UserError("missing --source (or --sources FILE.yaml)")
    if len(source_uris) > MAX_STREAMS:
        raise UserError(f"--source given {len(source_uris)} times, at most {MAX_STREAMS} streams")
    return [StreamSpec(uri=u) for u in source_uris]


def _print_summary(pipe: Any, failures: list[str], as_json: bool, status: str) -> None:
    """The exit summary: text on stderr, or (``--json``) one JSON object on stdout."""
    if as_json:
        snap = pipe.metrics.snapshot()
        click.echo(json.dumps({**snap, "exit": status, "failed_to_open": failures}))
    else:
        click.echo(pipe.metrics.summary(), err=True)


def _check_golden(model: Path, with_source: bool, backend: str, threads: int,
                  imgsz: str | None, names: str | None, task: str | None) -> NoReturn:
    """``run --check``: print the golden comparison and exit 0/1 (2 without golden tensors, via UserError)."""
    if with_source:
        raise click.UsageError("--check runs the bundle's golden tensors; it takes no --source/--sources")
    from edgevision.runtime.golden import check_lines

    _setup_logging()
    status, lines = check_lines(_load(model, imgsz, names, task), backend, threads)
    for line in lines:
        click.echo(line)
    sys.exit(status)


def _make_sinks(specs: tuple[str, ...], bundle: Bundle) -> list[Any]:
    if not specs:
        return []
    from edgevision.runtime.errors import UserError

    try:
        from edgevision.runtime.sinks import make_sink
    except ImportError as exc:  # pragma: no cover - a broken install
        raise UserError(f"--sink needs edgevision.runtime.sinks, which failed to import ({exc})") from None
    side = bundle.sidecar
    skeleton = list(side.keypoints.skeleton) if side.keypoints else None
    sinks: list[Any] = []
    try:
        for spec in specs:
            sinks.append(make_sink(spec, class_names=side.class_names, skeleton=skeleton))
    except BaseException:
        _close_all(sinks)
        raise
    return sinks


def _close_all(sinks: list[Any]) -> None:
    for s in sinks:
        try:
            s.close()
        except Exception as exc:  # closing after another error: report, keep the first error
            click.echo(f"warning: closing sink failed: {exc}", err=True)


def runtime_commands() -> list[click.Command]:
    return [bench, run]
