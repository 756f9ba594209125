"""Rich tables for the terminal and CSV/JSON files for trace results."""
from __future__ import annotations

import json
from pathlib import Path

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


def trace_table(result: TraceResult, depth: int | None = None) -> Table:
    rows = result.rows(depth)
    total = result._row(result.totals, True)
    cols = [c for c in _UNITS if c in total]
    title = (f"{result.model}: input {' + '.join('x'.join(map(str, s)) for s in result.input_shapes)}, "
             f"{result.dtype}, {result.device}, {result.mode}" + (f", depth {depth}" if depth is not None else ""))
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


def write_csv(result: TraceResult, path: str | Path, depth: int | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    result.to_frame(depth).to_csv(path, index=False)
    return path


def write_json(result: TraceResult, path: str | Path, depth: int | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(depth), indent=2))
    return path
