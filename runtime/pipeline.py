"""Threaded stream pipeline: capture -> preprocess -> inference -> postprocess -> sinks.

Each stage runs in its own thread and hands work on through a small bounded channel, so decoding frame
n+1, preprocessing n, running the model on n-1 and writing n-2 overlap (OpenCV and the inference engines
release the GIL while they work). Two drop policies:

- ``lossless`` (files, folders): a full channel blocks its producer; every frame is processed, in order.
- ``newest`` (live sources): channels hold one item and a new item replaces a waiting one (counted as
  dropped), so a slow model never builds a backlog: the frame that enters inference is always the freshest,
  and capture -> result latency stays about one inference time however fast the source is. Here the
  inference thread preprocesses the frame it takes, instead of a preprocess thread preparing every captured
  frame: under overload most frames are dropped, and preprocessing them only took CPU from inference
  (measured on the 2-core VM, quickstart detector on a 400 fps source, 5 alternating runs: 2800 of 3000
  frames preprocessed for 1000 inferred; moving it inline cut capture -> result latency from 12.5 to 9.5 ms
  and raised throughput from 95 to 121 fps; the 640x640 pose model on a 60 fps source: 53 -> 49 ms).
  With ``fresh_frames`` (default) inference may wait, under half a source period, for a fresher frame
  than the one waiting (``fresh.FreshFrames``: about 20% lower latency under overload, 10-15% fewer
  results per second).

TensorRT: the inference thread hands each raw frame to the engine's ``infer_image``, which letterboxes,
normalises and transposes it in one CUDA kernel before the engine runs (``preprocess_gpu``), so on a Jetson
the CPU only decodes; there is no preprocess thread (the CUDA context belongs to the inference thread).

Inference replicas (throughput mode). On a small CPU, one ONNX Runtime session using every core
synchronises its threads inside each operator: whenever decoding or preprocessing takes a core, the whole
operator waits for it. For lossless runs on the CPU the pipeline therefore runs two sessions with half the
threads each on alternate frames (results are put back in order): on the 2-core development machine that
is 10-15% more backend throughput and the other stages fit in between (see ``runtime/bench.py``). Live
sources keep one session with every core, which gives the lowest latency per frame
(``model_plan.plan_inference`` decides).

Several sources (``source=[...]``): each is read by its own thread into ``streams.StreamMux``, which hands out
fair round-robin batches (one frame per stream, newest frame for live streams, lossless for files, a batching
timeout for a slow one); each batch is one inference call where the model's batch axis allows it
(``streams.batching``), and every result carries its stream id and source name. A source that fails is
reported once and the others go on. Items between stages are batches; a single source makes batches of one.

Stopping (``stop()``, Ctrl-C during ``run()``, leaving the ``with`` block or breaking out of a ``for``
loop) discards frames not yet inferred, lets results already computed reach the sinks, and closes (flushes)
every sink; ``run()`` returns only once every stage thread has ended (``stage_threads``; the run/iterate/stop
surface is ``pipeline_control``). The postprocess -> sink channel never drops, so every computed result is
written. When given a bundle (not ready ``Predictor``s),
each backend is opened, used and closed in its inference thread, which is what a CUDA context (TensorRT)
requires; ``start()`` waits for them to open before it reads a frame or starts a sink, so a model that cannot
open fails first and leaves no output. Stages hand frames on through ``channel.Channel``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

from .backends.choice import choose_backend
from .bundle import Bundle
from .channel import END, Channel
from .errors import InternalError, UserError
from .frames import Frame
from .fresh import FreshFrames
from .lazy import cv2 as _cv2
from .metrics import Metrics, StatusPrinter
from .model_plan import load_model, plan_inference
from .pipeline_control import STOP_TIMEOUT_S, PipelineControl
from .predictor import Predictor
from .results import Detections
from .sinks.base import Sink, SinkContext
from .sources import Source
from .sources.base import timed_frames
from .stage_threads import StageThreads
from .streams.batching import BatchLimit, infer_frames, postprocess_chunks, preprocess_frames
from .streams.mux import StreamMux
from .streams.routing import SinkRouter
from .streams.spec import gather_sources

__all__ = ["STOP_TIMEOUT_S", "DropPolicy", "Pipeline"]

log = logging.getLogger("edgevision.pipeline")
DropPolicy = Literal["auto", "newest", "lossless"]


class Pipeline(PipelineControl):
    """Run a model over frame sources into sinks; iterate it for ``Detections`` or call ``run()``.

    ``model``: a ``Predictor`` or a list of them (replicas; used as they are, not closed), a ``Bundle``, a
    bundle directory or an ``.onnx`` file. ``source``: a ``Source`` or a URI for ``open_source``, or a list of
    them (several streams: ids 0, 1, ... in list order unless the sources carry distinct ones; ``max_frames``
    counts per stream).
    ``sinks``: objects with ``write(frame, detections)`` and ``close()`` (``sinks.Sink``) for every result;
    ``stream_sinks``: stream id -> sinks for that stream only. ``queue_size`` bounds each channel in lossless
    mode. ``conf``/``iou``/``max_det``/``backend``/``threads``/``replicas`` configure the predictors built from
    a bundle (``plan_inference``). ``opencv_threads`` sets OpenCV's own thread pool (process-wide: the stages
    already run in parallel, so per-call threads only contend with inference); None leaves it alone.
    ``fresh_frames`` (newest policy, one source): trade a stale waiting frame for the next one when that
    lowers latency (module docstring); False favours frames per second. ``batch_timeout_s`` (several
    sources): how old a waiting frame may grow while a batch waits for the other streams.
    ``tracker_factory``: builds one tracker per stream (``update(det, frame) -> det``).
    """

    def __init__(self, model: Predictor | Sequence[Predictor] | Bundle | str | Path,
                 source: Source | str | Sequence[Source | str], sinks: Sequence[Sink] = (), *, queue_size: int = 4,
                 drop_policy: DropPolicy = "auto", max_frames: int | None = None, conf: float | None = None,
                 iou: float | None = None, max_det: int | None = None, backend: str = "auto", threads: int = 0,
                 replicas: int | None = None, status: bool = False, opencv_threads: int | None = 1,
                 fresh_frames: bool = True, stream_sinks: Mapping[int, Sequence[Sink]] | None = None,
                 batch_timeout_s: float = 0.01, tracker_factory: Callable[[], Any] | None = None) -> None:
        if drop_policy not in ("auto", "newest", "lossless"):
            raise UserError(f"drop_policy must be auto, newest or lossless, got {drop_policy!r}")
        given = [model] if isinstance(model, Predictor) else list(model) if isinstance(model, (list, tuple)) else []
        self._given = bool(given)
        self.bundle = given[0].bundle if given else load_model(cast("Bundle | str | Path", model))
        self.sources = gather_sources(source)
        self.source = self.sources[0]
        self.sinks = list(sinks)
        self._router = SinkRouter(sinks, stream_sinks)
        live = [drop_policy == "newest" or (drop_policy == "auto" and s.is_live) for s in self.sources]
        self.newest = any(live)
        self.max_frames = max_frames
        self._backend_opts: dict[str, Any] = {}
        self._choice = None if given else choose_backend(self.bundle, backend)
        if self._choice is None:
            self._replicas = len(given)
        else:
            self._replicas, self._backend_opts = plan_inference(
                self._choice.path, self._choice.kind, throughput=not self.newest, threads=threads, replicas=replicas)
            if self.newest:
                self._replicas = 1  # one frame in flight: the lowest latency, nothing to reorder
        self._predictors: list[Predictor | None] = list(given) or [None] * self._replicas
        self._pred_opts: dict[str, Any] = {"conf": conf, "iou": iou, "max_det": max_det}
        model_file = self._choice.path if self._choice is not None else self.bundle.model_path
        multi = len(self.sources) > 1
        streams = [(s.stream_id, s.name, s.uri) for s in self.sources] if multi else []
        self.metrics = Metrics(source=", ".join(s.uri for s in self.sources), model=str(model_file),
                               live=any(s.is_live for s in self.sources), streams=streams)
        self._mux = StreamMux(self.sources, newest=live, capacity=queue_size, timeout_s=batch_timeout_s,
                              max_frames=max_frames, on_capture=lambda sid, dt: self.metrics.add("capture", dt),
                              on_drop=lambda sid, n: self.metrics.add_dropped(n, sid),
                              on_error=self.metrics.stream_error) if multi else None
        # several streams: channels hold batches and the per-stream queues buffer already; more is only latency
        cap = 1 if self.newest else max(2 if multi else queue_size, self._replicas)
        self._chans = [Channel(cap, self.newest, self.metrics.add_dropped) for _ in range(3)]
        # postprocess -> sinks is lossless under both policies: a result counted as computed always reaches the
        # sinks (a newest-policy drop here lost 131 of 46,172 results on a long overloaded run; issue #19)
        self._chans.append(Channel(max(queue_size, self._replicas), False, self.metrics.add_dropped))
        self._out: Channel | None = None
        self._ready = threading.Event()
        self._stages = StageThreads()  # waits survive Ctrl-C (see stage_threads)
        self._error: BaseException | None = None
        self.model_opened = False  # set once every inference replica opened its model
        self._sinks_started = False
        self._opened_n = 0
        self._all_open = threading.Event()
        self._lock = threading.Lock()
        self._batch_once = threading.Lock()  # the fixed-batch warning: said once for all replicas
        self._workers_left = self._replicas
        self._started = False
        self._status = StatusPrinter(self.metrics) if status else None
        self._opencv_threads = opencv_threads
        self._fresh = FreshFrames(self.metrics.add_dropped) if fresh_frames and self.newest and not multi else None
        self._tracker_factory = tracker_factory
        self._trackers: dict[int, Any] = {}
        if self._choice is None:
            device_pre = all(p.device_preprocess for p in given)
        else:
            device_pre = self._choice.kind == "tensorrt"
        # the inference thread preprocesses (no preprocess thread): newest policy, or preprocessing on the GPU
        self._inline_pre = self.newest or device_pre

    @property
    def predictor(self) -> Predictor:
        """The first inference replica (pre/postprocessing use it; all replicas share the bundle)."""
        pred = self._predictors[0]
        if pred is None:
            raise UserError("the pipeline's model failed to open")
        return pred

    # -- stage bodies (each runs in its own thread) ---------------------------------------------------
    def _capture(self) -> None:
        """One source: frames as batches of one. Several (lossless): the mux's batches, in turn."""
        out = self._chans[0]
        if self._mux is not None:
            while (batch := self._mux.get()) is not END:
                if not out.put(batch):
                    break
            return
        try:
            capture = functools.partial(self.metrics.add, "capture")
            with contextlib.closing(timed_frames(self.source, self.max_frames, capture)) as frames:
                for n, frame in enumerate(frames):
                    if self._fresh is not None:
                        self._fresh.observe(frame.timestamp)
                    if not out.put((n, [frame])):
                        break
        finally:
            self.source.close()

    def _preprocess(self) -> None:
        inp, out = self._chans[0], self._chans[1]
        self._ready.wait()
        pred = self.predictor
        while (item := inp.get()) is not END:
            seq, frames = item
            if not out.put((seq, frames, preprocess_frames(pred, frames, self.metrics.add))):
                break

    def _input(self) -> Any:
        """Where inference takes its work: the mux itself (several live streams), else a channel."""
        if self._mux is not None and self.newest:
            return self._mux
        return self._chans[0 if self._inline_pre else 1]

    def _infer(self, replica: int) -> None:
        inline = self._inline_pre
        inp, out = self._input(), self._chans[2]
        own = not self._given
        try:
            if own and self._choice is not None:
                be = self._choice.open(**self._backend_opts)  # in this thread: TensorRT's context is made here
                self._predictors[replica] = Predictor(self.bundle, be, **self._pred_opts)
            pred = self._predictors[replica]
            if pred is None:  # pragma: no cover - set just above or given
                raise InternalError("inference replica has no predictor")
            limit = BatchLimit(pred, streams=len(self.sources), once=self._batch_once)
            if replica == 0:
                self.metrics.info["backend"] = pred.backend.name
                self._ready.set()
            with self._lock:
                self._opened_n += 1
                if self._opened_n == self._replicas:
                    self._all_open.set()
            while (item := inp.get()) is not END:
                if self._fresh is not None:  # newest policy, one source only (inline there)
                    item = self._fresh.pick(inp, item)
                seq, frames = item[0], item[1]
                chunks = infer_frames(pred, limit, frames, self.metrics.add, None if inline else item[2])
                if not out.put((seq, frames, chunks)):
                    break
        finally:
            if own and self._predictors[replica] is not None:
                self._predictors[replica].close()  # type: ignore[union-attr]
            with self._lock:
                self._workers_left -= 1
                if self._workers_left == 0:
                    out.close()

    def _postprocess(self) -> None:
        inp, out = self._chans[2], self._chans[3]
        self._ready.wait()
        pred = self.predictor
        multi = self._mux is not None
        pending: dict[int, tuple[Any, ...]] = {}  # replicas finish out of order: put results back in order
        expected = 0
        while True:
            item = inp.get()
            if item is END:
                ready = [pending.pop(k) for k in sorted(pending)]  # gaps only after stop(): flush the rest
            else:
                pending[item[0]] = item
                ready = []
                while expected in pending or (self.newest and pending):
                    ready.append(pending.pop(expected if expected in pending else min(pending)))
                    expected = ready[-1][0] + 1
            for _, frames, chunks in ready:
                t0 = time.perf_counter()
                dets = postprocess_chunks(pred, chunks)
                self.metrics.add("postprocess", time.perf_counter() - t0)
                for frame, det in zip(frames, dets):
                    det.frame_index, det.stream_id = frame.index, frame.stream_id
                    t = time.monotonic()
                    det.meta.update({"t_capture": frame.timestamp, "t_result": t, "source": frame.source,
                                     "latency_ms": (t - frame.timestamp) * 1000,
                                     "image_size": [frame.height, frame.width]})
                    if frame.name:
                        det.meta["file"] = frame.name
                    det = self._track(frame, det)
                    self.metrics.add_result(t - frame.timestamp, t, frame.stream_id if multi else None)
                    if not out.put((frame, det)):
                        return
            if item is END:
                return

    def _tracker_for(self, stream_id: int) -> Any:
        if stream_id not in self._trackers:
            self._trackers[stream_id] = cast("Callable[[], Any]", self._tracker_factory)()
        return self._trackers[stream_id]

    def _track(self, frame: Frame, det: Detections) -> Detections:
        """The one per-stream tracking step (postprocess thread): ``det`` unchanged without a tracker factory."""
        if self._tracker_factory is None:
            return det
        return cast(Detections, self._tracker_for(det.stream_id).update(det, frame))

    def _context(self, stream_id: int | None) -> SinkContext:
        src = self.source if stream_id is None else next(s for s in self.sources if s.stream_id == stream_id)
        side = self.bundle.sidecar
        return SinkContext(class_names=list(side.class_names), task=side.task, source=src.uri, fps=src.fps,
                           is_live=src.is_live, snapshot=self.metrics.snapshot,
                           keypoint_skeleton=list(side.keypoints.skeleton) if side.keypoints else [])

    def _sink(self) -> None:
        inp, router = self._chans[3], self._router
        error: BaseException | None = None
        try:
            router.start(self._context)
            while (item := inp.get()) is not END:
                t0 = time.perf_counter()
                router.write(*item)
                if router:
                    self.metrics.add("sink", time.perf_counter() - t0)
                if self._out is not None and not self._out.put(item):
                    break
        except BaseException as exc:  # the run's error: the sinks' close errors join it, never replace it
            error = exc
        finally:
            if (error := router.close(error)) is not None:
                self._fail(error)

    # -- control --------------------------------------------------------------------------------------
    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = exc
        self._ready.set()
        self._all_open.set()
        self._close_sources()
        for ch in (*self._chans, *([self._out] if self._out is not None else [])):
            ch.cancel()

    def _close_sources(self) -> None:
        if self._mux is not None:
            self._mux.close()
        for src in self.sources:
            src.close()

    def _spawn(self, name: str, body: Callable[[], None], inp: Channel | StreamMux | None,
               out: Channel | None) -> None:
        def release() -> None:
            if inp is not None:  # release a producer blocked on a full channel
                inp.cancel()
            if out is not None:
                out.close()

        self._stages.spawn(name, body, self._fail, release)

    def start(self, collect: bool = False) -> Pipeline:
        """Launch the stage threads (``collect``: keep results for iteration)."""
        if self._started:
            raise UserError("a Pipeline runs once; create a new one to run again")
        self._started = True
        if self._opencv_threads is not None:
            _cv2().setNumThreads(int(self._opencv_threads))
        if collect:
            # room for a whole batch: a newest-policy channel of one would keep only each batch's last stream
            self._out = Channel(max(self._chans[0].capacity, len(self.sources)), self.newest, self.metrics.add_dropped)
        c = self._chans
        # the model first: a model that cannot be opened fails here, before a frame is read or a sink started
        for r in range(self._replicas):  # the last replica to finish closes c[2]
            self._spawn(f"infer{r}", functools.partial(self._infer, r), self._input() if r == 0 else None, None)
        try:
            self._all_open.wait()
        except KeyboardInterrupt:
            self._close_unstarted_sinks()
            raise
        if self._error is not None:
            self._close_sources()
            self._close_unstarted_sinks()
            self.join()  # re-raises the model's error
        self.model_opened = True
        self.metrics.running = True
        self.metrics.t_start = time.monotonic()
        for i in range(len(self._mux) if self._mux is not None else 0):
            self._spawn(f"read{i}", self._mux.reader(i), None, None)  # type: ignore[union-attr]
        if self._mux is None or not self.newest:
            self._spawn("capture", self._capture, None, c[0])
        if not self._inline_pre:
            self._spawn("preprocess", self._preprocess, c[0], c[1])
        self._spawn("postprocess", self._postprocess, c[2], c[3])
        self._sinks_started = True
        self._spawn("sink", self._sink, c[3], self._out)
        if self._status is not None:
            self._status.start()
        return self

    def stop(self) -> None:
        """Stop capturing; frames not yet inferred are dropped, computed results still reach the sinks."""
        self._close_sources()
        self._chans[0].cancel()
        self._chans[1].cancel()

    def _close_unstarted_sinks(self) -> None:
        """The sink thread closes the sinks; when the run ends before it started, close them here."""
        if not self._sinks_started and (exc := self._router.close()) is not None:
            log.error("closing a sink failed: %s", exc)
        self._sinks_started = True
