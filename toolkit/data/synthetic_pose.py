"""Built-in synthetic pose dataset: articulated mannequin figures with the 17 COCO keypoints, COCO format.

Hand-written with numpy + OpenCV (no renderer or asset download): the pose quickstart must train with no
data of its own, deterministically by seed, in seconds. Each figure is a 2-D mannequin with human
proportions: a torso wider than the shoulder and hip joints, tapered limbs (widths as fractions of the
height: upper arm 6.5% to 5%, forearm 5% to 3.8%, thigh 11% to 7%, shin 7% to 4.5%), hands, shoes, a head
ellipse with eyes/nose/ears and joint knobs, in per-figure shirt/trouser/skin/shoe colours, sometimes long
sleeves or shorts. Its silhouette area, the COCO ``area`` that scales OKS, is about 0.22 x height^2 (a
real adult's frontal area is about 0.2 x height^2); silhouette/box is about 0.5 standing with the arms
down and 0.35 (median) over the pose mix. What makes it a real (if small) pose problem:

- pose: anatomically plausible angles drawn per limb from a mixture (arms hanging, lifted or raised, the
  elbow straight or flexed either way with some foreshortening; legs standing, in a wide stance or a
  squat/lunge; no knee or elbow bent backwards), torso lean, head tilt and yaw (a turned head hides one
  ear: labelled, not visible), whole-body rotation and width jitter;
- scale: figure height from 30% to 80% of the image; 1..``max_objects`` figures per image, placed so they
  overlap; figures are drawn back to front, and clutter shapes may be drawn in front of them;
- backgrounds: the detection generator's textured/cluttered backgrounds
  (``edgevision.runtime.synthetic``) plus extra shape clutter, then noise and blur.

Labels follow COCO: ``v=2`` visible, ``v=1`` inside the image but hidden (by another figure, a clutter
shape or its own head), ``v=0`` with ``x=y=0`` when outside the image. A figure is kept only when at least
40% of its in-frame silhouette stays visible and 6 keypoints are labelled; otherwise it is not drawn at
all, so every drawn figure is annotated. ``bbox`` is the tight box of the figure's silhouette inside the
image and ``area`` its silhouette area inside the image (occluded parts included: it is the OKS scale).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgevision.runtime.synthetic import background, make_shape_contours, rasterize

from .coco import COCO_KEYPOINT_NAMES, COCO_SKELETON
from .synthetic import SyntheticPaths, check_sizes, write_coco_split, write_once

__all__ = ["GENERATOR_VERSION", "KEYPOINT_NAMES", "SKELETON", "Figure", "generate_pose_dataset",
           "render_figure", "render_pose_scene", "sample_figure"]

GENERATOR_VERSION = 4
KEYPOINT_NAMES = COCO_KEYPOINT_NAMES
SKELETON = COCO_SKELETON
_SHIFT = 4  # OpenCV fractional bits for sub-pixel drawing
_MIN_VISIBLE = 0.4
_MIN_LABELLED = 6


@dataclass
class Figure:
    """One mannequin: keypoints ``[17, 2]`` (image pixels), head ellipse and clothing."""

    kpts: np.ndarray
    height: float
    head: tuple[float, float, float, float, float]  # cx, cy, rx, ry, angle (deg)
    neck: np.ndarray  # [2] base of the neck (between shoulders)
    ear_hidden: int  # index of a hidden ear (3 or 4), -1 for none
    shirt: np.ndarray
    trousers: np.ndarray
    skin: np.ndarray
    shoes: np.ndarray = field(default_factory=lambda: np.full(3, 40.0))
    long_sleeves: bool = False
    shorts: bool = False


def _rot(v: np.ndarray, deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _arm_pose(rng: np.random.Generator) -> tuple[float, float, float]:
    """(abduction, elbow, forearm foreshortening) for one arm, degrees in the image plane. Abduction
    0 = hanging, 90 = sideways, 180 = straight up; elbow > 0 turns the forearm further outward/up, < 0
    towards the midline (the elbow flexes one way; which way it shows depends on the arm's rotation)."""
    u = rng.random()
    abd = rng.normal(7, 6) if u < 0.55 else rng.uniform(20, 95) if u < 0.85 else rng.uniform(95, 165)
    v = rng.random()
    if v < 0.45:  # nearly straight
        return float(np.clip(abd, -8, 170)), float(rng.normal(0, 8)), 1.0
    elbow = -rng.uniform(20, 140) if v < 0.8 else rng.uniform(20, 120)
    return float(np.clip(abd, -8, 170)), float(elbow), float(rng.uniform(0.75, 1.0))


def _leg_pose(rng: np.random.Generator) -> tuple[float, float, float]:
    """(abduction, knee, thigh foreshortening) for one leg: mostly standing, some wide stances and
    squats/lunges (bent knee seen from the front: a shortened thigh, the shin back towards the midline)."""
    u = rng.random()
    if u < 0.75:
        return float(np.clip(rng.normal(4, 4), -6, 25)), float(rng.normal(0, 4)), 1.0
    if u < 0.9:
        return float(rng.uniform(15, 40)), float(-rng.uniform(0, 25)), 1.0
    return float(rng.uniform(20, 50)), float(-rng.uniform(25, 80)), float(rng.uniform(0.7, 0.95))


def sample_figure(rng: np.random.Generator, cx: float, cy: float, height: float) -> Figure:
    """A random, anatomically plausible pose for a figure of ``height`` pixels whose hip centre is at
    (cx, cy). Frontal view: the person's left side is on the image's right (+x)."""
    k = np.zeros((17, 2))
    down = np.array([0.0, 1.0])
    lean = rng.normal(0, 6)
    hip_c = np.zeros(2)
    sh_c = hip_c + _rot(np.array([0.0, -0.30]), lean)
    hip_half, sh_half = rng.uniform(0.08, 0.10), rng.uniform(0.12, 0.14)
    side = _rot(np.array([1.0, 0.0]), lean)
    for j, sgn in ((11, 1), (12, -1)):  # hips: left (+x), right (-x)
        k[j] = hip_c + side * hip_half * sgn
    for j, sgn in ((5, 1), (6, -1)):
        k[j] = sh_c + side * sh_half * sgn
    tilt = lean + rng.normal(0, 8)
    head_c = sh_c + _rot(np.array([0.0, -0.125]), tilt)
    yaw = float(rng.uniform(-1, 1))  # -1: facing image left ... 1: facing image right
    up, right = _rot(np.array([0.0, -1.0]), tilt), _rot(np.array([1.0, 0.0]), tilt)
    k[0] = head_c + right * 0.022 * yaw - up * 0.01  # nose
    k[1] = head_c + right * (0.024 + 0.012 * yaw) + up * 0.014  # left eye
    k[2] = head_c + right * (-0.024 + 0.012 * yaw) + up * 0.014
    k[3] = head_c + right * (0.062 - 0.02 * max(yaw, 0)) + up * 0.004  # left ear
    k[4] = head_c + right * (-0.062 - 0.02 * min(yaw, 0)) + up * 0.004
    ear_hidden = 4 if yaw > 0.6 else 3 if yaw < -0.6 else -1
    for sh, el, wr, sgn in ((5, 7, 9, 1), (6, 8, 10, -1)):  # arms: abduction then elbow
        abd, elbow, fore = _arm_pose(rng)
        upper = _rot(down, -sgn * abd + lean) * rng.uniform(0.15, 0.18)
        k[el] = k[sh] + upper
        k[wr] = k[el] + _rot(upper / np.linalg.norm(upper), -sgn * elbow) * rng.uniform(0.13, 0.16) * fore
    for hp, kn, an, sgn in ((11, 13, 15, 1), (12, 14, 16, -1)):  # legs
        abd, knee, fore = _leg_pose(rng)
        thigh = _rot(down, -sgn * abd) * rng.uniform(0.22, 0.25) * fore
        k[kn] = k[hp] + thigh
        k[an] = k[kn] + _rot(thigh / np.linalg.norm(thigh), -sgn * knee) * rng.uniform(0.21, 0.24)
    spin, widen = rng.normal(0, 8), rng.uniform(0.9, 1.1)
    centre = np.array([cx, cy])

    def place(p: np.ndarray) -> np.ndarray:
        q = _rot(np.asarray(p, float), spin) * height
        return np.asarray(centre + np.array([q[0] * widen, q[1]]))

    kpts = np.stack([place(p) for p in k])
    hc = place(head_c)
    return Figure(kpts, height, (float(hc[0]), float(hc[1]), 0.065 * height * widen, 0.078 * height,
                                 float(tilt + spin)),
                  place(sh_c + _rot(np.array([0.0, -0.02]), lean)), ear_hidden,
                  rng.uniform(30, 230, 3), rng.uniform(30, 230, 3),
                  np.array([rng.uniform(60, 200)] * 3) * (0.55, 0.75, 1.0),
                  rng.uniform(10, 90, 3), bool(rng.random() < 0.4), bool(rng.random() < 0.25))


def _q(v: float) -> int:
    """A length in OpenCV's fixed point (``_SHIFT`` fractional bits)."""
    return int(np.rint(v * (1 << _SHIFT)))


def _fx(p: np.ndarray) -> tuple[int, int]:
    """A point in continuous pixel coordinates (pixel i spans [i, i+1)) -> OpenCV fixed point, where
    pixel i is centred on i."""
    return _q(p[0] - 0.5), _q(p[1] - 0.5)


def _poly(layer: np.ndarray, pts: np.ndarray, colour: Any) -> None:
    cv2.fillPoly(layer, [np.round((pts - 0.5) * (1 << _SHIFT)).astype(np.int32)], colour, cv2.LINE_AA, _SHIFT)


def _limb(layer: np.ndarray, a: np.ndarray, b: np.ndarray, wa: float, wb: float, colour: Any) -> None:
    """A tapered capsule from ``a`` (width ``wa``) to ``b`` (width ``wb``)."""
    d = b - a
    n = np.array([-d[1], d[0]]) / max(float(np.linalg.norm(d)), 1e-6)
    _poly(layer, np.stack([a + n * wa / 2, b + n * wb / 2, b - n * wb / 2, a - n * wa / 2]), colour)
    for p, w in ((a, wa), (b, wb)):
        cv2.circle(layer, _fx(p), _q(w / 2), colour, -1, cv2.LINE_AA, _SHIFT)


def _ellipse(layer: np.ndarray, c: np.ndarray, axes: tuple[float, float], along: np.ndarray, colour: Any) -> None:
    ang = float(np.degrees(np.arctan2(along[1], along[0])))
    cv2.ellipse(layer, _fx(c), (_q(axes[0]), _q(axes[1])), ang, 0, 360, colour, -1, cv2.LINE_AA, _SHIFT)


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v / max(float(np.linalg.norm(v)), 1e-6))


def render_figure(fig: Figure, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(float32 BGR colour [H, W, 3], float32 alpha [H, W] in 0..1) of one figure on an empty canvas.
    Part widths are human proportions (fractions of the figure height): tapered limbs (upper arm 6.5%
    to 5%, forearm 5% to 3.8%, thigh 11% to 7%, shin 7% to 4.5%), hands and shoes, a torso with
    shoulders and hips wider than the joint centres."""
    col = np.zeros((height, width, 3), np.float32)
    alpha = np.zeros((height, width), np.float32)
    k, h = fig.kpts, fig.height
    up = _unit((k[5] + k[6]) / 2 - (k[11] + k[12]) / 2)
    sh_side, hip_side = _unit(k[5] - k[6]), _unit(k[11] - k[12])
    hip_c = (k[11] + k[12]) / 2
    torso = np.stack([k[5] + (sh_side * 0.03 + up * 0.02) * h, k[6] - (sh_side * 0.03 - up * 0.02) * h,
                      k[12] - (hip_side * 0.045 + up * 0.01) * h, hip_c - up * 0.07 * h,
                      k[11] + (hip_side * 0.045 - up * 0.01) * h])
    fore = fig.shirt if fig.long_sleeves else fig.skin
    shin = fig.skin if fig.shorts else fig.trousers * 0.85
    knob = fig.skin * 0.8
    limbs: list[tuple[int, int, float, float, np.ndarray]] = [
        (11, 13, 0.11, 0.07, fig.trousers), (12, 14, 0.11, 0.07, fig.trousers),
        (13, 15, 0.07, 0.045, shin), (14, 16, 0.07, 0.045, shin),
        (5, 7, 0.065, 0.05, fig.shirt), (6, 8, 0.065, 0.05, fig.shirt),
        (7, 9, 0.05, 0.038, fore), (8, 10, 0.05, 0.038, fore),
    ]
    for layer, value in ((col, None), (alpha, 1.0)):
        def c(x: np.ndarray, value: float | None = value) -> Any:  # alpha: 1.0, colour: x
            return value if value is not None else x.tolist()

        for an, kn, sgn in ((15, 13, 1), (16, 14, -1)):  # shoes: forward-out from the ankle
            d = _unit(_unit(k[an] - k[kn]) + hip_side * sgn * 0.35)
            _ellipse(layer, k[an] + d * 0.025 * h, (0.045 * h, 0.028 * h), d, c(fig.shoes))
        _limb(layer, fig.neck, np.array(fig.head[:2]), 0.06 * h, 0.06 * h, c(fig.skin))
        _poly(layer, torso, c(fig.shirt))
        for a, b, wa, wb, colour in limbs:
            _limb(layer, k[a], k[b], wa * h, wb * h, c(colour))
        for wr, el in ((9, 7), (10, 8)):  # hands: beyond the wrist, along the forearm
            d = _unit(k[wr] - k[el])
            _ellipse(layer, k[wr] + d * 0.045 * h, (0.05 * h, 0.027 * h), d, c(fig.skin))
        for j, r in ((5, 0.037), (6, 0.037), (7, 0.03), (8, 0.03), (11, 0.05), (12, 0.05), (13, 0.04),
                     (14, 0.04)):  # mannequin joint knobs
            cv2.circle(layer, _fx(k[j]), _q(r * h), c(knob), -1, cv2.LINE_AA, _SHIFT)
        hx, hy, rx, ry, ang = fig.head
        cv2.ellipse(layer, _fx(np.array([hx, hy])), (_q(rx), _q(ry)), ang, 0, 360, c(fig.skin), -1,
                    cv2.LINE_AA, _SHIFT)
    r_eye, r_ear = max(0.7, 0.012 * h), max(0.8, 0.018 * h)
    for j in (3, 4):
        if j != fig.ear_hidden:
            cv2.circle(col, _fx(k[j]), _q(r_ear), (fig.skin * 0.7).tolist(), -1, cv2.LINE_AA,
                       _SHIFT)
            cv2.circle(alpha, _fx(k[j]), _q(r_ear), 1.0, -1, cv2.LINE_AA, _SHIFT)
    for j in (1, 2):
        cv2.circle(col, _fx(k[j]), _q(r_eye), (20, 20, 20), -1, cv2.LINE_AA, _SHIFT)
    cv2.circle(col, _fx(k[0]), _q(r_eye * 1.2), (40, 40, 170), -1, cv2.LINE_AA, _SHIFT)
    return col, alpha


def _draw(img: np.ndarray, col: np.ndarray, alpha: np.ndarray) -> None:
    a = alpha[..., None]
    img *= 1 - a
    img += col * a


def render_pose_scene(rng: np.random.Generator, width: int, height: int, max_objects: int = 4
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One image: (BGR uint8, boxes xyxy float32 [N, 4], keypoints float32 [N, 17, 3], areas [N])."""
    img = background(rng, width, height)
    side = min(width, height)
    for _ in range(int(rng.integers(0, 4))):  # background clutter shapes, behind the figures
        contours = make_shape_contours(int(rng.integers(6)), rng.uniform(0, width), rng.uniform(0, height),
                                       rng.uniform(0.05, 0.25) * side, rng.uniform(0, 2 * np.pi), 1.0, rng)
        r = rasterize(contours, width, height)
        if r is not None:
            a, x0, y0, _ = r
            crop = img[y0:y0 + a.shape[0], x0:x0 + a.shape[1]]
            af = a.astype(np.float32)[..., None] / 255
            crop[:] = crop * (1 - af) + rng.uniform(0, 255, 3).astype(np.float32) * af
    figs: list[tuple[Figure, np.ndarray, np.ndarray]] = []
    n = int(rng.integers(1, max_objects + 1))
    anchor_x = rng.uniform(0.2, 0.8) * width
    for _ in range(n):
        hgt = float(np.exp(rng.uniform(np.log(0.3), np.log(0.8)))) * side
        cx = anchor_x + rng.normal(0, 0.3) * width if rng.random() < 0.6 else rng.uniform(0, width)
        cy = rng.uniform(0.5 * hgt - 0.1 * hgt, height - 0.45 * hgt + 0.1 * hgt)
        fig = sample_figure(rng, float(cx), float(cy), hgt)
        in_frame = (fig.kpts[:, 0] >= 0) & (fig.kpts[:, 0] < width) & (fig.kpts[:, 1] >= 0) \
            & (fig.kpts[:, 1] < height)
        if in_frame.sum() < _MIN_LABELLED:  # too little of it in the frame: not drawn, occludes nothing
            continue
        col, alpha = render_figure(fig, width, height)
        if alpha.sum() < 30:
            continue
        figs.append((fig, col, alpha))
    occluders = []
    if rng.random() < 0.35:  # clutter in front of the figures (hides keypoints: v=1)
        for _ in range(int(rng.integers(1, 3))):
            contours = make_shape_contours(int(rng.integers(6)), rng.uniform(0, width), rng.uniform(0, height),
                                           rng.uniform(0.08, 0.2) * side, rng.uniform(0, 2 * np.pi), 1.0, rng)
            r = rasterize(contours, width, height)
            if r is not None:
                occluders.append((r, rng.uniform(0, 255, 3).astype(np.float32)))
    # Ownership: the front-most layer at each pixel (figures back to front, then occluders).
    keep = list(range(len(figs)))
    while True:
        owner = np.full((height, width), -1, np.int32)
        for i in keep:
            owner[figs[i][2] >= 0.5] = i
        for (a, x0, y0, _), _c in occluders:
            view = owner[y0:y0 + a.shape[0], x0:x0 + a.shape[1]]
            view[a >= 128] = len(figs)
        drop = [i for i in keep if (owner == i).sum() < _MIN_VISIBLE * (figs[i][2] >= 0.5).sum()]
        if not drop:
            break
        keep = [i for i in keep if i != drop[0]]
    boxes, kpts_all, areas = [], [], []
    for i in keep:
        fig, col, alpha = figs[i]
        kp = np.zeros((17, 3), np.float32)
        for j, (x, y) in enumerate(fig.kpts):
            if not (0 <= x < width and 0 <= y < height):
                continue
            hidden = j == fig.ear_hidden or owner[int(y), int(x)] != i
            kp[j] = (x, y, 1 if hidden else 2)
        _draw(img, col, alpha)
        mask = alpha >= 0.5
        ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        boxes.append((xs[0], ys[0], xs[-1] + 1, ys[-1] + 1))
        kpts_all.append(kp)
        areas.append(float(mask.sum()))
    for (a, x0, y0, _), c in occluders:
        crop = img[y0:y0 + a.shape[0], x0:x0 + a.shape[1]]
        af = a.astype(np.float32)[..., None] / 255
        crop[:] = crop * (1 - af) + c * af
    if rng.random() < 0.8:
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(1, 8))
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.4, 1.0)))
    out = np.clip(img, 0, 255).astype(np.uint8)
    return (out, np.array(boxes, np.float32).reshape(-1, 4), np.array(kpts_all, np.float32).reshape(-1, 17, 3),
            np.array(areas, np.float32))


def _write_split(root: Path, split: str, code: int, n: int, size: int, seed: int, max_objects: int) -> Path:
    def scene(idx: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
        # One generator per image, keyed by (seed, split, index): images do not depend on split sizes.
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7, code, idx]))
        img, boxes, kpts, areas = render_pose_scene(rng, size, size, max_objects)
        objects = []
        for box, kp, area in zip(boxes.tolist(), kpts, areas.tolist(), strict=True):
            x1, y1, x2, y2 = box
            flat = [round(float(v), 2) if j % 3 != 2 else int(v) for j, v in enumerate(kp.reshape(-1))]
            objects.append({"category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "area": area, "iscrowd": 0,
                            "keypoints": flat, "num_keypoints": int((kp[:, 2] > 0).sum())})
        return img, objects

    categories = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": KEYPOINT_NAMES,
                   "skeleton": [[a + 1, b + 1] for a, b in SKELETON]}]
    return write_coco_split(root, split, n, scene, f"edgevision synthetic pose ({split})", GENERATOR_VERSION,
                            categories)


def generate_pose_dataset(out_dir: Path, *, num_train: int, num_val: int, image_size: int, seed: int,
                          max_objects: int = 4) -> SyntheticPaths:
    """Write (or reuse) the synthetic pose dataset under ``out_dir`` (same layout as the detection one:
    ``train.json``, ``val.json``, ``images/{train,val}/NNNNNN.jpg``, ``dataset_info.json`` written last
    as the completion marker). One category ``person`` with the 17 COCO keypoints and skeleton."""
    root = Path(out_dir)
    args = {"generator": "edgevision.synthetic.pose", "version": GENERATOR_VERSION, "num_train": num_train,
            "num_val": num_val, "image_size": image_size, "seed": seed, "max_objects": max_objects}
    check_sizes("generate_pose_dataset", num_train, num_val, max_objects, image_size, min_size=64)
    sizes = {"train": num_train, "val": num_val}
    return write_once(root, args, lambda split, code: _write_split(root, split, code, sizes[split], image_size, seed,
                                                                   max_objects))
