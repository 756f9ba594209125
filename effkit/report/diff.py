"""Views of a diff: a terminal table, CSV / JSON, and an HTML page with both ladders side by side and
a waterfall of the per-layer time deltas."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from effkit.analysis.diff import COUNTS, DiffResult
from effkit.files import atomic_write_text, ensure_folder
from effkit.report.html import Page, render

UNITS = {"macs": "MACs", "flops": "FLOPs", "params": "parameters", "acts": "activation elements", "bytes": "bytes (read + written)"}
CONVENTION = ("Counts follow effkit's conventions (effkit trace --help and every report's conventions table): MACs are the "
              "multiply-accumulates of products; FLOPs = 2 x MACs + per-element costs; bytes = every distinct input read once and "
              "every output written once at its dtype; a layer's counts are its own ops. Deltas are B − A. Times: median per step "
              "(ms); end to end tested with the Mann-Whitney U test on the raw samples, per layer with Welch's t-test on the log "
              "times of the profiled steps, Holm-corrected across layers; 'within noise' is never called a change.")


def _pct(rel) -> str:
    return "new" if rel is None else f"{100 * rel:+.2f} %"


def _rows(result: DiffResult, changed_only: bool) -> list[dict]:
    rows = [l.row() for l in result.layers]
    if changed_only:
        rows = [r for r, l in zip(rows, result.layers) if l.status != "same" or (l.time is not None and l.time.verdict != "within noise")]
    return rows


def print_diff(result: DiffResult, console: Console, top: int = 25) -> None:
    """The one-line summary, configuration changes, totals, and the layers that changed (counts or significant time)."""
    console.print(f"[bold]{escape(result.a.label)}[/bold] → [bold]{escape(result.b.label)}[/bold]: {escape(result.summary())}", soft_wrap=True)
    if result.config_changes:
        t = Table(title="configuration and environment, field by field", header_style="bold")
        for c in ("field", "A", "B"):
            t.add_column(c, justify="left")
        for f, x, y in result.config_changes:
            t.add_row(f, escape(str(x)), escape(str(y)))
        console.print(t)
    t = Table(title="totals", header_style="bold")
    for c in ("quantity", "A", "B", "change", "unit"):
        t.add_column(c, justify="left" if c in ("quantity", "unit") else "right")
    for c in COUNTS:
        d, rel = result.total_delta(c)
        t.add_row(c, f"{result.a.totals.get(c) or 0:,}", f"{result.b.totals.get(c) or 0:,}", f"{d:+,} ({_pct(rel)})" if d else "0", UNITS[c])
    e = result.end_to_end
    if e is not None:
        ci = f", 95 % interval of the ratio {e.ci[0]:.3f}-{e.ci[1]:.3f}" if e.ci else ""
        t.add_row("latency", f"{1e3 * e.a_s:.3f}", f"{1e3 * e.b_s:.3f}", f"{100 * (e.ratio - 1):+.1f} % ({e.verdict}, p = {e.p:.2g}{ci})", "ms (median)")
    console.print(t)
    rows = _rows(result, changed_only=True)
    timed = any(l.time is not None for l in result.layers)
    if rows:
        rows.sort(key=lambda r: -abs((r.get("time_b_ms") or 0) - (r.get("time_a_ms") or 0)) if timed else 0)
        t = Table(title=f"layers that changed ({len(rows)}{f', top {top} shown' if len(rows) > top else ''})", header_style="bold")
        cols = ["status", "layer", "type", "MACs Δ", "params Δ", "bytes Δ"] + (["time A (ms)", "time B (ms)", "ratio", "verdict"] if timed else [])
        for c in cols:
            t.add_column(c, justify="left" if c in ("status", "layer", "type", "verdict") else "right")
        for r in rows[:top]:
            path = r["path"] if r["status"] != "renamed" else f"{r['path_a']} → {r['path_b']}"
            cells = [r["status"], escape(path), r["module_type"], f"{r['macs_delta']:+,}", f"{r['params_delta']:+,}", f"{r['bytes_delta']:+,}"]
            if timed:
                cells += [f"{r['time_a_ms']:.4f}" if r.get("time_a_ms") is not None else "–", f"{r['time_b_ms']:.4f}" if r.get("time_b_ms") is not None else "–",
                          f"{r['time_ratio']:.3f}" if r.get("time_ratio") is not None else "–", r.get("time_verdict") or "–"]
            t.add_row(*cells)
        console.print(t)
    else:
        console.print("no layer changed its counts" + (", and no layer's time changed beyond noise" if timed else ""))
    for n in result.notes:
        console.print(f"[yellow]note:[/yellow] {escape(n)}", soft_wrap=True)
    console.print(f"[dim]{CONVENTION}[/dim]", soft_wrap=True)


def to_csv(result: DiffResult) -> str:
    rows = _rows(result, changed_only=False)
    buf = io.StringIO()
    cols = list(rows[0]) if rows else ["status", "path"]
    for r in rows:
        cols += [k for k in r if k not in cols]
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def to_json(result: DiffResult) -> str:
    return json.dumps({**result.to_dict(), "conventions": CONVENTION}, indent=1, default=str)


def waterfall_figure(result: DiffResult, top: int = 20):
    """A's end-to-end time, then a step per layer (the significant changes first, each group largest first), the rest as
    one step, what lies outside the kernels, then B's end-to-end time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [l for l in result.layers if l.time is not None]
    if not timed or result.end_to_end is None:
        return None
    timed.sort(key=lambda l: (not l.time.significant, -abs(l.time.b_s - l.time.a_s)))  # significant changes first, largest first
    shown = timed[:top]
    rest = sum(l.time.b_s - l.time.a_s for l in timed[top:])
    a_ms, b_ms = 1e3 * result.end_to_end.a_s, 1e3 * result.end_to_end.b_s
    kern = sum(1e3 * (l.time.b_s - l.time.a_s) for l in timed)
    steps = [(l.path + ("" if l.time.significant else " (noise)"), 1e3 * (l.time.b_s - l.time.a_s), l.time.significant) for l in shown]
    steps.append((f"{len(timed) - len(shown)} other layers", 1e3 * rest, False))
    steps.append(("outside kernels (launch gaps)", (b_ms - a_ms) - kern, False))
    fig, ax = plt.subplots(figsize=(10, 0.32 * (len(steps) + 2) + 1.5))
    y = len(steps) + 1
    ax.barh(y, a_ms, color="#888")
    labels = [(y, f"A end to end {a_ms:.3f} ms")]
    level = a_ms
    for name, d, sig in steps:
        y -= 1
        ax.barh(y, d, left=level, color=("#c0392b" if d > 0 else "#2e86c1") if sig else "#bbb")
        labels.append((y, f"{name}: {d:+.4f} ms"))
        level += d
    ax.barh(0, b_ms, color="#555")
    labels.append((0, f"B end to end {b_ms:.3f} ms"))
    ax.set_yticks([p for p, _ in labels], [t for _, t in labels], fontsize=7)
    lo = min(a_ms, b_ms, level) * 0.97
    ax.set_xlim(left=lo)
    ax.set_xlabel("time per step (ms); coloured steps are significant (red slower, blue faster), grey within noise")
    ax.set_title("Where the time went: per-layer time deltas from A to B", fontsize=10)
    fig.tight_layout()
    return fig


def write_diff(result: DiffResult, folder: str | Path) -> Path:
    """diff.json, diff.csv and index.html (with the waterfall) in `folder`."""
    from effkit.report.figures import save

    folder = ensure_folder(Path(folder))
    atomic_write_text(folder / "diff.json", to_json(result))
    atomic_write_text(folder / "diff.csv", to_csv(result))
    figures = []
    fig = waterfall_figure(result)
    if fig is not None:
        figures.append({"id": "waterfall", "title": "Per-layer time deltas (waterfall)",
                        "caption": "From A's median end-to-end time to B's: the layers whose kernel time changed most, the rest, and "
                                   "what lies outside the kernels.", "svg": save(fig, folder, "waterfall")["svg_text"]})
    summary_cols = ["rung", "A (ms)", "B (ms)", "B / A"]
    ladder = []
    for rung in ("ideal", "waterline", "kernels", "end_to_end"):
        x, y = result.a.ladder.get(rung), result.b.ladder.get(rung)
        if x is not None or y is not None:
            ladder.append({"rung": rung.replace("_", "-"), "A (ms)": 1e3 * x if x else None, "B (ms)": 1e3 * y if y else None,
                           "B / A": y / x if x and y else None})
    cols = ["status", "path", "module_type"] + [f"{c}_delta" for c in COUNTS] + ["time_a_ms", "time_b_ms", "time_ratio", "time_p", "time_verdict"]
    rows = [{c: r.get(c) for c in cols} for r in _rows(result, changed_only=False)]
    headline = [result.summary()] + [f"{f}: {x} → {y}" for f, x, y in result.config_changes]
    if result.end_to_end is not None and result.end_to_end.ci:
        e = result.end_to_end
        headline.append(f"End to end: {1e3 * e.a_s:.3f} → {1e3 * e.b_s:.3f} ms (median), ratio {e.ratio:.3f}, 95 % bootstrap interval "
                        f"{e.ci[0]:.3f}-{e.ci[1]:.3f}, Mann-Whitney p = {e.p:.2g}: {e.verdict}.")
    page = Page(f"effkit diff: {result.a.model} → {result.b.model}", f"A = {result.a.label} · B = {result.b.label}", headline, figures,
                ladder, summary_cols if ladder else [], rows, cols, " (A → B; Δ = B − A)", notes=list(result.notes) + [CONVENTION])
    return render(folder / "index.html", page)
