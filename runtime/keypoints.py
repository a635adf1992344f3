"""The COCO person keypoints: names, skeleton and OKS sigmas, in the one place both halves read them.

The runtime needs them to give a bare 17-keypoint pose ONNX (no names in its metadata, the usual case for
a YOLOv8/11-pose export) COCO's limbs to draw and COCO's sigmas to score OKS; the toolkit's COCO reader,
pose loss, flip augmentation, synthetic pose generator and sidecar writer re-export them from
``edgevision.toolkit.data.coco``. Pure data: importing this module imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

__all__ = ["COCO_KEYPOINT_NAMES", "COCO_SIGMAS", "COCO_SKELETON", "default_keypoint_spec"]

COCO_KEYPOINT_NAMES: list[str] = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
]
#: COCO's person skeleton, 0-based (the json's is 1-based).
COCO_SKELETON: list[tuple[int, int]] = [
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9),
    (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
]
#: OKS sigmas of the 17 COCO keypoints (pycocotools ``Params.setKpParams``).
COCO_SIGMAS: list[float] = [0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
                            0.107, 0.107, 0.087, 0.087, 0.089, 0.089]


def default_keypoint_spec(num_keypoints: int) -> dict[str, Any]:
    """Sidecar ``keypoints`` for a model that names none of its ``K`` keypoints: COCO's names, skeleton and
    sigmas when ``K == 17`` (the COCO person layout every YOLO-pose export uses), else ``kpt0..`` with no
    skeleton and no sigmas (the evaluation then uses uniform ``1/K``, as Ultralytics does)."""
    if num_keypoints == len(COCO_KEYPOINT_NAMES):
        return {"names": list(COCO_KEYPOINT_NAMES), "skeleton": [list(p) for p in COCO_SKELETON],
                "sigmas": list(COCO_SIGMAS)}
    return {"names": [f"kpt{i}" for i in range(num_keypoints)], "skeleton": [], "sigmas": []}
