"""The figures of ``report.html``, drawn with matplotlib's Agg backend into PNG ``data:`` URIs (embedded, so
the page is one self-contained file): the accuracy-vs-latency Pareto plot, MACs / params / size bars,
precision-recall curves and trends over `regress` runs.

PNG rather than inline SVG: several matplotlib SVGs in one page reuse element ids (clip paths, markers), which
browsers then resolve to the wrong figure. matplotlib is imported when a figure is drawn, never at import
(the toolkit extra has it; the runtime never imports this module).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

Point = tuple[float, float]  # (latency ms, accuracy)
PR_PANELS = (("precision50", "IoU 0.5"), ("precision50_95", "IoU 0.5:0.95 (mean)"))


def pareto_front(points: Sequence[Point]) -> list[int]:
    """Indices of the points no other point dominates (lower latency is better, higher accuracy is better).

    A point is dominated when another is at most as slow and at least as accurate, and strictly better in one
    of the two; equal points do not dominate each other. Returned by increasing latency."""
    front = []
    for i, (lat, acc) in enumerate(points):
        dominated = any(lo <= lat and ao >= acc and (lo < lat or ao > acc)
                        for j, (lo, ao) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def accuracy_key(task: str) -> tuple[str, str]:
    """The headline metric of a task and its label."""
    return ("kp_map50_95", "OKS AP50-95") if task == "pose" else ("map50_95", "box mAP50-95")


def latency_points(variants: dict[str, Any], task: str) -> dict[str, dict[str, Point]]:
    """``{backend: {variant: (median ms, accuracy)}}`` over the variants with both numbers; the reference
    timings of the original model (``*-original``) are not variants of their own."""
    key, _ = accuracy_key(task)
    out: dict[str, dict[str, Point]] = {}
    for name, v in variants.items():
        acc = v.metrics.get(key)
        if acc is None:
            continue
        for backend, lat in v.latency_ms.items():
            if not backend.endswith("-original"):
                out.setdefault(backend, {})[name] = (float(lat.median), float(acc))
    return out


def pareto_figure(points: dict[str, dict[str, Point]], task: str) -> str:
    """One panel per backend: every variant, the Pareto front joined and ringed."""
    plt = _plt()
    backends = sorted(points)
    fig, axes = plt.subplots(1, len(backends), figsize=(5.2 * len(backends), 4), squeeze=False)
    for ax, backend in zip(axes[0], backends, strict=True):
        names = list(points[backend])
        pts = [points[backend][n] for n in names]
        front = pareto_front(pts)
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="tab:blue", zorder=3)
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "--", color="tab:red", zorder=2,
                label="Pareto front")
        ax.scatter([pts[i][0] for i in front], [pts[i][1] for i in front], s=160, facecolors="none",
                   edgecolors="tab:red", zorder=4)
        for n, (x, y) in zip(names, pts, strict=True):
            ax.annotate(n, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
        ax.set_title(backend)
        ax.margins(0.15)  # room for the labels of the extreme points
        ax.set_xlabel("median latency (ms, lower is better)")
        ax.set_ylabel(accuracy_key(task)[1])
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle("Accuracy vs latency")
    return _png(fig)


def cost_figure(variants: dict[str, Any]) -> str:
    """MACs, parameters and ONNX size per variant, as bars."""
    plt = _plt()
    names = list(variants)
    panels = [("MACs (M)", [(v.macs or 0) / 1e6 for v in variants.values()]),
              ("parameters (k)", [(v.params or 0) / 1e3 for v in variants.values()]),
              ("ONNX size (KiB)", [v.size_bytes / 1024 for v in variants.values()])]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2 + 0.1 * len(names)))
    for ax, (title, vals) in zip(axes, panels, strict=True):
        ax.barh(names, vals, color="tab:gray")
        ax.invert_yaxis()
        ax.set_title(title)
        for y, val in enumerate(vals):
            ax.annotate(f"{val:.1f}", (val, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
        ax.margins(x=0.2)
    fig.tight_layout()
    return _png(fig)


def pr_figure(curves: dict[str, Any], title: str) -> str:
    """Precision-recall per class at IoU 0.5 and averaged over 0.5:0.95 (``stages.eval_curves`` layout)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.8), sharey=True)
    recall = curves["recall"]
    for ax, (key, label) in zip(axes, PR_PANELS, strict=True):
        for c in curves["classes"]:
            if c[key]:
                ap = c["ap50" if key == "precision50" else "ap50_95"]
                ax.plot(recall, c[key], label=f"{c['name']} (AP {ap:.3f})" if ap is not None else c["name"])
        ax.set_title(f"{title}: {label}")
        ax.set_xlabel("recall")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    axes[0].set_ylabel("precision")
    fig.tight_layout()
    return _png(fig)


def trend_figure(runs: list[str], metrics: dict[str, list[float | None]],
                 latency: dict[str, list[float | None]]) -> str:
    """Metrics (left) and latency (right) over `regress` runs; each series is ``variant.metric`` or
    ``variant`` with one value per run (None where that run lacks it)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    x = list(range(len(runs)))
    for ax, series, ylabel in ((axes[0], metrics, "metric"), (axes[1], latency, "latency ratio / ms")):
        for name, vals in series.items():
            pts = [(i, v) for i, v in zip(x, vals, strict=True) if v is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=name)
        ax.set_xticks(x)
        ax.set_xticklabels(runs, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=7)
    axes[0].set_title("Accuracy over runs")
    axes[1].set_title("Latency over runs")
    fig.tight_layout()
    return _png(fig)
