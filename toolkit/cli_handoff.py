"""`edgevision export-triton` and `export-deepstream`: hand a bundle over to NVIDIA Triton or DeepStream.

Runtime-side (Python 3.8, no torch): they read the bundle's ONNX graph and sidecar only, so they run on a Jetson.
"""

from __future__ import annotations

from pathlib import Path

import click

_PATH = click.Path(path_type=Path)


@click.command(name="export-triton")
@click.argument("bundle", type=_PATH)
@click.option("--out", type=_PATH, required=True,
              help="Triton model repository; the model goes to OUT/NAME (other models in OUT are left alone).")
@click.option("--name", default=None, help="Model name (default: the bundle's name).")
@click.option("--engine", default=None,
              help="Serve this TensorRT plan of the bundle (its file, or its device profile) instead of the ONNX.")
@click.option("--max-batch", type=int, default=None,
              help="max_batch_size for a dynamic-batch model (default: 8; a plan: its device profile's max_batch).")
@click.option("--instances", type=int, default=1, show_default=True, help="Execution instances (instance_group).")
@click.option("--kind", type=click.Choice(["gpu", "cpu"]), default="gpu", show_default=True,
              help="instance_group kind (a TensorRT plan: gpu only).")
@click.option("--queue-delay-us", type=click.IntRange(0), default=0, show_default=True,
              help="Dynamic batcher max_queue_delay_microseconds.")
@click.option("--force", is_flag=True, help="Replace OUT/NAME even if it was not written by export-triton.")
def export_triton_cmd(bundle: Path, out: Path, name: str | None, engine: str | None, max_batch: int | None,
                      instances: int, kind: str, queue_delay_us: int, force: bool) -> None:
    """Write BUNDLE as a Triton model: OUT/NAME/config.pbtxt + 1/model.onnx (or 1/model.plan), labels, README.

    Batching (max_batch_size, dynamic_batching) only when the model has a dynamic batch axis. Postprocessing
    is in the graph for the 'nms' output layout, else a client step the README describes.
    """
    from .handoff_triton import export_triton

    target = export_triton(bundle, out, name=name, engine=engine, max_batch=max_batch, instances=instances,
                           kind=kind, queue_delay_us=queue_delay_us, force=force)
    click.echo(f"wrote {target} (config.pbtxt, 1/{'model.plan' if engine else 'model.onnx'}, labels.txt, "
               "README.md); serve with: tritonserver --model-repository " + str(out))


@click.command(name="export-deepstream")
@click.argument("bundle", type=_PATH)
@click.option("--out", type=_PATH, required=True, help="Folder to write (replaced whole).")
@click.option("--engine", default=None,
              help="Also ship this TensorRT plan of the bundle (its file, or its device profile) as model-engine-file.")
@click.option("--batch-size", type=int, default=None, help="nvinfer batch-size for a dynamic-batch model (default 1).")
@click.option("--gpu-id", type=click.IntRange(0), default=0, show_default=True)
@click.option("--force", is_flag=True, help="Replace OUT even if it is a non-empty folder not written by this command.")
def export_deepstream_cmd(bundle: Path, out: Path, engine: str | None, batch_size: int | None, gpu_id: int,
                          force: bool) -> None:
    """Write BUNDLE as a DeepStream nvinfer primary detector: config_infer_primary.txt, labels.txt, the model.

    The config's comments and README name the custom bbox parser each output layout needs.
    """
    from .handoff_deepstream import CONFIG_NAME, export_deepstream

    target = export_deepstream(bundle, out, engine=engine, batch_size=batch_size, gpu_id=gpu_id, force=force)
    click.echo(f"wrote {target / CONFIG_NAME} (+ labels.txt, the model, README.md): set a bbox parser as its "
               "comments say before running it")


def handoff_commands() -> list[click.Command]:
    return [export_triton_cmd, export_deepstream_cmd]
