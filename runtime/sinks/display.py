"""``display``: a window per stream through ``cv2.imshow`` (needs a screen and an OpenCV with GUI support)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence

from ..draw import _cv2, draw_detections
from ..errors import UserError
from ..frames import Frame
from ..results import Detections
from .base import SinkContext


class DisplaySink:
    """A window per stream via ``cv2.imshow``; ``q`` or Esc in the window stops the run like Ctrl-C."""

    def __init__(self, class_names: Sequence[str] | None = None,
                 skeleton: Sequence[tuple[int, int]] | None = None, title: str = "edgevision") -> None:
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise UserError("display sink: no screen ($DISPLAY is not set); use --sink http to watch in a "
                            "browser or --sink video:out.mp4")
        cv2 = _cv2()
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise UserError("display sink: this OpenCV build has no GUI support (opencv-python-headless?); "
                            "use --sink http to watch in a browser") from None
        self.title = title
        self.class_names = list(class_names) if class_names is not None else None
        self.skeleton = list(skeleton) if skeleton is not None else None
        self.stop_requested = False
        self._windows: set[str] = {title}

    def start(self, ctx: SinkContext) -> None:
        if self.class_names is None:
            self.class_names = list(ctx.class_names)
        if self.skeleton is None:
            self.skeleton = list(ctx.keypoint_skeleton)

    def write(self, frame: Frame, detections: Detections) -> None:
        cv2 = _cv2()
        name = self.title if frame.stream_id == 0 else f"{self.title} [{frame.stream_id}]"
        self._windows.add(name)
        cv2.imshow(name, draw_detections(frame.image, detections, self.class_names, self.skeleton))
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27) and not self.stop_requested:
            self.stop_requested = True
            import _thread

            _thread.interrupt_main()  # the pipeline treats it as Ctrl-C: stops cleanly, flushes sinks

    def close(self) -> None:
        cv2 = _cv2()
        for name in self._windows:
            with contextlib.suppress(cv2.error):
                cv2.destroyWindow(name)
        self._windows.clear()
