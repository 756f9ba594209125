"""The summary table as people read it: readable column names with units, numbers rounded to what their
spread supports, efficiency as a percentage; and "what would make it faster", in words."""
from __future__ import annotations

import math

from effkit.analysis.roofline import ModelAnalysis

DISPLAY_COLS = ["model", "batch", "latency (ms, ± IQR/2)", "samples/s", "efficiency (% of ideal)", "ideal (ms)", "waterline (ms)",
                "kernels (ms)", "gaps: memory · kernel · overhead (×)", "fusion what-if (×)", "GMACs", "params (M)", "top-1 (%)"]


def with_spread(value: float | None, spread: float | None, digits: int = 4) -> str:
    """`value ± spread`, the value rounded to the spread's first significant digit (6.0916 ± 0.0043 -> '6.092 ± 0.004');
    without a spread, `digits` significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if not spread or spread <= 0:
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:,.0f}"
    decimals = max(0, -math.floor(math.log10(spread)))
    return f"{value:,.{decimals}f} ± {spread:.{decimals}f}"


def pct(fraction: float | None, decimals: int = 1) -> str:
    return "–" if fraction is None else f"{100 * fraction:.{decimals}f} %"


def _x(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def display_row(a: ModelAnalysis) -> dict:
    r = a.summary_row()
    half = None if r["latency_iqr_ms"] is None else r["latency_iqr_ms"] / 2
    rel = (half / r["latency_ms"]) if half and r["latency_ms"] else None
    return {
        "model": a.model, "batch": a.batch, "latency (ms, ± IQR/2)": with_spread(r["latency_ms"], half),
        # samples/s inherits the latency's relative spread
        "samples/s": with_spread(r["samples_per_s"], r["samples_per_s"] * rel if rel and r["samples_per_s"] else None, 3),
        "efficiency (% of ideal)": pct(r["efficiency"]), "ideal (ms)": with_spread(r["ideal_ms"], None, 3),
        "waterline (ms)": with_spread(r["waterline_ms"], None, 3),
        "kernels (ms)": with_spread(r["kernels_ms"], None if r["kernels_iqr_ms"] is None else r["kernels_iqr_ms"] / 2),
        "gaps: memory · kernel · overhead (×)": f"{_x(r['memory_gap'])} · {_x(r['kernel_gap'])} · {_x(r['overhead_gap'])}",
        "fusion what-if (×)": _x(r["fusion_speedup"]), "GMACs": _g(r["macs"] / 1e9) if r["macs"] else "–",
        "params (M)": f"{r['params'] / 1e6:.3g}" if r["params"] else "–", "top-1 (%)": "–" if r["top1"] is None else f"{r['top1']:.1f}",
    }


def faster_sentences(a: ModelAnalysis, top: int = 3) -> list[str]:
    """What would make it faster, in words: the largest rung of the ladder, and the layers that lose most time."""
    rungs = [("memory-bound layers (the waterline above the ideal): fewer bytes moved, by fusing layers or a lower precision",
              a.memory_gap)]
    if a.kernel_gap:
        rungs.append(("kernel quality (measured kernels above the waterline): better kernels, e.g. torch.compile, channels-last, "
                      "cudnn.benchmark", a.kernel_gap))
    if a.overhead_gap:
        rungs.append(("overhead outside the kernels (launches, Python, synchronisation): CUDA graphs, a larger batch, or "
                      "torch.compile's reduce-overhead mode", a.overhead_gap))
    valid = [(n, g) for n, g in rungs if g and g == g and g >= 1]
    out = []
    if valid:
        name, gap = max(valid, key=lambda x: x[1])
        out.append(f"{a.model}, batch {a.batch}: the largest rung is ×{gap:.2f}, {name}.")
    lost = sorted((l for l in a.layers if l.measured_s and l.roofline_s is not None), key=lambda l: -(l.measured_s - l.roofline_s))[:top]
    lost = [l for l in lost if l.measured_s > l.roofline_s]
    if lost:
        total = sum(l.measured_s or 0 for l in a.layers) or 1.0
        out.append("The layers that lose most time against their roofline: " + "; ".join(
            f"{l.path} ({l.kind}, {l.bound}-bound): {1e3 * l.measured_s:.3f} ms measured, {1e3 * l.roofline_s:.3f} ms roofline, "
            f"{100 * l.measured_s / total:.0f} % of kernel time" for l in lost) + ".")
    elif a.kernels_s is None:
        top_roof = sorted(a.layers, key=lambda l: -(l.roofline_s or 0))[:top]
        out.append("Not measured; by roofline time the costliest layers are " + ", ".join(
            f"{l.path} ({l.kind}, {1e3 * l.roofline_s:.3f} ms)" for l in top_roof) + ".")
    if a.fusion and a.fusion.speedup and a.fusion.speedup > 1.05:
        out.append(f"Running each of the {len(a.fusion.blocks)} {a.fusion.pattern} as one kernel would lower the waterline "
                   f"×{a.fusion.speedup:.2f} (a prediction, not a measurement).")
    return out


def _g(v: float) -> str:
    return f"{v:,.0f}" if v >= 1000 else f"{v:.3g}"


def peak_memory_sentence(point) -> str | None:
    """A measured point's peak memory beside the meta-trace prediction, in words (None where either is missing)."""
    if not (point.peak_memory_bytes and point.predicted_peak_bytes):
        return None
    return (f"peak memory measured {point.peak_memory_bytes / 1e6:,.1f} MB (max_memory_allocated), predicted "
            f"{point.predicted_peak_bytes / 1e6:,.1f} MB from a meta trace: ratio measured / predicted "
            f"{point.peak_memory_bytes / point.predicted_peak_bytes:.3f}")
