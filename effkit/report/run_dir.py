"""Run folders: the record and its views, and rebuilding the views from saved records.

A profile run folder holds run.json (the RunRecord) and the views made from it: index.html,
layers.csv, summary.csv, summary.json, provenance.json and the figures (PNG and SVG). A
comparison folder holds its own run.json and views, and one profile folder per model.
`effkit report` rebuilds the views from run.json without measuring again.
"""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from effkit.analysis.roofline import ModelAnalysis
from effkit.errors import UserInputError
from effkit.files import atomic_write_json, atomic_write_text
from effkit.report import figures as F
from effkit.report.fusion import MODEL_COLS, UNIT_COLS, fusion_sentences, model_table, unit_table
from effkit.report.fusion import load_rows as load_fusion_rows
from effkit.report.headline import headline, ladder_sentence
from effkit.report.html import Page, png64, render
from effkit.report.record import ModelRecord, RunRecord
from effkit.report.summary import DISPLAY_COLS, display_row, faster_sentences, peak_memory_sentence

SUMMARY_COLS = ["model", "batch", "dtype", "latency_ms", "latency_iqr_ms", "latency_cv", "samples_per_s", "efficiency", "ideal_ms",
                "waterline_ms", "waterline_with_launch_floor_ms", "kernels_ms", "kernels_iqr_ms", "memory_gap", "kernel_gap", "overhead_gap",
                "ladder_problems", "fusion_speedup", "macs", "flops", "params", "acts", "flagged_layers", "top1"]
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


def layer_table(a: ModelAnalysis, layer_counts) -> list[dict]:
    """The analysis's layer rows joined with the trace's per-layer counts (MACs, params, acts)."""
    extra = {r["path"]: r for r in layer_counts or []}
    rows = []
    for l in a.layers:
        r = l.row()
        t = extra.get(l.path, {})
        r.update({k: t.get(k) for k in ("macs", "params", "acts")})
        rows.append(r)
    return rows


def provenance(record: RunRecord, batch: int | None = None) -> dict:
    """What was asked (the config) and what was found (the environment), flat, for display."""
    c = record.config
    out = {**(record.environment.to_dict() if record.environment else {}), "configuration": c.describe(), "dtype": c.precision, "mode": c.mode,
           "layout": c.layout, "compile": c.compile, "cuda_graph": c.cuda_graph, **c.knobs,
           **({"fused_only": ", ".join(c.fused_only)} if c.fused_only else {}), "batches": list(c.batches), "config_key": c.key(),
           "timing figures": "device time per step (the ladder's end-to-end rung), synchronous latency, throughput",
           "record": f"schema {record.schema_version}, effkit {record.effkit_version}, {record.status}"}
    if batch is not None:
        out["batch"] = batch
    return out


def model_provenance(record: RunRecord, shared: dict) -> tuple[list[str], list[tuple[str, list]], dict]:
    """A comparison's provenance: (models, [(field, value per model)] where the models' measured points differ, the
    fields common to all). Each model's fields are its point's environment over the run's own."""
    per = []
    for m in record.models:
        a = m.analyses[-1] if m.analyses else None
        env = environment_of(m, a.batch) if a is not None else None
        d = dict(shared)
        if env is not None:
            d.update({k: v for k, v in env.to_dict().items() if v is not None})
        if a is not None:
            d["batch"] = a.batch
        per.append((m.model, d))
    if len(per) < 2:
        return [], [], shared
    keys = [k for k in dict.fromkeys(k for _, d in per for k in d)]
    differs = [(k, [d.get(k, "–") for _, d in per]) for k in keys if len({str(d.get(k)) for _, d in per}) > 1]
    differ_keys = {k for k, _ in differs}
    common = {k: v for k, v in per[0][1].items() if k not in differ_keys}
    return [name for name, _ in per], differs, common


def banners(record: RunRecord) -> list[str]:
    """What the reader must see before any number: an incomplete run, untrusted ceilings, noisy timing, a ladder running backwards."""
    from effkit.report.headline import SPREAD_WARN, load_sentence, spread_sentence

    out = []
    if not record.complete:
        out.append("Incomplete run: " + ("; ".join(n for n in record.notes if "interrupted" in n or "not measured" in n) or "it did not finish")
                   + ". What was measured before it stopped is shown; the rest is counted only.")
    out += list(record.warnings)
    for a in record.analyses:
        m = next((m for m in record.models if m.model == a.model), None)
        env = environment_of(m, a.batch) if m else None
        for sentence in (load_sentence(env), spread_sentence(a, env) if a.latency_spread and a.latency_spread > SPREAD_WARN else None):
            if sentence:
                out.append(f"{a.model}, batch {a.batch}: {sentence}")
        for p in a.ladder_problems():
            out.append(f"{a.model}, batch {a.batch}: measurement problem: {p['rung']} by {100 * p['excess']:.1f} % "
                       f"({'beyond' if p['beyond_spread'] else 'within'} the measured spread); likely cause: {p['cause']}.")
    return out


def write_views(folder: str | Path, record: RunRecord) -> Path:
    """Every view of a record: tables, figures and the HTML report, in `folder`."""
    folder = Path(folder)
    return _profile_views(folder, record) if record.kind == "profile" else _comparison_views(folder, record)


def environment_of(m: ModelRecord, batch: int):
    """The environment the point at `batch` was measured in (None: not measured)."""
    return next((p.environment for p in m.points if p.batch == batch), None)


def _profile_views(folder: Path, record: RunRecord) -> Path:
    (m,) = record.models
    analyses = list(m.analyses)
    a = analyses[-1]
    lead = headline(a, environment_of(m, a.batch))
    figs = profile_figures(folder, analyses)
    rows = layer_table(a, m.layers)
    cols = LAYER_COLS + [c for c in rows[0] if c not in LAYER_COLS] if rows else LAYER_COLS
    atomic_write_text(folder / "layers.csv", pd.DataFrame(rows, columns=cols).to_csv(index=False))
    summary = [x.summary_row() for x in analyses]
    atomic_write_text(folder / "summary.csv", pd.DataFrame(summary).to_csv(index=False))
    atomic_write_json(folder / "summary.json", {"summary": summary, "headline": lead, "roof": a.roof.__dict__, "flags": flag_rows(a),
                                               "uncovered": list(a.uncovered), "status": record.status, "warnings": list(record.warnings)})
    prov = provenance(record, a.batch)
    atomic_write_json(folder / "provenance.json", prov)
    titles = {f"layer-{i}": f"{l.path} ({l.kind}, {l.bound}-bound): {l.flops / 1e6:.2f} MFLOP, {l.bytes / 1e6:.2f} MB, "
              f"I = {l.intensity or 0:.1f} FLOP/B" + (f", measured {1e3 * l.measured_s:.4f} ms, {100 * (l.efficiency or 0):.0f} % of roof"
                                                         if l.measured_s else "")
              for i, l in enumerate(a.layers)}
    lost = sorted([r for r in rows if r["lost_ms"] is not None], key=lambda r: -r["lost_ms"])[:15]
    fusion = load_fusion_rows(folder)
    page = Page(
        title=f"effkit profile: {a.model}" + ("" if record.complete else " (incomplete run)"),
        subtitle=f"{a.device} · {record.config.describe()} · batch {', '.join(str(x.batch) for x in analyses)} · roofs: {a.roof.name} "
                 f"({a.roof.source}) · peaks used: {a.summary_row()['peaks_used'] or '-'}",
        headline=lead, summary_rows=[display_row(x) for x in analyses], summary_cols=DISPLAY_COLS, banners=banners(record),
        faster=fusion_sentences(fusion) + faster_sentences(a),
        fusion_models=model_table(fusion), fusion_model_cols=MODEL_COLS, fusion_units=unit_table(fusion), fusion_unit_cols=UNIT_COLS,
        figures=[
            {"id": "gap", "title": "Efficiency gap", "caption": "Each batch's ladder: ideal → waterline → kernels → end-to-end, against "
             "diagonals of constant efficiency (% of peak).", "svg": F.svg_with_titles(figs["efficiency_gap"]["svg_text"], {})},
            {"id": "roofline", "title": "Roofline", "caption": "One point per layer (hover to name it), coloured by kind; red rings: "
             "measured faster than the roofline.", "svg": F.svg_with_titles(figs["roofline"]["svg_text"], titles)},
            {"id": "waterline", "title": "Waterline", "caption": "Cumulative roofline time against cumulative measured kernel time, "
             "and the fusion what-if.", "png64": png64(figs["waterline"]["png"])},
        ] + ([{"id": "memory", "title": "Memory over the step (predicted)", "caption": memory_caption(m),
               "png64": png64(F.save(F.memory_timeline(m.memory), folder, "memory")["png"])}] if m.memory else []),
        layer_rows=rows, layer_cols=LAYER_COLS, layer_caption=f" (batch {a.batch})",
        flags=[f for f in flag_rows(a) if not f["explained_by_cache"]], cached_flags=[f for f in flag_rows(a) if f["explained_by_cache"]],
        lost=lost, uncovered=list(a.uncovered), notes=list(a.notes) + list(record.notes), provenance=prov)
    return render(folder / "index.html", page).parent


def memory_caption(m: ModelRecord) -> str:
    """The predicted peak, what fills it, and (where measured on CUDA) the measured peak beside it."""
    mem = m.memory
    parts = ", ".join(f"{k} {v / 1e6:,.1f} MB" for k, v in mem["at_peak"].items() if v)
    out = (f"Storage-level liveness on a meta trace (views free, in-place ops allocate nothing). Predicted peak "
           f"{mem['peak_bytes'] / 1e6:,.1f} MB at batch {mem['batch']}: {parts}.")
    pt = next((p for p in m.points if p.batch == mem["batch"] and peak_memory_sentence(p)), None)
    return out + (f" Where measured: {peak_memory_sentence(pt)}." if pt is not None else "")


def profile_figures(folder: Path, analyses: list[ModelAnalysis]) -> dict:
    """The efficiency gap over all batches; roofline and waterline of the last."""
    return {"efficiency_gap": F.save(F.efficiency_gap(analyses), folder, "efficiency_gap"),
            "roofline": F.save(F.roofline(analyses[-1]), folder, "roofline"),
            "waterline": F.save(F.waterline(analyses[-1]), folder, "waterline")}


def _comparison_views(folder: Path, record: RunRecord) -> Path:
    analyses = record.analyses
    fig = F.save(F.efficiency_gap(analyses, accuracy=True), folder, "efficiency_gap")
    summary = [a.summary_row() for a in analyses]
    atomic_write_text(folder / "summary.csv", pd.DataFrame(summary).to_csv(index=False))
    atomic_write_json(folder / "summary.json", {"summary": summary, "headlines": {a.model: headline(a) for a in analyses}})
    lines = []
    measured = [a for a in analyses if a.latency_s]
    if measured:
        fastest = min(measured, key=lambda a: a.latency_s)
        best = max(measured, key=lambda a: a.efficiency)
        lines.append(f"Fastest: {fastest.model} ({1e3 * fastest.latency_s:.3f} ms per batch of {fastest.batch}); most efficient: "
                     f"{best.model} ({100 * best.efficiency:.1f} % of peak).")
    lines += [ladder_sentence(a, a.model) for a in analyses]
    prov = provenance(record)
    models, differs, common = model_provenance(record, prov)
    page = Page(title="effkit comparison: " + ", ".join(a.model for a in analyses),
                subtitle=f"{analyses[0].device} · {record.config.describe()} · roofs: {analyses[0].roof.name}",
                headline=lines, summary_rows=[display_row(a) for a in analyses], summary_cols=DISPLAY_COLS, banners=banners(record),
                faster=[s for a in analyses for s in faster_sentences(a, top=1)[:1]],
                provenance_models=models, provenance_differs=differs,
                figures=[{"id": "gap", "title": "Efficiency gap" + (" and accuracy" if any(a.top1 for a in analyses) else ""),
                          "caption": "Each model's ladder ideal → waterline → kernels → end-to-end; top-1 from the zoo's reference or --accuracy.",
                          "svg": F.svg_with_titles(fig["svg_text"], {})}],
                links=[(m.model, m.link) for m in record.models if m.link], notes=list(record.notes), provenance=common)
    return render(folder / "index.html", page).parent


def rebuild(folders: list[str], out: str | None = None) -> Path:
    """Re-render reports from saved run folders: one folder in place, several as a new comparison."""
    records = [RunRecord.load(f) for f in folders]
    if len(records) == 1 and out is None:
        return write_views(folders[0], records[0])
    if not records:
        raise UserInputError("give at least one run folder")
    models = []
    for rec, f in zip(records, folders):
        picked = rec.models if rec.kind == "compare" else [ModelRecord(m.model, m.analyses[-1:], link=None) for m in rec.models]
        for m in picked:  # links are relative to the comparison folder they came from
            target = (Path(f).resolve() / m.link) if m.link else (Path(f).resolve() / "index.html")
            models.append(ModelRecord(m.model, m.analyses[-1:], link=target.as_uri()))
    folder = Path(out) if out else Path("reports") / time.strftime("compare-%Y%m%d-%H%M%S")
    first = records[0]
    record = RunRecord("compare", first.config, tuple(models), first.environment,
                       notes=(f"rebuilt from {len(folders)} saved run folder(s) without measuring",))
    record.save(folder)
    return write_views(folder, record)
