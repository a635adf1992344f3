"""`edgevision serve`: the HTTP inference service (runtime-side: imports only edgevision.runtime; the `serve`
extra brings Starlette and uvicorn)."""

from __future__ import annotations

from pathlib import Path

import click

from .cli_runtime import _BACKENDS, _load, _onnx_options, _setup_logging


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; beyond loopback it needs --token (or --insecure).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0: a free port.")
@click.option("--token", envvar="EDGEVISION_SERVE_TOKEN", default=None,
              help="Clients must send 'Authorization: Bearer TOKEN' (or set EDGEVISION_SERVE_TOKEN).")
@click.option("--insecure", is_flag=True, help="Serve beyond loopback without a token.")
@click.option("--max-batch", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Largest batch of concurrent requests per inference call (a fixed-batch model uses its own).")
@click.option("--batch-timeout-ms", type=click.FloatRange(0, 1000), default=2.0, show_default=True,
              help="How long the first request of a batch waits for others.")
@click.option("--max-body-mb", type=click.FloatRange(0, min_open=True), default=20.0, show_default=True,
              help="Request body limit (413 beyond it, refused before it is read).")
@click.option("--max-pixels", type=click.IntRange(1), default=4096 * 4096, show_default=True,
              help="Image size limit, checked from the header before decoding (413 beyond it).")
@click.option("--max-connections", type=click.IntRange(1), default=256, show_default=True,
              help="Concurrent connections and requests (uvicorn answers 503 beyond them).")
@click.option("--max-inflight", type=click.IntRange(1), default=None,
              help="Requests decoded or inferred at once; others wait holding only their body "
                   "(default 2 x max batch + 2).")
@click.option("--keepalive", "keepalive_s", type=click.IntRange(1), default=5,
              show_default=True, help="Seconds an idle keep-alive connection stays open.")
@click.option("--conf", type=click.FloatRange(0, 1), default=None, help="Score threshold (default: bundle).")
@click.option("--iou", type=click.FloatRange(0, 1, min_open=True), default=None, help="NMS IoU (default: bundle).")
@click.option("--max-det", type=click.IntRange(1), default=None, help="Detections per image (default: bundle).")
@click.option("--backend", type=_BACKENDS, default="auto", show_default=True,
              help="auto: the bundle's TensorRT engine for this device if one matches, else ONNX Runtime.")
@click.option("--threads", type=click.IntRange(0), default=0, show_default=True,
              help="ONNX Runtime threads (0 = all cores).")
@_onnx_options
def serve(model: Path, host: str, port: int, token: str | None, insecure: bool, max_batch: int,
          batch_timeout_ms: float, max_body_mb: float, max_pixels: int, max_connections: int,
          max_inflight: int | None, keepalive_s: int, conf: float | None, iou: float | None,
          max_det: int | None, backend: str, threads: int, imgsz: str | None, names: str | None,
          task: str | None) -> None:
    """Serve MODEL (bundle or .onnx) over HTTP: POST a JPEG/PNG to /v1/detect, get its detections as JSON.

    Concurrent requests are batched into one inference call (a dynamic-batch model; a batch-1 model runs
    them one by one). GET /health (open) and /metrics (Prometheus). Runtime-only; needs the `serve` extra.
    """
    from edgevision.runtime.serve import ServeConfig, require_stack

    config = ServeConfig(host=host, port=port, token=token, insecure=insecure, max_batch=max_batch,
                         batch_timeout_ms=batch_timeout_ms, max_body_bytes=int(max_body_mb * (1 << 20)),
                         max_pixels=max_pixels, max_connections=max_connections, max_inflight=max_inflight,
                         keepalive_s=keepalive_s)
    config.check()
    require_stack()
    from edgevision.runtime.serve.server import serve as run_service

    _setup_logging()
    bundle = _load(model, imgsz, names, task)

    def ready(url: str) -> None:
        click.echo(f"edgevision serve: {url}/v1/detect ({bundle.root}; Ctrl-C stops)", err=True)

    run_service(bundle, config, backend=backend, threads=threads, conf=conf, iou=iou, max_det=max_det,
                on_ready=ready)
