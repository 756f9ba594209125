"""Rich tables for the terminal: every command's output, with units in the headers.

The CLI parses, calls the API and hands the result to one of these; nothing here measures.
"""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from effkit.trace.formulas import CONVENTIONS
from effkit.trace.result import FVCORE_CONVENTION, TraceResult

# column -> (header with unit, divisor)
_UNITS = {
    "params": ("params (M)", 1e6),
    "macs": ("MACs (M)", 1e6),
    "flops": ("FLOPs (M)", 1e6),
    "acts": ("acts (K elem)", 1e3),
    "activation_bytes": ("act. (MB)", 1e6),
    "bytes_read": ("read (MB)", 1e6),
    "bytes_written": ("written (MB)", 1e6),
    "intensity_flop_per_byte": ("FLOP/B", 1),
    "bwd_flops": ("bwd FLOPs (M)", 1e6),
    "saved_bytes": ("saved for bwd (MB)", 1e6),
    "fvcore_flops": ("fvcore 'flops' (M)", 1e6),
    "fvcore_acts": ("fvcore acts (K)", 1e3),
}


def _fmt(value, div) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float) and value != value:  # NaN
        return "-"
    v = value / div
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:,.3g}" if div == 1 else f"{v:,.2f}"


def _num(v, d: int = 3) -> str:
    return "-" if v is None else f"{v:,.{d}f}"


def si(v, unit: str) -> str:
    """1.2e12 FLOP/s -> '1.2 TFLOP/s'."""
    if v is None:
        return "-"
    for div, p in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:,.1f} {p}{unit}"
    return f"{v:,.1f} {unit}"


# --------------------------------------------------------------------------- trace
def trace_table(result: TraceResult, depth: int | None = None) -> Table:
    rows = result.rows(depth)
    total = result.totals_row()
    cols = [c for c in _UNITS if c in total]
    title = (f"{result.model}: input {' + '.join('x'.join(map(str, s)) for s in result.input_shapes)}, "
             f"{result.precision or result.dtype}, {result.device}, {result.mode}" + (f", depth {depth}" if depth is not None else ""))
    t = Table(title=title, show_footer=True, header_style="bold")
    t.add_column("layer", footer="total", no_wrap=True)
    t.add_column("type", footer="")
    t.add_column("output", footer="")
    for c in cols:
        head, div = _UNITS[c]
        t.add_column(head, justify="right", footer=_fmt(total[c], div))
    for r in rows:
        t.add_row(r["path"], r["module_type"], r["output_shape"], *(_fmt(r[c], _UNITS[c][1]) for c in cols))
    return t


def print_trace(result: TraceResult, console: Console, depth: int | None = None) -> None:
    console.print(trace_table(result, depth))
    if result.uncovered:
        u = Table(title="[yellow]ops without a formula: not counted in MACs/FLOPs[/yellow]", header_style="bold")
        u.add_column("op")
        u.add_column("count", justify="right")
        u.add_column("layers")
        for x in result.uncovered:
            u.add_row(x.op, str(x.count), ", ".join(x.layers[:5]) + (f" (+{len(x.layers) - 5})" if len(x.layers) > 5 else ""))
        console.print(u)
    else:
        console.print("[green]every op has a formula or is a free view[/green]")
    tot = result.totals
    console.print(f"[bold]params[/bold] {tot.params:,}   [bold]MACs[/bold] {tot.macs:,}   [bold]FLOPs[/bold] {tot.flops:,}   "
                  f"[bold]acts[/bold] {tot.acts:,} elements   [bold]bytes[/bold] {tot.bytes_read:,} read + {tot.bytes_written:,} written")
    console.print("[dim]Conventions: " + "; ".join(f"{k}: {v}" for k, v in CONVENTIONS.items()) + ". MB = 10^6 bytes, M = 10^6."
                  + (f" {FVCORE_CONVENTION}." if result.fvcore is not None else "") + "[/dim]")


# --------------------------------------------------------------------------- models
def models_table(entries: list, counts: dict) -> Table:
    t = Table(title=f"effkit zoo: {len(entries)} models", header_style="bold")
    for col in ("name", "aliases", "family", "input", "params", "GMACs", "published params / GMACs", "top-1 (%)", "reference", "published by"):
        t.add_column(col, justify="right" if col in ("params", "GMACs", "top-1 (%)") else "left")
    for e in entries:
        p, c = e.published, counts.get(e.name, {})
        params = f"{p['params']:,}" if "params" in p else f"{p['params_m']}M" if "params_m" in p else ""
        at = f" @{p['gmacs_resolution']}" if p.get("gmacs_resolution", e.input_shape[-1]) != e.input_shape[-1] else ""
        gmacs = f"{p['gmacs']:g}{at}" if "gmacs" in p else ""
        pub = " / ".join(x for x in (params, gmacs) if x) or "-"
        t.add_row(e.name, ", ".join(e.aliases), e.family, "x".join(map(str, e.input_shape)), f"{c['params']:,}" if c else "-",
                  f"{c['macs'] / 1e9:.3f}" if c else "-", pub, f"{p['top1']:.2f}" if "top1" in p else "-", e.reference, p.get("source", "-"))
    return t


MODELS_NOTE = ("[dim]params and GMACs: counted by effkit (meta trace at the model's input; MACs of conv/linear/matmul/attention); "
               "published figures: from the reference named in 'published by'.[/dim]")


# --------------------------------------------------------------------------- device
def print_ceilings(c, console: Console, cache_folder) -> None:
    facts = Table(title=f"{c.name} ({c.device})", show_header=False)
    for k, v in c.facts.items():
        facts.add_row(k, str(v))
    console.print(facts)
    ds = c.datasheet or {}
    t = Table(title="ceilings: measured" + (" (cached: --refresh to measure again)" if c.cached else "") + (f" vs datasheet {ds.get('name')}" if ds else ""),
              header_style="bold")
    for col in ("quantity", "measured", "datasheet", "measured / datasheet", "how measured"):
        t.add_column(col, justify="left" if col in ("quantity", "how measured") else "right")
    for d, v in c.peak_flops.items():
        dv = (ds.get("flops") or {}).get(d)
        how = f"{c.sizes[d]}^3 GEMM, random data, median of {len(c.samples.get(d, []))}" if d in c.samples else "not supported here"
        t.add_row(f"peak {d}", si(v, "FLOP/s"), si(dv, "FLOP/s"), f"{v / dv:.2f}" if v and dv else "-", how)
    bw = ds.get("bandwidth")
    copies = [k for k in c.samples if k.startswith("copy")]
    t.add_row("memory bandwidth", si(c.bandwidth_bytes_per_s, "B/s"), si(bw, "B/s"), f"{c.bandwidth_bytes_per_s / bw:.2f}" if bw else "-",
              f"{c.sizes['copy_bytes'] / 2**20:.0f} MiB device-to-device copy, read + written, fastest of "
              + ", ".join(k.removeprefix("copy: ") for k in copies) + f", medians of {len(c.samples[copies[0]]) if copies else 0}")
    console.print(t)
    if ds:
        console.print(f"[dim]datasheet: {ds['source']} (dense tensor-core rates; fp32 without tensor cores). k/M/G/T = 10^3/6/9/12.[/dim]")
    console.print(f"[dim]measured {c.measured_at}; cache {cache_folder}[/dim]")


# --------------------------------------------------------------------------- bench
BENCH_COLUMNS = ("batch", "status", "latency (ms, median)", "IQR (ms)", "p95 (ms)", "CV", "samples/s", "peak mem (MB)", "kernel sum (ms)",
                 "profiler x")


def bench_table(model: str, config) -> Table:
    t = Table(title=f"{model} on {config.device}, {config.describe()}", header_style="bold")
    for col in BENCH_COLUMNS:
        t.add_column(col, justify="right")
    return t


def add_bench_row(table: Table, p) -> None:
    r = p.row()
    table.add_row(str(p.batch), p.status, _num(r["latency_ms"]), _num(r["iqr_ms"]), _num(r["p95_ms"]), _num(r["cv"], 3),
                  _num(r["samples_per_s"], 1), _num(p.peak_memory_bytes / 1e6 if p.peak_memory_bytes else None, 1),
                  _num(r["kernel_sum_ms"]), _num(r["profiler_overhead"], 2))


def kernel_sum_sentence(p) -> str:
    """The kernel sum against end-to-end latency, in words that never call a negative difference overhead."""
    lt, lat, t = p.layers, p.latency_s, p.timing
    iqr = (t.iqr_s if t else 0.0) + (lt.total_iqr_s or 0.0)
    out = f"sum of per-layer {lt.what}: {1e3 * lt.total_s:.3f} ms vs end-to-end latency {1e3 * lat:.3f} ms; "
    if lat >= lt.total_s:
        out += f"the difference, {1e3 * (lat - lt.total_s):.3f} ms, is overhead: launches, Python, synchronisation. "
    else:
        where = "beyond" if lt.total_s - lat > iqr else "within"
        out += (f"the kernel sum exceeds end-to-end by {1e3 * (lt.total_s - lat):.3f} ms ({where} the measured spread of {1e3 * iqr:.3f} ms): "
                "a measurement problem (the per-layer times come from separate profiled steps), not negative overhead. ")
    slow = lt.profiler_overhead
    if slow < 1 or (t is not None and lt.profiled_step_s <= t.ci_s[1]):
        out += "The profiler made no measurable difference to the step's wall time"
    else:
        out += f"The profiler slowed the step {slow:.2f}x"
    if lt.correction != 1.0:
        out += f"; CPU op self times are scaled by {lt.correction:.2f} to undo that"
    return out + "." + (f" ({lt.note}.)" if getattr(lt, "note", "") else "")


def print_bench_layers(points: list, console: Console, top: int) -> None:
    last = next((p for p in reversed(points) if p.layers), None)
    if last is not None and top > 0:
        lt = last.layers
        t = Table(title=f"top {top} layers by {lt.what}, batch {last.batch} (mean of {lt.steps} profiled steps)", header_style="bold")
        for col in ("layer", "phase", "time (ms)", "share", "count/step"):
            t.add_column(col, justify="left" if col in ("layer", "phase") else "right")
        for l in sorted(lt.layers, key=lambda l: -l.time_s)[:top]:
            t.add_row(l.path, l.phase, f"{1e3 * l.time_s:.3f}", f"{100 * l.time_s / lt.total_s:.1f}%" if lt.total_s else "-", f"{l.count:g}")
        console.print(t)
        console.print(kernel_sum_sentence(last))
    if points and points[0].environment:
        e, t0 = points[0].environment, points[0].timing
        console.print(f"[dim]{e.device_name} · torch {e.torch} · CUDA {e.cuda} · driver {e.driver} · effkit {e.effkit} · "
                      f"{e.threads} threads · {e.host} · {e.timestamp}. Latency: median of the timed steps after warm-up "
                      f"({t0.clock if t0 else ''}); samples/s = batch / median latency; MB = 10^6 bytes.[/dim]")


# --------------------------------------------------------------------------- profile, compare
def print_profile_summary(run, console: Console) -> None:
    from effkit.report.headline import headline
    from effkit.report.run_dir import banners, environment_of

    t = Table(title="effkit summary", header_style="bold")
    from effkit.report.summary import peak_memory_sentence, with_spread

    for col in ("model", "batch", "latency (ms, ± IQR/2)", "IQR (ms)", "CV", "samples/s", "efficiency", "ideal (ms)", "waterline (ms)",
                "kernels (ms)", "flags"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for a in run.analyses:
        r = a.summary_row()
        half = r["latency_iqr_ms"] / 2 if r["latency_iqr_ms"] else None
        t.add_row(a.model, str(a.batch), with_spread(r["latency_ms"], half), _num(r["latency_iqr_ms"]), _num(r["latency_cv"], 2),
                  _num(r["samples_per_s"], 1),
                  "-" if r["efficiency"] is None else f"{100 * r['efficiency']:.1f} %", _num(r["ideal_ms"]), _num(r["waterline_ms"]),
                  _num(r["kernels_ms"]), str(r["flagged_layers"]))
    console.print(t)
    record = run.record
    if record is not None and (len(run.analyses) == 1 or len({a.model for a in run.analyses}) == 1):
        a = run.analyses[-1]
        for h in headline(a, environment_of(record.models[0], a.batch) if record.kind == "profile" else None):
            console.print(f"• {h}")
    elif record is not None:
        for b in banners(record):
            console.print(f"[yellow]warning:[/yellow] {b}", soft_wrap=True)
    if record is not None:
        for m in record.models:
            for pt in m.points:
                memory = peak_memory_sentence(pt)
                if memory:
                    console.print(f"• {m.model}, batch {pt.batch}: {memory}.")
    console.print("[dim]latency: median of the timed steps (device time per step); IQR and CV of its samples; MB = 10^6 bytes.[/dim]")
    console.print(f"report: [bold]{run.report}[/bold]")


# --------------------------------------------------------------------------- scale
def print_scale(res, console: Console) -> None:
    t = Table(title=f"scaling {res.points[0].base}: exponents against FLOPs (fit / theory)", header_style="bold")
    for col in ("strategy", "params", "activations", "latency"):
        t.add_column(col, justify="left" if col == "strategy" else "right")
    f2 = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for s, f in res.fits.items():
        t.add_row(s, f"{f2(f['params'][0])} / {f2(f['params'][1])}", f"{f2(f['acts'][0])} / {f2(f['acts'][1])}", f2(f["latency"][0]))
    console.print(t)
    lv = res.latency_vs()
    if lv["r2_acts"] is not None:
        console.print(f"log latency vs log activations: R² = {lv['r2_acts']:.3f}; vs log FLOPs: R² = {lv['r2_flops']:.3f} ({lv['measured']} variants)")
    console.print(f"report: [bold]{res.folder / 'index.html'}[/bold]")
