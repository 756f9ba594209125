"""Figures (matplotlib, Agg): efficiency gap, roofline, waterline. PNG and SVG, units on every axis."""
from __future__ import annotations

import io
import re
from html import escape
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from effkit.analysis.roofline import KINDS, ModelAnalysis  # noqa: E402

KIND_COLORS = dict(zip(KINDS, ["#1f77b4", "#17becf", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#7f7f7f", "#bcbd22", "#e377c2"]))
LADDER = (("ideal", "o", "none"), ("waterline", "s", "none"), ("kernels", "^", "none"), ("end-to-end", "*", None))
EFFICIENCIES = (1.0, 0.5, 0.25, 0.10, 0.05)


TOP_LABELS = 5  # layers named in the roofline PNG
LOG_RATIO = 10.0  # the waterline gets a log axis when its curves end more than this far apart


def roofline_points(a: ModelAnalysis, top: int = TOP_LABELS) -> list[dict]:
    """The data behind the roofline: one point per plotted layer, its share of the time (measured kernel time, or
    roofline time where not measured), its marker area (points^2, proportional to that share, at least 12) and whether
    it is one of the `top` layers named on the figure."""
    measured = a.kernels_s is not None
    pts = [(i, l) for i, l in enumerate(a.layers) if l.bytes and l.flops and (l.measured_s or not measured)]
    times = [(l.measured_s if measured else l.roofline_s) or 0.0 for _, l in pts]
    total = sum(times) or 1.0
    order = sorted(range(len(pts)), key=lambda k: -times[k])[:top]
    out = []
    for k, ((i, l), t) in enumerate(zip(pts, times)):
        out.append({"index": i, "path": l.path, "kind": l.kind, "x": l.intensity,
                    "y": l.achieved_flops_per_s if measured else a.roof.attainable(l.intensity), "share": t / total,
                    "size": 12 + 400 * t / total, "label": k in order, "flagged": bool(l.faster_than_roofline)})
    return out


def stage_of(path: str, depth: int) -> str:
    return ".".join(path.split(".")[:depth])


def stage_boundaries(paths: list[str]) -> list[tuple[int, str]]:
    """(layer index where a stage starts, its name) along the execution order. A stage is a top-level module, or one
    level deeper where one top-level module holds most layers (ConvNeXt's and MobileNet's `features.N`)."""
    if not paths:
        return []
    firsts = [stage_of(p, 1) for p in paths]
    depth = 2 if max(firsts.count(f) for f in set(firsts)) > len(paths) / 2 else 1
    out, prev = [], None
    for i, p in enumerate(paths):
        st = stage_of(p, depth)
        if st != prev:
            out.append((i, st))
            prev = st
    return out


def waterline_scale(finals: list[float]) -> str:
    """'log' where the curves end more than LOG_RATIO apart, else 'linear'."""
    v = [x for x in finals if x and x > 0]
    return "log" if v and max(v) / min(v) > LOG_RATIO else "linear"


def _ms_ticks(ax, axis: str = "y") -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(fmt)
    target.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _si_ticks(ax, axis: str = "x", unit: str = "") -> None:
    from matplotlib.ticker import FuncFormatter

    def f(v, _):
        for div, p in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
            if v >= div:
                return f"{v / div:g} {p}{unit}"
        return f"{v:g} {unit}"

    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(FuncFormatter(f))
    target.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def boxes_overlap(a, b, pad: float = 0.0) -> bool:
    """Two (x0, y0, x1, y1) boxes overlap (by more than `pad`)."""
    return a[0] < b[2] - pad and b[0] < a[2] - pad and a[1] < b[3] - pad and b[1] < a[3] - pad


LABEL_OFFSETS = [(5, 4), (5, -12), (-5, 4), (-5, -12), (5, 14), (5, -22), (-5, 14), (-5, -22), (12, 26), (12, -34), (-12, 26), (-12, -34),
                 (20, 40), (20, -48), (-20, 40), (-20, -48)]


def text_box(artist, renderer) -> tuple[float, float, float, float]:
    b = artist.get_window_extent(renderer)
    return (b.x0, b.y0, b.x1, b.y1)


def place_labels(fig, ax, items: list[tuple[str, float, float, str]], gid_prefix: str = "label-", avoid: list = (), fontsize: float = 8) -> list:
    """Annotate each (text, x, y, color) at the first offset whose box collides with no label placed before it (nor
    those in `avoid`) and stays inside the axes; returns the annotations, each with a gid (its SVG group id)."""
    renderer = fig.canvas.get_renderer()
    placed, boxes = [], [text_box(t, renderer) for t in avoid]
    ax_box = ax.get_window_extent(renderer)
    for n, (text, x, y, color) in enumerate(items):
        best = None
        for dx, dy in LABEL_OFFSETS:
            ann = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=fontsize, color=color,
                              ha="left" if dx >= 0 else "right", va="bottom")
            fig_box = ann.get_window_extent(renderer)
            box = (fig_box.x0, fig_box.y0, fig_box.x1, fig_box.y1)
            inside = box[0] >= ax_box.x0 and box[2] <= ax_box.x1 and box[1] >= ax_box.y0 and box[3] <= ax_box.y1
            if inside and not any(boxes_overlap(box, b) for b in boxes):
                best = (ann, box)
                break
            ann.remove()
        if best is None:  # nowhere free: the last offset, listed in the legend's order anyway
            ann = ax.annotate(text, (x, y), textcoords="offset points", xytext=LABEL_OFFSETS[0], fontsize=fontsize, color=color)
            b = ann.get_window_extent(renderer)
            best = (ann, (b.x0, b.y0, b.x1, b.y1))
        best[0].set_gid(f"{gid_prefix}{n}")
        placed.append(best[0])
        boxes.append(best[1])
    return placed


def _ladder(a: ModelAnalysis) -> list[tuple[str, float | None]]:
    return [("ideal", a.ideal_s), ("waterline", a.waterline_s), ("kernels", a.kernels_s), ("end-to-end", a.latency_s)]


def efficiency_gap(analyses: list[ModelAnalysis], accuracy: bool = False):
    """Log-log FLOPs vs latency with labelled iso-efficiency diagonals (% of peak) and each model's ladder, labels placed
    so they do not collide; with `accuracy`, top-1 against latency with each model's latency broken into its ladder."""
    with_acc = accuracy and any(a.top1 for a in analyses)
    fig, axes = plt.subplots(1, 2 if with_acc else 1, figsize=(13 if with_acc else 7.5, 5.5))
    ax = axes[0] if with_acc else axes
    peak = analyses[0].roof.peak_flops
    xs = [a.flops for a in analyses]
    ys = [v for a in analyses for _, v in _ladder(a) if v]
    x_lo, x_hi = min(xs) / 2, max(xs) * 2
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(1e3 * min(ys) / 3, 1e3 * max(ys) * 3)
    y_lo, y_hi = ax.get_ylim()
    diagonals = []
    for e in EFFICIENCIES:
        xx = np.geomspace(x_lo, x_hi, 50)
        yy = 1e3 * xx / (e * peak)
        ax.plot(xx, yy, color="0.8", lw=0.8, zorder=0)
        # each diagonal is labelled near where it leaves the axes (placed with the model labels, after them)
        vis = [(x, y) for x, y in zip(xx, yy) if y_lo <= y <= y_hi / 1.5]
        if vis:
            x, y = vis[-1]
            diagonals.append((f"{100 * e:g} % of peak", x, y, "0.45"))
    multi_batch = len({x.model for x in analyses}) < len(analyses)
    items = []
    for i, a in enumerate(analyses):
        color = f"C{i % 10}"
        pts = [(n, v) for n, v in _ladder(a) if v]
        ax.plot([a.flops] * len(pts), [1e3 * v for _, v in pts], color=color, lw=1, zorder=1)
        backwards = {p["rung"] for p in a.ladder_problems()}
        for (n, v), (_, m, face) in zip(_ladder(a), LADDER):
            if v:
                wrong = (n == "kernels" and backwards) or (n == "end-to-end" and "kernel sum above end-to-end" in backwards)
                ax.scatter([a.flops], [1e3 * v], marker=m, s=60 if m == "*" else 30, edgecolor="red" if wrong else color,
                           facecolor=face or color, linewidths=2 if wrong else 1, zorder=2, label=n if i == 0 else None)
        if a.latency_s and a.latency_iqr_s:  # the end-to-end spread: its IQR as an error bar
            ax.errorbar([a.flops], [1e3 * a.latency_s], yerr=[[1e3 * a.latency_iqr_s / 2], [1e3 * a.latency_iqr_s / 2]], color=color,
                        capsize=3, lw=1, zorder=1)
        eff = f", {100 * a.efficiency:.1f} %" if a.efficiency else ""
        text = f"{a.model}" + (f" b{a.batch}" if multi_batch else "") + eff + (" ⚠" if backwards else "")
        items.append((text, a.flops, 1e3 * max(v for _, v in pts), "red" if backwards else color))
    ax.set_xlabel("FLOPs per batch (2 x MACs + elementwise, effkit convention)")
    ax.set_ylabel("latency per batch (ms)")
    _ms_ticks(ax, "y")
    _si_ticks(ax, "x", "FLOP")
    ax.set_title(f"Efficiency gap: label = model, efficiency (ideal / latency); ⚠ = ladder runs backwards (a measurement problem)\n"
                 f"diagonals = % of peak {analyses[0].roof.dtype} ({peak / 1e12:.3g} TFLOP/s, {analyses[0].roof.name})", fontsize=8)
    ax.legend(fontsize=8, loc="upper left", title="ladder", title_fontsize=8)
    ax.grid(True, which="major", color="0.93")
    fig.tight_layout()
    if with_acc:
        ax2 = axes[1]
        for i, a in enumerate(analyses):
            if not a.top1:
                continue
            color = f"C{i % 10}"
            rungs = [(n, v) for n, v in _ladder(a) if v]
            ax2.plot([1e3 * v for _, v in rungs], [a.top1] * len(rungs), color=color, lw=1)
            for (n, v), (_, m, face) in zip(_ladder(a), LADDER):
                if v:
                    ax2.scatter([1e3 * v], [a.top1], marker=m, s=60 if m == "*" else 30, edgecolor=color, facecolor=face or color,
                                zorder=2, label=n if i == 0 else None)
        acc_items = [(a.model, 1e3 * (a.latency_s or a.waterline_s), a.top1, f"C{i % 10}") for i, a in enumerate(analyses) if a.top1]
        ax2.set_xscale("log")
        _ms_ticks(ax2, "x")
        ax2.set_xlabel("latency per batch (ms): ideal → waterline → kernels → end-to-end")
        ax2.set_ylabel("ImageNet top-1 (%)")
        ax2.set_title("Accuracy against latency, broken into its ladder", fontsize=9)
        ax2.grid(True, color="0.93")
        ax2.legend(fontsize=7, loc="center left")
        fig.tight_layout()
        place_labels(fig, ax2, acc_items, gid_prefix="acc-label-")
    placed = place_labels(fig, ax, items)  # after the last layout, so the boxes are where they are drawn
    place_labels(fig, ax, diagonals, gid_prefix="diagonal-label-", avoid=placed)
    return fig


def roofline(a: ModelAnalysis):
    """Layers under the device's roofs, coloured by kind, sized by their share of the time, the top layers named;
    flagged layers ringed in red. Each point's SVG group is id'd `layer-N` so the HTML can name it on hover."""
    fig, ax = plt.subplots(figsize=(8, 5.5))
    roof = a.roof
    measured = a.kernels_s is not None
    pts = [(i, l) for i, l in enumerate(a.layers) if l.bytes and l.flops and (l.measured_s or not measured)]
    ints = [l.intensity for _, l in pts] or [1.0]
    lo, hi = min(min(ints) / 3, roof.ridge / 100), max(max(ints) * 3, roof.ridge * 10)
    xx = np.geomspace(lo, hi, 200)
    ax.plot(xx, [roof.attainable(x) for x in xx], color="k", lw=1.5, label=f"roof: min(P, I x B), ridge {roof.ridge:.0f} FLOP/B")
    for k, (peak, _) in a.peaks_used().items():  # every other peak the per-op roofline used, as a roof of its own
        if peak != roof.peak_flops:
            ax.plot(xx, [min(peak, x * roof.bandwidth) for x in xx], color="0.5", lw=1, ls="--", label=f"{k} roof ({peak / 1e12:.3g} TFLOP/s)")
    seen = set()
    data = roofline_points(a)
    for d in data:
        kind_label = d["kind"] if d["kind"] not in seen else None
        seen.add(d["kind"])
        p = ax.scatter([d["x"]], [d["y"]], s=d["size"], color=KIND_COLORS.get(d["kind"], "k"), alpha=0.7, label=kind_label,
                       edgecolors="red" if d["flagged"] else "none", linewidths=1.5)
        p.set_gid(f"layer-{d['index']}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte of compulsory DRAM traffic)")
    ax.set_ylabel("achieved FLOP/s (counted FLOPs / measured time)" if measured else "attainable FLOP/s (not measured: on the roof)")
    ax.set_title(f"Roofline: {a.model}, batch {a.batch}, {a.dtype}; P = {roof.peak_flops / 1e12:.3g} TFLOP/s, "
                 f"B = {roof.bandwidth / 1e12:.3g} TB/s ({roof.name}); area = share of time", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="major", color="0.93")
    fig.tight_layout()
    place_labels(fig, ax, [(f"{d['path']} ({100 * d['share']:.0f} %)", d["x"], d["y"], "0.2") for d in data if d["label"]],
                 gid_prefix="top-layer-", fontsize=7)
    return fig


def waterline(a: ModelAnalysis):
    """Cumulative roofline time (the water level), measured time and the fusion what-if over layers in order, with the
    stage boundaries marked; a log time axis where the curves end more than 10x apart."""
    fig, ax = plt.subplots(figsize=(9, 4.8))
    x = np.arange(1, len(a.layers) + 1)
    curves = [("waterline (cumulative roofline time)", np.cumsum([l.roofline_s for l in a.layers]), "C0", "-")]
    if a.kernels_s is not None:
        curves.append(("measured kernel time (cumulative)", np.cumsum([l.measured_s or 0 for l in a.layers]), "C3", "-"))
    if a.fusion:
        curves.append((f"what-if: {a.fusion.pattern} fused", np.array(a.fusion.curve_s), "C2", "--"))
    scale = waterline_scale([float(c[-1]) for _, c, _, _ in curves if len(c)])
    for label, c, color, ls in curves:
        ax.plot(x, 1e3 * c, label=label, color=color, ls=ls)
    ax.set_yscale(scale)
    if scale == "log":
        pos = [1e3 * v for _, c, _, _ in curves for v in c if v > 0]
        if pos:
            ax.set_ylim(bottom=min(pos) / 2)
        _ms_ticks(ax, "y")
    for i, name in stage_boundaries([l.path for l in a.layers])[1:]:
        ax.axvline(i + 0.5, color="0.75", lw=0.8, ls=":")
    y_text = ax.get_ylim()[1]
    last = -1e9
    for i, name in stage_boundaries([l.path for l in a.layers]):
        if i - last < 0.04 * len(a.layers):  # too close to the last name to be read: the dotted line stays
            continue
        ax.annotate(name, (i + 1, y_text), fontsize=6, color="0.4", rotation=90, ha="left", va="top", xytext=(2, -2), textcoords="offset points")
        last = i
    ax.set_xlabel("layer (execution order); dotted lines: stage boundaries")
    ax.set_ylabel("cumulative time (ms" + (", log scale)" if scale == "log" else ")"))
    ax.set_title(f"Waterline: {a.model}, batch {a.batch}, {a.dtype} ({a.roof.name})", fontsize=9)
    ax.legend(fontsize=8, loc="lower right" if scale == "log" else "upper left")
    ax.grid(True, color="0.93")
    fig.tight_layout()
    return fig


def memory_timeline(memory: dict):
    """Predicted live bytes along the ops of a step (activations, gradients, temporaries stacked on what lives
    throughout), the peak marked and the layers alive at it named."""
    tl = memory["timeline"]
    fig, ax = plt.subplots(figsize=(9, 4.2))
    x = np.arange(len(tl))
    static = memory["static_bytes"] / 1e6
    acts = np.array([t[2] for t in tl]) / 1e6
    grads = np.array([t[3] for t in tl]) / 1e6
    temps = np.array([t[4] for t in tl]) / 1e6
    ax.stackplot(x, np.full(len(tl), static), acts, grads, temps, labels=["parameters, buffers, inputs, optimizer state", "activations",
                 "gradients", "temporaries"], colors=["#bbbbbb", "C0", "C1", "C3"], alpha=0.85)
    i = memory["peak_op"]
    ax.axvline(i, color="k", lw=0.8, ls="--")
    top = ", ".join(p for p, _ in memory["layers_at_peak"][:3])
    ax.annotate(f"peak {memory['peak_bytes'] / 1e6:,.0f} MB at {memory['peak_path'] or '(model)'} ({memory['peak_phase']})"
                + (f"\nalive: {top}" if top else ""), (i, memory["peak_bytes"] / 1e6), textcoords="offset points", xytext=(-6, -8),
                ha="right" if i > len(tl) / 2 else "left", va="top", fontsize=7, bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"})
    ax.set_xlabel("op (execution order)")
    ax.set_ylabel("predicted live memory (MB = 10^6 bytes)")
    what = "inference" if memory["mode"] == "infer" else f"training step ({memory['optimizer']})"
    ax.set_title(f"Memory over the step: {memory['model']}, batch {memory['batch']}, {memory['precision']}, {what} (meta trace)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_ylim(0, memory["peak_bytes"] / 1e6 * 1.25)
    ax.grid(True, color="0.93")
    fig.tight_layout()
    return fig


def save(fig, folder: Path, name: str) -> dict:
    """Write `name`.png and `name`.svg; return the paths and the SVG text."""
    folder.mkdir(parents=True, exist_ok=True)
    png, svg = folder / f"{name}.png", folder / f"{name}.svg"
    fig.savefig(png, dpi=110)
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg.write_text(buf.getvalue())
    return {"png": png, "svg": svg, "svg_text": buf.getvalue()}


def svg_with_titles(svg: str, titles: dict[str, str]) -> str:
    """Insert a <title> into each SVG group whose id is in `titles` (hover text in browsers)."""
    def add(m):
        t = titles.get(m.group(1))
        return m.group(0) + (f"<title>{escape(t)}</title>" if t else "")

    svg = re.sub(r'<g id="(layer-\d+)"[^>]*>', add, svg)
    return svg[svg.index("<svg"):]  # inline: drop the XML prolog
