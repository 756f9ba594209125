"""The headline in words: what the numbers of one analysis say, sentence by sentence."""
from __future__ import annotations

from effkit.analysis.roofline import ModelAnalysis


def _ms(s: float) -> str:
    return f"{1e3 * s:.3f} ms"


def ladder_sentence(a: ModelAnalysis, label: str = "Gap ladder") -> str:
    """'LABEL: ideal … → waterline … → kernels … → end-to-end ….'"""
    ladder = f"ideal {_ms(a.ideal_s)} → waterline {_ms(a.waterline_s)} (×{a.memory_gap:.2f}, memory-bound layers)"
    if a.kernels_s:
        ladder += f" → kernels {_ms(a.kernels_s)} (×{a.kernel_gap:.2f}, kernel quality)"
    if a.latency_s and a.kernels_s:
        ladder += f" → end-to-end {_ms(a.latency_s)} (×{a.overhead_gap:.2f}, launches, Python, synchronisation)"
    return f"{label}: {ladder}."


def headline(a: ModelAnalysis) -> list[str]:
    """The sentences a report and the terminal lead with."""
    out = []
    if a.latency_s:
        out.append(f"{a.model} at batch {a.batch}, {a.dtype} on {a.device}: {_ms(a.latency_s)} per batch, "
                   f"{a.batch / a.latency_s:,.0f} samples/s, {100 * a.efficiency:.1f} % of peak {a.dtype} "
                   f"({a.roof.peak_flops / 1e12:.3g} TFLOP/s, {a.roof.name}).")
    else:
        out.append(f"{a.model} at batch {a.batch}, {a.dtype}: not measured; roofline analysis against {a.roof.name}.")
    out.append(ladder_sentence(a))
    shares = a.time_shares()
    mem = shares["bound"].get("memory", 0)
    if shares["memory_kind"]:
        k, v = max(shares["memory_kind"].items(), key=lambda kv: kv[1])
        out.append(f"{100 * mem:.0f} % of {shares['basis']} is in memory-bound layers; {k} layers alone are {100 * v:.0f} %.")
    if a.fusion and a.fusion.blocks:
        out.append(f"Fusion what-if: running each of the {len(a.fusion.blocks)} {a.fusion.pattern} as one kernel would lower the "
                   f"waterline from {_ms(a.fusion.waterline_s)} to {_ms(a.fusion.fused_waterline_s)} (×{a.fusion.speedup:.2f}).")
    if a.flagged:
        beyond = [l for l in a.flagged if l.measured_s < l.cached_roofline_s(a.roof)]
        out.append(f"{len(a.flagged)} layer(s) measured faster than their DRAM roofline time; "
                   + (f"{len(beyond)} even allowing for cache reuse (a count or a ceiling is wrong): see the flags." if beyond else
                      "all within what reading their input from the cache the previous layer wrote allows: see the flags."))
    return out
