"""``report.html``: the build report for people, one self-contained file beside ``report.md``.

Read from the typed manifest (and the evaluate stage's ``pr_curves.json`` files it names): the variants table,
an accuracy-vs-latency Pareto plot per backend (front marked), MACs / params / size bars, per-class AP,
precision-recall curves, the Gates section when the manifest carries gate results, how latency was timed,
the stage table, and with a `regress --history` file the trends over runs. Figures are PNG ``data:`` URIs
(``report_plots``); no stylesheet, script or image is fetched, so the file opens anywhere, offline.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from edgevision.runtime.fsutil import atomic_write_text

from . import report_plots as plots
from .manifest import Manifest
from .stages.eval_curves import load_curves

REPORT_HTML = "report.html"

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.pass{color:#176f2c}.fail{color:#b00020;font-weight:bold}.stale,.skip{color:#8a6d00}code{font-size:.9em}
"""


def _e(v: Any) -> str:
    return html.escape(str(v))


def _f(v: Any, digits: int = 3) -> str:
    return "-" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else _e(v))


def _table(head: list[str], rows: list[list[str]], table_id: str = "") -> str:
    """An HTML table; cells are already escaped/formatted."""
    ident = f' id="{table_id}"' if table_id else ""
    out = [f"<table{ident}><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows]
    return "\n".join(out) + "</table>"


def _figure(uri: str, alt: str, fig_id: str) -> str:
    return f'<figure id="{fig_id}"><img alt="{_e(alt)}" src="{uri}"></figure>'


def _variants(m: Manifest) -> str:
    key, label = plots.accuracy_key(m.task)
    rows = []
    for name, v in m.variants.items():
        lat = "<br>".join(f"{_e(b)}: {s.median:.2f} / {s.p99:.2f}" for b, s in v.latency_ms.items())
        rows.append([_e(name), _e(v.precision), _f(v.metrics.get(key)), _f(v.metrics.get("map50")), lat or "-",
                     _f(None if v.macs is None else v.macs / 1e6, 1),
                     _f(None if v.params is None else v.params / 1e3, 1), _f(v.size_bytes / 1024, 0)])
    return _table(["variant", "precision", label, "mAP50", "latency median / p99 (ms)", "MACs (M)", "params (k)",
                   "ONNX size (KiB)"], rows, "variants")


def _per_class(m: Manifest) -> str:
    names = [n for n, v in m.variants.items() if v.ap_per_class]
    if not names:
        return "<p>No per-class AP in this manifest (evaluated before per-class results were kept).</p>"
    classes = list(dict.fromkeys(c for n in names for c in (m.variants[n].ap_per_class or {})))
    head = ["class"] + [f"{_e(n)} AP50-95" for n in names] + [f"{_e(n)} AP50" for n in names]
    rows = []
    for c in classes:
        per = [(m.variants[n].ap_per_class or {}).get(c, {}) for n in names]
        rows.append([_e(c)] + [_f(p.get("ap50_95")) for p in per] + [_f(p.get("ap50")) for p in per])
    return _table(head, rows, "per-class-ap")


def _pr_curves(m: Manifest, root: Path) -> str:
    parts = []
    for name, v in m.variants.items():
        curves = load_curves(root / v.eval_curves) if v.eval_curves else None
        if curves is None:
            continue
        for iou_type in ("bbox", "keypoints"):
            if iou_type in curves and curves[iou_type].get("classes"):
                title = f"{name} ({'boxes' if iou_type == 'bbox' else 'keypoints, OKS'})"
                parts.append(_figure(plots.pr_figure(curves[iou_type], title), f"precision-recall {title}",
                                     f"pr-{name}-{iou_type}"))
    return "\n".join(parts) or "<p>No precision-recall curves saved for this build.</p>"


def _gates(m: Manifest) -> str:
    """Gate results if the manifest has them (``gates``: a list of checks, or ``{"checks": [...]}``)."""
    gates: Any = getattr(m, "gates", None) or (m.model_extra or {}).get("gates")  # typed field once declared
    if gates is None:
        return ""
    if hasattr(gates, "model_dump"):
        gates = gates.model_dump(mode="json")
    checks = gates.get("checks", []) if isinstance(gates, dict) else gates
    rows = []
    for c in checks if isinstance(checks, list) else []:
        if isinstance(c, dict):
            status = str(c.get("status", "?"))
            rows.append([_e(c.get("name", "?")), f'<span class="{_e(status)}">{_e(status)}</span>',
                         _e(c.get("message", ""))])
    passed = gates.get("passed") if isinstance(gates, dict) else None
    verdict = "" if passed is None else f"<p>Gates {'passed' if passed else '<b class=fail>FAILED</b>'}.</p>"
    return "<h2>Gates</h2>" + verdict + _table(["check", "result", "detail"], rows, "gates")


def _timing(m: Manifest) -> str:
    seen = {}
    for v in m.variants.values():
        for lat in v.latency_ms.values():
            if lat.timing:
                seen[repr(sorted(lat.timing.items()))] = lat.timing
    if not seen:
        return "<p>Timing settings were not recorded (benched before they were).</p>"
    return "".join("<p>" + "; ".join(f"{_e(k)}: <code>{_e(v)}</code>" for k, v in t.items()) + "</p>"
                   for t in seen.values())


def _trends(history: list[dict[str, Any]], task: str) -> str:
    from .regress_history import trend_series

    key, label = plots.accuracy_key(task)
    runs, metrics, latency = trend_series(history, key)
    rows = [[_e(r), "pass" if e.get("passed") else '<span class="fail">FAIL</span>', _e(e.get("failed", 0)),
             "<br>".join(f"{_e(n)}: {_f(v.get('latency_ratio'))}" for n, v in e["variants"].items()
                         if v.get("latency_ratio") is not None) or "-"]
            for r, e in zip(runs, history, strict=True)]
    return ("<h2>Trends over regress runs</h2>"
            + _figure(plots.trend_figure(runs, {f"{n} {label}": v for n, v in metrics.items()},
                                         {f"{n} median ms": v for n, v in latency.items()}),
                      "metric and latency trends", "trends")
            + _table(["run (UTC)", "result", "failed checks", "latency ratio vs baseline"], rows, "runs"))


def render_html(m: Manifest, root: Path, history: list[dict[str, Any]] | None = None) -> str:
    """The page for the build in ``root`` (manifest ``m``); ``history``: `regress --history` entries."""
    points = plots.latency_points(m.variants, m.task)
    pareto = (_figure(plots.pareto_figure(points, m.task), "accuracy vs latency", "pareto") if points
              else "<p>No variant has both a latency and an accuracy.</p>")
    fronts = "".join(f"<li>{_e(b)}: {', '.join(_e(list(p)[i]) for i in plots.pareto_front(list(p.values())))}</li>"
                     for b, p in sorted(points.items()))
    stages = _table(["stage", "key", "cached", "seconds"],
                    [[_e(s.get("stage")), f"<code>{_e(s.get('key'))}</code>", "yes" if s.get("cached") else "no",
                      _f(float(s.get("seconds", 0.0)), 1)] for s in m.stages], "stages")
    d = m.dataset
    body = [
        f"<h1>edgevision build report: {_e(m.name)}</h1>",
        f"<p>Task <code>{_e(m.task)}</code>, built {_e(m.created)} in {m.build_seconds:.0f} s; recipe hash "
        f"<code>{_e(m.recipe_hash[:12])}</code>. Dataset: {d.train_images} train / {d.val_images} val images, "
        f"{len(d.classes)} classes.</p>",
        "<h2>Variants</h2>", _variants(m),
        "<h2>Accuracy vs latency</h2>", pareto, f"<p>Pareto front (no variant is both faster and more accurate): "
        f"</p><ul>{fronts}</ul>",
        "<h2>Cost</h2>", _figure(plots.cost_figure(m.variants), "MACs, parameters and size", "cost"),
        "<h2>Per-class AP (boxes)</h2>", _per_class(m),
        "<h2>Precision-recall</h2>", _pr_curves(m, root),
        _gates(m),
        "<h2>How latency was timed</h2>", _timing(m),
        _trends(history, m.task) if history else "",
        "<h2>Stages</h2>", stages,
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>edgevision report: {_e(m.name)}</title><style>{_STYLE}</style></head><body>\n"
            + "\n".join(b for b in body if b) + "\n</body></html>\n")


def write_html(root: Path, m: Manifest, history: list[dict[str, Any]] | None = None) -> Path:
    """Write ``root/report.html`` atomically and return its path."""
    path = root / REPORT_HTML
    atomic_write_text(path, render_html(m, root, history))
    return path
