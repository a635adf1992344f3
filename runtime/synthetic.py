"""The built-in synthetic scene generator (numpy + OpenCV only) and the ``synthetic://`` frame source.

Why hand-written: the quickstart must train and demo a detector with no download and no camera, so scenes
are generated locally, deterministically and fast, with exactly-known boxes. The toolkit's dataset writer
(``edgevision.toolkit.data.synthetic``) renders its images with this same code, so the ``synthetic://``
stream looks like the data the quickstart detector was trained on.

What makes it a real (if small) learning problem:

- six shape classes (``CLASS_NAMES``), each randomly rotated, stretched (aspect jitter), colour-jittered
  and shaded, at scales from ~9 px up to ~45% of the image (log-uniform, so many small objects);
- overlap: later shapes cover earlier ones; a shape with more than 70% of its pixels covered, or with
  less than 60% of its area inside the frame, is not drawn at all (so every drawn shape is labelled);
- backgrounds: two-colour gradients, smooth noise textures, gratings, soft blobs and thin lines in many
  colours (never closed outlines, so clutter never looks like a class), then pixel noise and blur.

Boxes are exact: every shape is a set of float polygons in continuous pixel coordinates (pixel ``i``
spans ``[i, i+1)``, the COCO convention), rasterised by 4x supersampling and area-downsampling, so the
drawn coverage matches the geometry the box is computed from. OpenCV's own ``LINE_AA`` fill is not used:
it inflates shapes by about a pixel and mishandles holes (the ring).

``synthetic://?fps=30&width=640&height=480&seed=0&frames=N&objects=8&pool=32`` streams such scenes:
``pool`` distinct scenes (rendered once, then cycled), ``frames`` in all (endless without it), paced to
``fps`` (a live-like source) when given, else as fast as they are read.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["CLASS_NAMES", "background", "contour_area", "make_shape_contours", "rasterize",
           "render_scene", "scene_with_areas"]

CLASS_NAMES: list[str] = ["circle", "rectangle", "triangle", "star", "cross", "ring"]
_SS = 4  # supersampling factor of the shape rasteriser
_MIN_VISIBLE = 0.3  # fraction of a shape's own pixels that must stay uncovered
_MIN_IN_FRAME = 0.6  # fraction of a shape's area that must lie inside the image


@dataclass
class _Shape:
    label: int
    contours: list[np.ndarray]  # float64 [P, 2] (x, y); the first is the outline, the rest holes
    colour: np.ndarray  # float32 [3] BGR
    shade: np.ndarray  # float32 [2] colour gradient per pixel along x, y


def _regular(n: int, radius: float = 1.0, phase: float = 0.0) -> np.ndarray:
    t = phase + np.arange(n) * (2 * np.pi / n)
    return np.stack([np.cos(t), np.sin(t)], 1) * radius


def _template(label: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Unit-size outline(s) of class ``label`` centred on the origin, within the unit circle."""
    name = CLASS_NAMES[label]
    if name == "circle":
        return [_regular(64)]
    if name == "rectangle":
        return [np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float) / np.sqrt(2)]
    if name == "triangle":
        return [_regular(3, phase=-np.pi / 2)]
    if name == "star":
        pts = _regular(10, phase=-np.pi / 2)
        pts[1::2] *= 0.45
        return [pts]
    if name == "cross":
        a, b = 0.32, 0.95
        return [np.array([[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b], [-a, b],
                          [-a, a], [-b, a], [-b, -a], [-a, -a]], float)]
    if name == "ring":
        return [_regular(64), _regular(64, radius=float(rng.uniform(0.5, 0.7)))]
    raise ValueError(f"unknown shape class {label}")


def make_shape_contours(label: int, cx: float, cy: float, size: float, angle: float = 0.0,
                        aspect: float = 1.0, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Polygons of one shape: ``size`` is the diameter of its circumscribed circle (before ``aspect``,
    which squeezes the shape's local y axis), ``angle`` in radians; continuous pixel coordinates."""
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    scale = np.array([size / 2, size / 2 * aspect])
    out = []
    for c in _template(label, rng or np.random.default_rng(0)):
        out.append((c * scale) @ rot.T + np.array([cx, cy]))
    return out


def contour_area(contours: list[np.ndarray]) -> float:
    """Area of an outline minus its holes (shoelace formula)."""

    def shoelace(p: np.ndarray) -> float:
        x, y = p[:, 0], p[:, 1]
        return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))

    return shoelace(contours[0]) - sum(shoelace(c) for c in contours[1:])


def rasterize(contours: list[np.ndarray], width: int, height: int
              ) -> tuple[np.ndarray, int, int, np.ndarray] | None:
    """Coverage of the shape as a uint8 alpha crop, with the crop's (x0, y0) and the tight box of the
    covered area inside the image (xyxy float). None when nothing of the shape is in the image."""
    lo, hi = contours[0].min(0), contours[0].max(0)
    x0, y0 = max(int(np.floor(lo[0])), 0), max(int(np.floor(lo[1])), 0)
    x1, y1 = min(int(np.ceil(hi[0])), width), min(int(np.ceil(hi[1])), height)
    if x1 <= x0 or y1 <= y0:
        return None
    big = np.zeros(((y1 - y0) * _SS, (x1 - x0) * _SS), np.uint8)
    # Supersampled pixel j covers [j, j+1)/SS; OpenCV lights pixels whose centre (j + 0.5) is inside.
    pts = [np.round(((c - (x0, y0)) * _SS - 0.5) * 8).astype(np.int32) for c in contours]
    cv2.fillPoly(big, pts, 255, cv2.LINE_8, 3)
    cols, rows = np.flatnonzero(big.any(0)), np.flatnonzero(big.any(1))
    if cols.size == 0:
        return None
    alpha = cv2.resize(big, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    box = np.array([x0 + cols[0] / _SS, y0 + rows[0] / _SS,
                    x0 + (cols[-1] + 1) / _SS, y0 + (rows[-1] + 1) / _SS])
    if lo[0] >= 0 and lo[1] >= 0 and hi[0] <= width and hi[1] <= height:
        box = np.concatenate([lo, hi])  # fully inside: the exact geometric box
    return alpha, x0, y0, box


def background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Gradient + smooth noise + optional grating + soft blobs + thin lines, float32 BGR."""
    c1, c2 = rng.uniform(20, 235, 3).astype(np.float32), rng.uniform(20, 235, 3).astype(np.float32)
    t = rng.uniform(0, 2 * np.pi)
    xs, ys = np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)[:, None]
    ramp = (xs * np.float32(np.cos(t)) + ys * np.float32(np.sin(t))) / np.float32(2 * max(w, h)) + 0.5
    g = int(rng.choice([3, 6, 12, 24]))
    img: np.ndarray = cv2.resize(rng.normal(0, rng.uniform(8, 35), (g, g, 3)).astype(np.float32), (w, h),
                                 interpolation=cv2.INTER_CUBIC)
    img += c1
    img += ramp[..., None] * (c2 - c1)
    if rng.random() < 0.3:  # grating: straight stripes, never closed outlines
        period, th = rng.uniform(5, 30), rng.uniform(0, np.pi)
        phase = (xs * np.float32(np.cos(th)) + ys * np.float32(np.sin(th))) * np.float32(2 * np.pi / period)
        img += np.sin(phase)[..., None] * rng.uniform(5, 25, 3).astype(np.float32)
    lw, lh = max(w // 4, 4), max(h // 4, 4)  # soft blobs, drawn at low resolution then upscaled
    layer: np.ndarray = np.zeros((lh, lw, 3), np.float32)
    mask: np.ndarray = np.zeros((lh, lw), np.float32)
    for _ in range(int(rng.integers(0, 6))):
        centre = (int(rng.integers(0, lw)), int(rng.integers(0, lh)))
        axes = (int(rng.integers(2, max(lw // 4, 3))), int(rng.integers(2, max(lh // 4, 3))))
        colour = rng.uniform(0, 255, 3).tolist()
        cv2.ellipse(layer, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        cv2.ellipse(mask, centre, axes, 0, 0, 360, float(rng.uniform(0.2, 0.5)), -1)
    if mask.any():  # heavily blurred, so a blob never has the crisp edge of a shape
        sigma = max(lw, lh) / 24
        soft = np.asarray(cv2.GaussianBlur(mask, (0, 0), sigma), np.float32)[..., None]
        delta = np.asarray(cv2.GaussianBlur(layer, (0, 0), sigma), np.float32)
        delta -= np.asarray(cv2.resize(img, (lw, lh), interpolation=cv2.INTER_AREA), np.float32)
        img += cv2.resize(delta * soft, (w, h), interpolation=cv2.INTER_LINEAR)
    for _ in range(int(rng.integers(0, 12))):
        p1 = (int(rng.integers(-w // 4, w + w // 4)), int(rng.integers(-h // 4, h + h // 4)))
        p2 = (int(rng.integers(-w // 4, w + w // 4)), int(rng.integers(-h // 4, h + h // 4)))
        cv2.line(img, p1, p2, rng.uniform(0, 255, 3).tolist(), int(rng.integers(1, 3)), cv2.LINE_AA)
    return img


def _pick_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random saturated-ish colour that stands out from ``under`` (mean background colour)."""
    for _ in range(8):
        hsv = np.array([[[rng.uniform(0, 180), rng.uniform(80, 255), rng.uniform(90, 255)]]], np.float32)
        bgr = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
        if float(np.linalg.norm(bgr - under)) >= 90:
            return bgr
    return np.full(3, 0.0 if under.mean() > 127 else 255.0, np.float32)


def scene_with_areas(rng: np.random.Generator, width: int, height: int, max_objects: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``render_scene`` plus each shape's visible area in pixels (float32 [N]), for COCO ``area``."""
    img = background(rng, width, height)
    side = min(width, height)
    lo_size, hi_size = max(6.0, 0.035 * side), 0.45 * side
    placed: list[tuple[_Shape, tuple[np.ndarray, int, int, np.ndarray]]] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(len(CLASS_NAMES)))
        size = float(np.exp(rng.uniform(np.log(lo_size), np.log(hi_size))))
        aspect = float(rng.uniform(0.5, 1.0) if CLASS_NAMES[label] == "rectangle" else rng.uniform(0.8, 1.0))
        cx = float(rng.uniform(-0.15 * size, width + 0.15 * size))
        cy = float(rng.uniform(-0.15 * size, height + 0.15 * size))
        contours = make_shape_contours(label, cx, cy, size, float(rng.uniform(0, 2 * np.pi)), aspect, rng)
        raster = rasterize(contours, width, height)
        if raster is None or raster[0].sum() / 255.0 < _MIN_IN_FRAME * contour_area(contours):
            continue
        shade = rng.uniform(-25, 25, 2).astype(np.float32) / size
        placed.append((_Shape(label, contours, np.zeros(3, np.float32), shade), raster))
    # Occlusion: draw the label map in order, drop shapes whose own pixels are mostly covered.
    owner = np.zeros((height, width), np.int32)
    for i, (_, (alpha, x0, y0, _box)) in enumerate(placed):
        view = owner[y0:y0 + alpha.shape[0], x0:x0 + alpha.shape[1]]
        view[alpha >= 128] = i + 1
    counts = np.bincount(owner.ravel(), minlength=len(placed) + 1)
    boxes, labels, areas = [], [], []
    for i, (shape, (alpha, x0, y0, box)) in enumerate(placed):
        own = int((alpha >= 128).sum())
        if own == 0 or counts[i + 1] < _MIN_VISIBLE * own:
            continue
        h, w = alpha.shape
        crop = img[y0:y0 + h, x0:x0 + w]
        a = alpha.astype(np.float32)[..., None] / 255.0
        under = (crop * a).sum((0, 1)) / max(float(a.sum()), 1e-6)
        shape.colour = _pick_colour(rng, under)
        xs, ys = np.arange(w, dtype=np.float32) - w / 2, np.arange(h, dtype=np.float32)[:, None] - h / 2
        ramp = xs * shape.shade[0] + ys * shape.shade[1]
        fill = shape.colour + ramp[..., None]
        crop[:] = crop * (1 - a) + fill * a
        boxes.append(box)
        labels.append(shape.label)
        areas.append(float(counts[i + 1]))
    if rng.random() < 0.8:
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(1, 8))
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.4, 1.0)))
    out = np.clip(img, 0, 255, out=img).astype(np.uint8)
    return (out, np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64),
            np.array(areas, np.float32))


def render_scene(rng: np.random.Generator, width: int, height: int, max_objects: int = 8
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic frame: (BGR uint8 [H, W, 3], boxes xyxy float32 [N, 4] in continuous pixel
    coordinates, labels int64 [N] indexing ``CLASS_NAMES``). Used by the dataset generator and usable
    as a live ``synthetic://`` camera."""
    img, boxes, labels, _ = scene_with_areas(rng, width, height, max_objects)
    return img, boxes, labels
