"""The scaling report: variants, fitted exponents beside theory, and params / activations /
latency against FLOPs, one line per strategy."""
from __future__ import annotations

from effkit.files import atomic_write_json
from effkit.report import figures as F
from effkit.report.html import Page, png64, render


def scaling_figure(result):
    import matplotlib.pyplot as plt

    measured = any(p.latency_ms for p in result.points)
    panels = [("params", "parameters"), ("acts", "activations (elements)")] + ([("latency_ms", "latency (ms)")] if measured else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6))
    for ax, (key, label) in zip(axes, panels):
        for i, strat in enumerate(result.fits):
            ps = sorted((p for p in result.points if p.strategy == strat and getattr(p, key)), key=lambda p: p.flops)
            if not ps:
                continue
            e = result.fits[strat]["latency" if key == "latency_ms" else key][0]
            ax.plot([p.flops for p in ps], [getattr(p, key) for p in ps], "o-", color=f"C{i}", ms=4,
                    label=f"{strat} (e = {e:.2f})" if e is not None else strat)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("FLOPs per batch (effkit convention)")
        ax.set_ylabel(label)
        ax.grid(True, which="major", color="0.93")
        ax.legend(fontsize=7, title="strategy (fitted exponent)", title_fontsize=7)
    fig.suptitle(f"Scaling {result.points[0].base}: growth against FLOPs", fontsize=10)
    fig.tight_layout()
    return fig


def write_scale_report(result, meta: dict):
    folder = result.folder
    fig = F.save(scaling_figure(result), folder, "scaling")
    result.fits_frame().to_csv(folder / "fits.csv", index=False)
    lv = result.latency_vs()
    headline = [f"{meta['base']} scaled by {', '.join(result.fits)} at factors "
                f"{', '.join(f'{f:g}' for f in sorted({p.factor for p in result.points}))} (batch {meta['batch']}, {meta['dtype']}, "
                f"{meta['device']}); dWr uses α = {result.alpha}."]
    for s, f in result.fits.items():
        pe, pt = f["params"]
        ae, at = f["acts"]
        le = f["latency"][0]
        headline.append(f"{s}: params ∝ FLOPs^{pe:.2f} (theory {pt:.2f}), activations ∝ FLOPs^{ae:.2f} (theory {at:.2f})"
                        + (f", latency ∝ FLOPs^{le:.2f}" if le is not None else "") + ".")
    depth = (result.fits.get("d") or {}).get("unscaled")
    if depth:
        ae, at = result.fits["d"]["acts"]
        headline.append(
            f"Depth: activations ∝ FLOPs^{ae:.2f} for the network against a per-layer theory of {at:.2f}, because depth scaling copies "
            f"only the later blocks of each stage: the stem, the head and each stage's first (stride-2 transition) block are not "
            f"copied, and in the base they hold {100 * depth['acts_share']:.0f} % of the activations but {100 * depth['flops_share']:.0f} % "
            f"of the FLOPs; with those parts fixed, the exponent over these factors would be {depth['predicted_exponent']:.2f}.")
    noisy = [p for p in result.points if p.latency_ms and p.latency_iqr_ms and p.latency_iqr_ms > 0.1 * p.latency_ms]
    if noisy:
        headline.append(f"Noisy timing: {len(noisy)} of {sum(1 for p in result.points if p.latency_ms)} measured variants have an IQR over "
                        f"10 % of their median ({', '.join(f'{p.strategy}×{p.factor:g}' for p in noisy[:6])}"
                        f"{', …' if len(noisy) > 6 else ''}); the latency exponents carry that uncertainty.")
    if lv["r2_acts"] is not None:
        closer = "activations" if lv["r2_acts"] > lv["r2_flops"] else "FLOPs"
        headline.append(f"Across all {lv['measured']} measured variants, log latency follows log activations with R² = {lv['r2_acts']:.3f} "
                        f"and log FLOPs with R² = {lv['r2_flops']:.3f}: latency follows {closer} more closely.")
    atomic_write_json(folder / "summary.json", {"meta": meta, "headline": headline, "fits": result.fits, "latency_vs": lv})
    rows = [{**p.__dict__, "config": f"d×{p.d:.3g} w×{p.w:.3g} r×{p.r:.3g} ({p.resolution}px)"} for p in result.points]
    cols = ["strategy", "factor", "achieved_factor", "config", "flops", "macs", "params", "acts", "latency_ms", "latency_iqr_ms", "latency_cv",
            "status"]
    fits = [{"strategy": s, "params (fit)": f["params"][0], "params (theory)": f["params"][1], "acts (fit, network)": f["acts"][0],
             "acts (theory, per layer)": f["acts"][1],
             "acts (predicted with the parts not scaled)": (f.get("unscaled") or {}).get("predicted_exponent"),
             "latency (fit)": f["latency"][0]} for s, f in result.fits.items()]
    render(folder / "index.html", Page(
        title=f"effkit scale: {meta['base']}", subtitle=f"{meta['device']} · {meta['dtype']} · batch {meta['batch']}",
        headline=headline, figures=[{"id": "scaling", "title": "Growth against FLOPs", "caption": "Log-log; each line one strategy, each "
                                     "point one flops factor; exponents fitted by least squares in log-log.", "png64": png64(fig["png"])}],
        summary_rows=fits, summary_cols=list(fits[0]) if fits else [], layer_rows=rows, layer_cols=cols, layer_caption=": every variant",
        notes=["Theory: FLOPs ∝ d·w²·r², params ∝ d·w², activations ∝ d·w·r², with the strategy's multipliers before rounding.",
               "Rounding: depths to the nearest integer ≥ 1, widths to multiples of 8, resolution to multiples of 4, group widths with widths."]))
    return folder
