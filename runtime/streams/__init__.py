"""Several streams through one model: per-stream readers and fair batches (``mux``), one inference call per
batch within the model's batch axis (``batching``), results routed to global and per-stream sinks
(``routing``), and the ``--sources`` YAML file (``spec``). ``Pipeline`` uses them when given several sources.
"""

from __future__ import annotations

from .batching import BatchLimit, infer_frames, postprocess_chunks, preprocess_frames
from .mux import StreamMux
from .routing import SinkRouter

__all__ = ["BatchLimit", "SinkRouter", "StreamMux", "infer_frames", "postprocess_chunks", "preprocess_frames"]
