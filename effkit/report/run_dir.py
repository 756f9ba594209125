"""Run folders: everything a profile or comparison writes, and rebuilding reports from them.

A profile run folder holds index.html, layers.csv, summary.csv, summary.json, provenance.json,
the figures (PNG and SVG), bench.json (every measured point with its samples) and run.json
(the analyses, from which `effkit report` rebuilds the report without measuring again).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from effkit.analysis.roofline import ModelAnalysis
from effkit.errors import UserInputError
from effkit.report import figures as F
from effkit.report.html import png64, render

SUMMARY_COLS = ["model", "batch", "dtype", "latency_ms", "samples_per_s", "efficiency", "ideal_ms", "waterline_ms", "kernels_ms",
                "memory_gap", "kernel_gap", "overhead_gap", "fusion_speedup", "macs", "flops", "params", "acts", "flagged_layers", "top1"]
LAYER_COLS = ["path", "module_type", "kind", "bound", "macs", "flops", "params", "acts", "bytes", "intensity_flop_per_byte",
              "roofline_ms", "measured_ms", "kernels", "efficiency", "lost_ms", "achieved_flops_per_s", "faster_than_roofline"]


def flag_rows(a: ModelAnalysis) -> list[dict]:
    """Each layer faster than its DRAM roofline, with whether cache reuse accounts for it."""
    cache = a.roof.l2_bytes
    out = []
    for l in a.flagged:
        cached = l.cached_roofline_s(a.roof)
        if cache and l.measured_s >= cached:
            reason = (f"cache reuse: of its {l.bytes_read / 1e6:.1f} MB read over {l.calls} call(s), up to "
                      f"{min(l.bytes_read, l.calls * cache) / 1e6:.1f} MB can come from the {cache / 2**20:.0f} MiB last on-chip cache that the "
                      f"layer before just wrote; with that allowance its roofline is {1e3 * cached:.4f} ms, which the measured time respects")
        else:
            reason = ("faster even if every byte it reads came from cache: a count or a ceiling is wrong" if cache else
                      "no cache size known for this device: a count or a ceiling is wrong, or its input came from cache")
        out.append({"path": l.path, "kind": l.kind, "measured_ms": 1e3 * l.measured_s, "roofline_ms": 1e3 * l.roofline_s, "mb": l.bytes / 1e6,
                    "cached_roofline_ms": 1e3 * cached, "explained_by_cache": bool(cache) and l.measured_s >= cached, "reason": reason})
    return out


def layer_table(a: ModelAnalysis, trace_rows: list[dict] | None) -> list[dict]:
    extra = {r["path"]: r for r in trace_rows or []}
    rows = []
    for l in a.layers:
        r = l.row()
        t = extra.get(l.path, {})
        r.update({k: t.get(k) for k in ("macs", "params", "acts")})
        rows.append(r)
    return rows


def write_profile(folder: Path, analyses: list[ModelAnalysis], trace_rows: list[dict] | None = None, bench_dict: dict | None = None) -> Path:
    """Write the run folder for one model (one analysis per batch; the layer views use the last)."""
    folder.mkdir(parents=True, exist_ok=True)
    a = analyses[-1]
    figs = profile_figures(folder, analyses)
    rows = layer_table(a, trace_rows)
    pd.DataFrame(rows, columns=LAYER_COLS + [c for c in rows[0] if c not in LAYER_COLS] if rows else LAYER_COLS).to_csv(folder / "layers.csv", index=False)
    summary = [x.summary_row() for x in analyses]
    pd.DataFrame(summary).to_csv(folder / "summary.csv", index=False)
    headline = a.headline()
    (folder / "summary.json").write_text(json.dumps({"summary": summary, "headline": headline, "roof": a.roof.__dict__,
                                                     "flags": flag_rows(a), "uncovered": list(a.uncovered)}, indent=2, default=str))
    (folder / "provenance.json").write_text(json.dumps(a.provenance, indent=2, default=str))
    (folder / "run.json").write_text(json.dumps({"kind": "profile", "analyses": [x.to_dict() for x in analyses], "trace_rows": trace_rows or []},
                                                default=str))
    if bench_dict is not None:
        (folder / "bench.json").write_text(json.dumps(bench_dict, indent=2, default=str))
    render_profile(folder, analyses, rows, figs)
    return folder


def profile_figures(folder: Path, analyses: list[ModelAnalysis]) -> dict:
    """The efficiency gap over all batches; roofline and waterline of the last."""
    return {"efficiency_gap": F.save(F.efficiency_gap(analyses), folder, "efficiency_gap"),
            "roofline": F.save(F.roofline(analyses[-1]), folder, "roofline"),
            "waterline": F.save(F.waterline(analyses[-1]), folder, "waterline")}


def render_profile(folder: Path, analyses: list[ModelAnalysis], rows: list[dict], figs: dict) -> Path:
    a = analyses[-1]
    titles = {f"layer-{i}": f"{l.path} ({l.kind}, {l.bound}-bound): {l.flops / 1e6:.2f} MFLOP, {l.bytes / 1e6:.2f} MB, "
              f"I = {l.intensity or 0:.1f} FLOP/B" + (f", measured {1e3 * l.measured_s:.4f} ms, {100 * (l.efficiency or 0):.0f} % of roof"
                                                         if l.measured_s else "")
              for i, l in enumerate(a.layers)}
    lost = sorted([r for r in rows if r["lost_ms"] is not None], key=lambda r: -r["lost_ms"])[:15]
    return render(
        folder / "index.html",
        title=f"effkit profile: {a.model}",
        subtitle=f"{a.device} · {a.dtype} · batch {', '.join(str(x.batch) for x in analyses)} · roofs: {a.roof.name} ({a.roof.source})",
        headline=a.headline(),
        summary_rows=[x.summary_row() for x in analyses], summary_cols=SUMMARY_COLS,
        figures=[
            {"id": "gap", "title": "Efficiency gap", "caption": "Each batch's ladder: ideal → waterline → kernels → end-to-end, against "
             "diagonals of constant efficiency (% of peak).", "png64": png64(figs["efficiency_gap"]["png"])},
            {"id": "roofline", "title": "Roofline", "caption": "One point per layer (hover to name it), coloured by kind; red rings: "
             "measured faster than the roofline.", "svg": F.svg_with_titles(figs["roofline"]["svg_text"], titles)},
            {"id": "waterline", "title": "Waterline", "caption": "Cumulative roofline time against cumulative measured kernel time, "
             "and the fusion what-if.", "png64": png64(figs["waterline"]["png"])},
        ],
        layer_rows=rows, layer_cols=LAYER_COLS, layer_caption=f" (batch {a.batch})",
        flags=flag_rows(a), lost=lost, uncovered=a.uncovered, notes=a.notes, provenance=a.provenance,
    )


def write_comparison(folder: Path, analyses: list[ModelAnalysis], links: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    fig = F.save(F.efficiency_gap(analyses, accuracy=True), folder, "efficiency_gap")
    summary = [a.summary_row() for a in analyses]
    pd.DataFrame(summary).to_csv(folder / "summary.csv", index=False)
    (folder / "summary.json").write_text(json.dumps({"summary": summary, "headlines": {a.model: a.headline() for a in analyses}}, indent=2, default=str))
    (folder / "run.json").write_text(json.dumps({"kind": "compare", "analyses": [a.to_dict() for a in analyses], "links": links or {}}, default=str))
    headline = []
    measured = [a for a in analyses if a.latency_s]
    if measured:
        fastest = min(measured, key=lambda a: a.latency_s)
        best = max(measured, key=lambda a: a.efficiency)
        headline.append(f"Fastest: {fastest.model} ({1e3 * fastest.latency_s:.3f} ms per batch of {fastest.batch}); most efficient: "
                        f"{best.model} ({100 * best.efficiency:.1f} % of peak).")
    for a in analyses:
        headline.append(a.headline()[1].replace("Gap ladder", f"{a.model}"))
    render(folder / "index.html", title="effkit comparison: " + ", ".join(a.model for a in analyses),
           subtitle=f"{analyses[0].device} · {analyses[0].dtype} · roofs: {analyses[0].roof.name}",
           headline=headline, summary_rows=summary, summary_cols=SUMMARY_COLS,
           figures=[{"id": "gap", "title": "Efficiency gap" + (" and accuracy" if any(a.top1 for a in analyses) else ""),
                     "caption": "Each model's ladder ideal → waterline → kernels → end-to-end; top-1 from the zoo's reference or --accuracy.",
                     "png64": png64(fig["png"])}],
           links=[(m, p) for m, p in (links or {}).items()], provenance=analyses[0].provenance)
    return folder


def load_run(folder: str | Path) -> tuple[str, list[ModelAnalysis], dict]:
    p = Path(folder) / "run.json"
    if not p.is_file():
        raise UserInputError(f"{folder!r} is not an effkit run folder (no run.json); give folders written by effkit profile or compare")
    d = json.loads(p.read_text())
    return d["kind"], [ModelAnalysis.from_dict(x) for x in d["analyses"]], d


def rebuild(folders: list[str], out: str | None = None) -> Path:
    """Re-render reports from saved run folders: one profile folder in place, several as a comparison."""
    loaded = [load_run(f) for f in folders]
    if len(loaded) == 1 and loaded[0][0] == "profile" and out is None:
        kind, analyses, d = loaded[0]
        folder = Path(folders[0])
        return render_profile(folder, analyses, layer_table(analyses[-1], d.get("trace_rows")), profile_figures(folder, analyses)).parent
    analyses, links = [], {}
    for (kind, an, d), f in zip(loaded, folders):
        picked = an if kind == "compare" else an[-1:]  # a profile contributes its last (largest) batch
        analyses += picked
        for a in picked:
            saved = d.get("links", {}).get(a.model)  # relative to the comparison folder it came from
            links[a.model] = (Path(f).resolve() / saved).as_uri() if saved else (Path(f).resolve() / "index.html").as_uri()
    target = Path(out) if out else Path("reports") / time.strftime("compare-%Y%m%d-%H%M%S")
    return write_comparison(target, analyses, links)
