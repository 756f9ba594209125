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


def _ladder(a: ModelAnalysis) -> list[tuple[str, float | None]]:
    return [("ideal", a.ideal_s), ("waterline", a.waterline_s), ("kernels", a.kernels_s), ("end-to-end", a.latency_s)]


def efficiency_gap(analyses: list[ModelAnalysis], accuracy: bool = False):
    """Log-log FLOPs vs latency with iso-efficiency diagonals and each model's ladder; optionally accuracy vs latency."""
    with_acc = accuracy and any(a.top1 for a in analyses)
    fig, axes = plt.subplots(1, 2 if with_acc else 1, figsize=(13 if with_acc else 7.5, 5.5))
    ax = axes[0] if with_acc else axes
    peak = analyses[0].roof.peak_flops
    xs = [a.flops for a in analyses]
    ys = [v for a in analyses for _, v in _ladder(a) if v]
    x_lo, x_hi = min(xs) / 2, max(xs) * 2
    for e in EFFICIENCIES:
        xx = np.geomspace(x_lo, x_hi, 50)
        ax.plot(xx, 1e3 * xx / (e * peak), color="0.8", lw=0.8, zorder=0)
        ax.annotate(f"{100 * e:g} %", (x_hi, 1e3 * x_hi / (e * peak)), fontsize=7, color="0.5", ha="right", va="bottom")
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
        if backwards:
            ax.annotate("ladder runs backwards:\nmeasurement problem", (a.flops, 1e3 * min(v for _, v in pts)), textcoords="offset points",
                        xytext=(4, -14), fontsize=7, color="red")
        top = max(v for _, v in pts)
        ax.annotate(f"{a.model}" + (f" b{a.batch}" if len({x.model for x in analyses}) < len(analyses) else ""), (a.flops, 1e3 * top),
                    textcoords="offset points", xytext=(4, 4), fontsize=8, color=color)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(1e3 * min(ys) / 3, 1e3 * max(ys) * 3)
    ax.set_xlabel("FLOPs per batch (2 x MACs + elementwise, effkit convention)")
    ax.set_ylabel("latency per batch (ms)")
    ax.set_title(f"Efficiency gap: diagonals = % of peak {analyses[0].roof.dtype} ({peak / 1e12:.3g} TFLOP/s, {analyses[0].roof.name})", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", title="ladder", title_fontsize=8)
    ax.grid(True, which="major", color="0.93")
    if with_acc:
        ax2 = axes[1]
        for i, a in enumerate(analyses):
            lat = a.latency_s or a.waterline_s
            if a.top1:
                ax2.scatter([1e3 * lat], [a.top1], color=f"C{i % 10}", s=40)
                ax2.annotate(a.model, (1e3 * lat, a.top1), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax2.set_xscale("log")
        ax2.set_xlabel("latency per batch (ms; waterline where not measured)")
        ax2.set_ylabel("ImageNet top-1 (%)")
        ax2.set_title("Accuracy vs latency", fontsize=9)
        ax2.grid(True, color="0.93")
    fig.tight_layout()
    return fig


def roofline(a: ModelAnalysis):
    """Layers under the device's roofs, coloured by kind; flagged layers ringed in red.
    Each point's SVG group is id'd `layer-N` so the HTML can name it on hover."""
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
    for i, l in pts:
        y = l.achieved_flops_per_s if measured else roof.attainable(l.intensity)
        kind_label = l.kind if l.kind not in seen else None
        seen.add(l.kind)
        (p,) = ax.plot([l.intensity], [y], "o", ms=5, color=KIND_COLORS.get(l.kind, "k"), alpha=0.8, label=kind_label,
                       markeredgecolor="red" if l.faster_than_roofline else "none", markeredgewidth=1.5)
        p.set_gid(f"layer-{i}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte of compulsory DRAM traffic)")
    ax.set_ylabel("achieved FLOP/s (counted FLOPs / measured time)" if measured else "attainable FLOP/s (not measured: on the roof)")
    ax.set_title(f"Roofline: {a.model}, batch {a.batch}, {a.dtype}; P = {roof.peak_flops / 1e12:.3g} TFLOP/s, "
                 f"B = {roof.bandwidth / 1e12:.3g} TB/s ({roof.name})", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="major", color="0.93")
    fig.tight_layout()
    return fig


def waterline(a: ModelAnalysis):
    """Cumulative roofline time (the water level), measured time and the fusion what-if over layers in order."""
    fig, ax = plt.subplots(figsize=(9, 4.8))
    x = np.arange(1, len(a.layers) + 1)
    ax.plot(x, 1e3 * np.cumsum([l.roofline_s for l in a.layers]), label="waterline (cumulative roofline time)", color="C0")
    if a.kernels_s is not None:
        ax.plot(x, 1e3 * np.cumsum([l.measured_s or 0 for l in a.layers]), label="measured kernel time (cumulative)", color="C3")
    if a.fusion:
        ax.plot(x, 1e3 * np.array(a.fusion.curve_s), label=f"what-if: {a.fusion.pattern} fused", color="C2", ls="--")
    ax.set_xlabel("layer (execution order)")
    ax.set_ylabel("cumulative time (ms)")
    ax.set_title(f"Waterline: {a.model}, batch {a.batch}, {a.dtype} ({a.roof.name})", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
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
