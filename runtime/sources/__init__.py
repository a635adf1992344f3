"""Frame sources, one module per kind: video files, image folders/globs, USB/CSI cameras, RTSP/HTTP streams, synthetic.

``open_source(uri)`` returns a ``Source``: an iterator of ``Frame`` (BGR uint8, capture timestamp, index,
stream id) with ``is_live`` (drives the pipeline's drop policy) and ``close()``.

=========================  ==================================================================  ========
URI                        what                                                                 live
=========================  ==================================================================  ========
``clip.mp4``, ``file://``  video file through OpenCV (FFmpeg); ends cleanly, ``loop`` rewinds       no
``dir/``, ``dir/*.jpg``    image folder (natural sort: 2 before 10) or glob; single image too      no
``v4l2:///dev/video0``     USB camera (V4L2; ``v4l2://0`` = index 0)                               yes
``csi://0``                Jetson CSI camera: GStreamer ``nvarguscamerasrc`` pipeline              yes
``rtsp://``, ``http(s)://``  network stream via FFmpeg; open/read timeouts                        yes
``synthetic://?fps=30``    built-in scene generator (``width height seed frames objects pool``)   if fps
=========================  ==================================================================  ========

Decoding is OpenCV's (``cv2.VideoCapture``); only the URI dispatch, timeouts, reconnection and pacing are
written here. A live source whose stream drops reconnects with exponential backoff (0.5 s doubling to 10 s)
and logs it; opening fails fast with a one-line ``UserError`` naming the URI (an unreachable stream is given
up after ``timeout_s``, never a hang). A file or folder paced with ``fps`` behaves like a camera (live).

Modules: ``base`` (the ``Source`` iterator and limits), ``capture`` (OpenCV captures: files, cameras, CSI,
streams), ``images`` (folders and globs), ``synthetic`` (the ``synthetic://`` source over the public scene
renderer ``edgevision.runtime.synthetic``), ``uri`` (``open_source``: the scheme dispatch). A new source kind
is one module plus one line in ``uri``.
"""

from __future__ import annotations

from .base import IMAGE_SUFFIXES, MAX_FPS, MAX_FRAME_SIDE, SCHEMES, Source
from .capture import CaptureSource, csi_pipeline
from .images import ImageSource
from .uri import open_source

__all__ = ["IMAGE_SUFFIXES", "MAX_FPS", "MAX_FRAME_SIDE", "SCHEMES", "CaptureSource", "ImageSource", "Source",
           "csi_pipeline", "open_source"]
