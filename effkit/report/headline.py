"""The headline in words: what the numbers of one analysis say, sentence by sentence, with their
spread, and with every rung of the ladder that runs backwards named as a measurement problem."""
from __future__ import annotations

from effkit.analysis.roofline import ModelAnalysis

SPREAD_WARN = 0.10  # IQR / median above this: the headline says the timing is noisy


def _ms(s: float) -> str:
    return f"{1e3 * s:.3f} ms"


def ladder_sentence(a: ModelAnalysis, label: str = "Gap ladder") -> str:
    """'LABEL: ideal … → waterline … → kernels … → end-to-end ….' A rung below the one before it is named
    as a measurement problem, never as a gap below one."""
    ladder = f"ideal {_ms(a.ideal_s)} → waterline {_ms(a.waterline_s)} (×{a.memory_gap:.2f}, memory-bound layers)"
    if a.kernels_s:
        if a.kernel_gap >= 1:
            ladder += f" → kernels {_ms(a.kernels_s)} (×{a.kernel_gap:.2f}, kernel quality)"
        else:
            ladder += f" → kernels {_ms(a.kernels_s)} (below the waterline: a measurement problem, see below)"
    if a.latency_s and a.kernels_s:
        spread = f" ± {_ms(a.latency_iqr_s / 2)}" if a.latency_iqr_s else ""
        if a.overhead_gap >= 1:
            ladder += f" → end-to-end {_ms(a.latency_s)}{spread} (×{a.overhead_gap:.2f}, launches, Python, synchronisation)"
        else:
            ladder += f" → end-to-end {_ms(a.latency_s)}{spread} (below the kernel sum: a measurement problem, see below)"
    return f"{label}: {ladder}."


def noise_cause(environment) -> str:
    """The likely cause of a large spread, from what the environment recorded."""
    if environment is None:
        return "the environment was not recorded"
    issues = environment.load_issues
    if issues:
        return "; ".join(issues)
    s0, s1 = environment.state_start or {}, environment.state_end or {}
    if s0.get("sm_clock_mhz") and s1.get("sm_clock_mhz") and abs(s0["sm_clock_mhz"] - s1["sm_clock_mhz"]) > 0.05 * s0["sm_clock_mhz"]:
        return f"the GPU clock moved from {s0['sm_clock_mhz']} to {s1['sm_clock_mhz']} MHz during the point"
    return ("no other load was seen; likely frequency scaling, the OS scheduler, or a launch-bound step: time longer (--min-time) "
            "on an idle machine")


def spread_sentence(a: ModelAnalysis, environment=None) -> str | None:
    """A sentence when the end-to-end samples are noisy (IQR over 10 % of the median), with the likely cause."""
    r = a.latency_spread
    if r is None or r <= SPREAD_WARN:
        return None
    cv = f", CV {a.latency_cv:.2f}" if a.latency_cv is not None else ""
    return (f"Noisy timing: the IQR of the end-to-end samples is {100 * r:.0f} % of the median{cv} over {a.latency_samples} samples, "
            f"so every ratio here carries that uncertainty. Likely cause: {noise_cause(environment)}.")


def load_sentence(environment) -> str | None:
    """A sentence when the point was measured while other processes loaded the machine."""
    issues = environment.load_issues if environment is not None else []
    if not issues:
        return None
    return (f"Measured under load: {'; '.join(issues)} during this point, so its times are likely inflated and noisier than on an "
            "idle machine.")


def problem_sentences(a: ModelAnalysis) -> list[str]:
    out = []
    for p in a.ladder_problems():
        size = f"{100 * p['excess']:.1f} %"
        where = "beyond the measured spread" if p["beyond_spread"] else "within the measured spread"
        out.append(f"Measurement problem: {p['rung']} by {size} ({where}); likely cause: {p['cause']}.")
    return out


def _mb(b: float) -> str:
    return f"{b / 1e6:,.1f} MB"


def figures_sentence(a: ModelAnalysis) -> str | None:
    """The three timing figures, each under its name, and which one the ladder uses."""
    if not a.latency_s:
        return None
    parts = [f"device time per step {_ms(a.latency_s)} (the ladder's end-to-end rung)"]
    if a.sync_latency_s:
        parts.append(f"synchronous latency {_ms(a.sync_latency_s)} (one step at a time, to its result)")
    if a.throughput_samples_per_s:
        parts.append(f"throughput {a.throughput_samples_per_s:,.0f} samples/s (back-to-back loops)")
    return "Timing: " + "; ".join(parts) + "."


def peaks_sentence(a: ModelAnalysis) -> str | None:
    used = a.peaks_used()
    if len(used) < 2:
        return None
    return ("Peaks used, op by op: " + ", ".join(f"{k} {p / 1e12:.3g} TFLOP/s for {f / 1e9:,.2f} GFLOP" for k, (p, f) in
                                                  sorted(used.items(), key=lambda kv: -kv[1][1])) + ".")


def autocast_sentence(a: ModelAnalysis) -> str | None:
    """Where a mixed precision's extra time goes: its casts (which layers, how many bytes) and the waterline it costs."""
    if not a.casts:
        return None
    total = sum(l.bytes for l in a.layers) or 1
    kinds = sorted((a.cast_bytes_by_kind or {}).items(), key=lambda kv: -kv[1])
    where = ", ".join(f"{k} layers {_mb(b)}" for k, b in kinds[:3])
    out = (f"Autocast: {a.casts} casts move {_mb(a.cast_bytes)} of the {_mb(total)} the forward moves ({100 * a.cast_bytes / total:.0f} %): "
           f"{where}.")
    if a.waterline_if_cast_s:
        out += (f" Cast to one dtype instead, the waterline would be {_ms(a.waterline_if_cast_s)}, not {_ms(a.waterline_s)} "
                f"(×{a.waterline_s / a.waterline_if_cast_s:.2f}): the casts and the float32 activations between low-precision products.")
    return out


def headline(a: ModelAnalysis, environment=None) -> list[str]:
    """The sentences a report and the terminal lead with."""
    out = []
    if a.latency_s:
        spread = f" (IQR {_ms(a.latency_iqr_s)}, CV {a.latency_cv:.2f})" if a.latency_iqr_s is not None and a.latency_cv is not None else ""
        peak = (f"peak {a.roof.dtype} ({a.roof.peak_flops / 1e12:.3g} TFLOP/s, {a.roof.name})" if len(a.peaks_used()) < 2 else
                f"its ideal at the peaks of each op's dtype ({a.roof.name})")
        out.append(f"{a.model} at batch {a.batch}, {a.dtype} on {a.device}: {_ms(a.latency_s)} per batch{spread}, "
                   f"{a.batch / a.latency_s:,.0f} samples/s, {100 * a.efficiency:.1f} % of {peak}.")
    else:
        out.append(f"{a.model} at batch {a.batch}, {a.dtype}: not measured; roofline analysis against {a.roof.name}.")
    for extra in (load_sentence(environment), spread_sentence(a, environment)):
        if extra:
            out.append(extra)
    out.append(ladder_sentence(a))
    out += problem_sentences(a)
    out += [x for x in (figures_sentence(a), peaks_sentence(a), autocast_sentence(a)) if x]
    if a.waterline_floor_s is not None and a.waterline_floor_s > 1.05 * a.waterline_s:
        out.append(f"With the measured launch floor ({1e6 * a.roof.launch_floor_s:.1f} µs per kernel), the waterline is "
                   f"{_ms(a.waterline_floor_s)}, not {_ms(a.waterline_s)}: at this size launching the kernels costs more than their work.")
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
