"""What changed between two models or two runs: counts layer by layer, times with their significance,
configuration field by field, and a gate of rules over the deltas.

Pure: a `Side` is plain data (what a trace or a run record holds); loading sides from folders, files
or model specs is effkit.diffing's job, showing the result effkit.report.diff's.

Alignment is by module path. Layers left over on both sides are matched as *renamed* where their
module type, output shape and parameter count agree (in order), and the rest are *removed* (only in
A) or *added* (only in B). Counts are compared exactly. Times are compared on raw samples: end to end
with the Mann-Whitney U test (and a bootstrap interval of the median ratio), per layer with Welch's
t-test on the log times of the profiled steps, Holm-corrected across layers. A delta is *faster*,
*slower* or *within noise*; only a significant delta is ever called slower or faster.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from effkit.analysis.stats import ALPHA, TimeDelta, compare_samples, holm
from effkit.errors import UserInputError

COUNTS = ("macs", "flops", "params", "acts", "bytes")


@dataclass(frozen=True)
class Side:
    """One side of a diff: a model's per-layer counts and, where measured, its times."""

    label: str  # what the user gave (folder, file or spec)
    model: str
    layers: tuple[dict, ...]  # path, module_type, output_shape, and the COUNTS (bytes = read + written)
    totals: dict  # the COUNTS for the whole model
    batch: int | None = None
    config: dict = field(default_factory=dict)  # precision, layout, knobs, ... (what was asked)
    environment: dict = field(default_factory=dict)  # device name, torch, driver, ... (what was found)
    samples_s: tuple[float, ...] = ()  # end-to-end timing samples (seconds per step)
    layer_steps_s: dict = field(default_factory=dict)  # path -> that layer's time in each profiled step (forward)
    efficiency: float | None = None  # fraction of its device's ideal (the analysis), where analysed
    ladder: dict = field(default_factory=dict)  # rung -> seconds (ideal, waterline, kernels, end_to_end)
    device_name: str | None = None
    layer_scale: float = 1.0  # the factor the record applied to every per-layer time (the profiler's own lengthening)

    @property
    def measured(self) -> bool:
        return bool(self.samples_s)


@dataclass(frozen=True)
class LayerDiff:
    status: str  # same, changed, renamed, added, removed
    path_a: str | None
    path_b: str | None
    module_type: str
    a: dict | None
    b: dict | None
    time: TimeDelta | None = None

    @property
    def path(self) -> str:
        return self.path_b or self.path_a or ""

    def delta(self, count: str) -> int:
        return (self.b or {}).get(count, 0) - (self.a or {}).get(count, 0)

    def row(self) -> dict:
        r = {"status": self.status, "path": self.path, "path_a": self.path_a, "path_b": self.path_b, "module_type": self.module_type,
             "output_shape_a": (self.a or {}).get("output_shape"), "output_shape_b": (self.b or {}).get("output_shape")}
        for c in COUNTS:
            r[f"{c}_a"], r[f"{c}_b"], r[f"{c}_delta"] = (self.a or {}).get(c), (self.b or {}).get(c), self.delta(c)
        if self.time is not None:
            r.update({"time_a_ms": 1e3 * self.time.a_s, "time_b_ms": 1e3 * self.time.b_s, "time_ratio": self.time.ratio, "time_p": self.time.p,
                      "time_verdict": self.time.verdict})
        return r


@dataclass(frozen=True)
class DiffResult:
    a: Side
    b: Side
    config_changes: tuple[tuple[str, object, object], ...]  # (field, A, B)
    layers: tuple[LayerDiff, ...]
    end_to_end: TimeDelta | None
    notes: tuple[str, ...]  # what cannot be compared, and why
    same_device: bool
    alpha: float = ALPHA

    def total_delta(self, count: str) -> tuple[int, float | None]:
        a, b = self.a.totals.get(count) or 0, self.b.totals.get(count) or 0
        return b - a, ((b - a) / a if a else (None if b else 0.0))

    @property
    def slower(self) -> list[LayerDiff]:
        return [l for l in self.layers if l.time is not None and l.time.verdict == "slower"]

    @property
    def faster(self) -> list[LayerDiff]:
        return [l for l in self.layers if l.time is not None and l.time.verdict == "faster"]

    def counts_changed(self) -> list[LayerDiff]:
        return [l for l in self.layers if l.status != "same"]

    def summary(self) -> str:
        """One line: latency change (significant or not), MACs and params change, layers slower/faster, layer changes."""
        parts = []
        if self.end_to_end is not None:
            e = self.end_to_end
            parts.append(f"{100 * (e.ratio - 1):+.1f} % latency ({'significant' if e.significant else 'within noise'})")
        elif self.a.measured or self.b.measured:
            parts.append("latency not compared")
        for c in ("macs", "params"):
            d, rel = self.total_delta(c)
            parts.append(f"{d:+,} {'MACs' if c == 'macs' else c}" + (f" ({100 * rel:+.2f} %)" if rel else ""))
        if self.end_to_end is not None or any(l.time for l in self.layers):
            parts.append(f"{len(self.slower)} layer{'s' if len(self.slower) != 1 else ''} slower, {len(self.faster)} faster")
        kinds = {s: sum(l.status == s for l in self.layers) for s in ("changed", "renamed", "added", "removed")}
        if any(kinds.values()):
            parts.append(", ".join(f"{n} {s}" for s, n in kinds.items() if n))
        return ", ".join(parts)

    def to_frame(self):
        """One row per aligned layer: status, counts of A and B and their deltas, time deltas where measured."""
        import pandas as pd

        return pd.DataFrame([l.row() for l in self.layers])

    def _repr_html_(self) -> str:
        from html import escape

        changed = self.to_frame()
        changed = changed[changed["status"] != "same"] if len(changed) else changed
        return (f"<p><b>{escape(self.a.label)} → {escape(self.b.label)}</b>: {escape(self.summary())}</p>"
                + (changed.head(40).to_html(index=False) if len(changed) else "<p>no layer changed its counts</p>"))

    def to_dict(self) -> dict:
        return {"a": self.a.label, "b": self.b.label, "model_a": self.a.model, "model_b": self.b.model, "summary": self.summary(),
                "same_device": self.same_device, "alpha": self.alpha,
                "config_changes": [{"field": f, "a": x, "b": y} for f, x, y in self.config_changes],
                "totals": {c: {"a": self.a.totals.get(c), "b": self.b.totals.get(c), "delta": self.total_delta(c)[0],
                               "relative": self.total_delta(c)[1]} for c in COUNTS},
                "end_to_end": self.end_to_end.to_dict() if self.end_to_end else None, "notes": list(self.notes),
                "layers": [l.row() for l in self.layers]}


def align(a: list[dict], b: list[dict]) -> list[tuple[str, dict | None, dict | None]]:
    """(status, A's row, B's row) for every layer, in B's order with A's leftovers where they were."""
    by_path_b = {r["path"]: r for r in b}
    by_path_a = {r["path"]: r for r in a}
    left_a = [r for r in a if r["path"] not in by_path_b]
    left_b = [r for r in b if r["path"] not in by_path_a]
    renamed: dict[str, dict] = {}  # B path -> A row
    used: set[str] = set()
    for rb in left_b:
        for ra in left_a:
            if ra["path"] in used:
                continue
            if (ra.get("module_type"), ra.get("output_shape"), ra.get("params")) == (rb.get("module_type"), rb.get("output_shape"), rb.get("params")):
                renamed[rb["path"]] = ra
                used.add(ra["path"])
                break
    out: list[tuple[str, dict | None, dict | None]] = []
    placed: set[str] = set()
    a_order = [r["path"] for r in a]
    for rb in b:
        ra = by_path_a.get(rb["path"]) or renamed.get(rb["path"])
        if ra is None:
            out.append(("added", None, rb))
            continue
        # A's removed layers that came before this one in A go here, so the table keeps the model's order
        for p in a_order[:a_order.index(ra["path"])]:
            if p not in placed and p not in by_path_b and p not in used:
                out.append(("removed", by_path_a[p], None))
                placed.add(p)
        placed.add(ra["path"])
        same = all((ra.get(c) or 0) == (rb.get(c) or 0) for c in COUNTS) and ra.get("output_shape") == rb.get("output_shape")
        out.append(("renamed" if ra["path"] != rb["path"] else ("same" if same else "changed"), ra, rb))
    for p in a_order:
        if p not in placed and p not in by_path_b and p not in used:
            out.append(("removed", by_path_a[p], None))
    return out


def config_changes(a: Side, b: Side) -> list[tuple[str, object, object]]:
    """What was asked and what was found, field by field, where the two sides differ."""
    out = []
    for prefix, x, y in (("", a.config, b.config), ("environment.", a.environment, b.environment)):
        for k in sorted(set(x) | set(y)):
            if x.get(k) != y.get(k) and k not in ("timestamp", "state_start", "state_end", "load", "batches"):
                out.append((prefix + k, x.get(k), y.get(k)))
    if a.batch != b.batch and a.batch is not None and b.batch is not None:
        out.insert(0, ("batch", a.batch, b.batch))
    return out


def diff(a: Side, b: Side, alpha: float = ALPHA) -> DiffResult:
    notes = []
    rows = align(list(a.layers), list(b.layers))
    common = sum(1 for s, x, y in rows if x is not None and y is not None)
    if rows and not common:
        notes.append(f"{a.model} and {b.model} have no layer in common (no path, and no layer of the same type, output shape and "
                     "parameters): only the totals compare")
    same_device = bool(a.device_name and a.device_name == b.device_name)
    e2e = None
    comparable_times = a.measured and b.measured
    if comparable_times and a.batch != b.batch:
        notes.append(f"batch {a.batch} against batch {b.batch}: times are not compared")
        comparable_times = False
    if comparable_times and not same_device:
        notes.append(f"measured on different devices ({a.device_name} and {b.device_name}): absolute times are not comparable; "
                     "compare efficiency, the fraction of each device's own ideal"
                     + (f": {100 * a.efficiency:.1f} % against {100 * b.efficiency:.1f} %" if a.efficiency and b.efficiency else ""))
        comparable_times = False
    if a.measured != b.measured:
        notes.append(f"only {'A' if a.measured else 'B'} was measured: times are not compared")
    layer_times: dict[int, TimeDelta] = {}
    if comparable_times:
        e2e = compare_samples(list(a.samples_s), list(b.samples_s), alpha, "mann-whitney")
        tested = []
        # each record scaled its per-layer times by its own correction; where the two differ, compare the times as
        # profiled, or the difference of the corrections would show as every layer faster or slower
        ka, kb = (a.layer_scale or 1.0), (b.layer_scale or 1.0)
        unscale = abs(ka / kb - 1) > 1e-3 and a.layer_steps_s and b.layer_steps_s
        if unscale:
            notes.append(f"per-layer times compared as profiled: the records scaled them by {ka:.4f} (A) and {kb:.4f} (B) to correct "
                         "for the profiler's own lengthening of a step, and set side by side the scaled times would show that "
                         f"difference ({100 * (kb / ka - 1):+.1f} %) in every layer")
        for i, (s, ra, rb) in enumerate(rows):
            ta = a.layer_steps_s.get(ra["path"]) if ra else None
            tb = b.layer_steps_s.get(rb["path"]) if rb else None
            if unscale and ta and tb:
                ta, tb = tuple(t / ka for t in ta), tuple(t / kb for t in tb)
            if ta and tb and len(ta) >= 2 and len(tb) >= 2 and min(ta) > 0 and min(tb) > 0:
                tested.append((i, compare_samples(list(ta), list(tb), alpha, "welch-log")))
        keep = holm([t.p for _, t in tested], alpha)
        for (i, t), k in zip(tested, keep):
            layer_times[i] = TimeDelta(t.a_s, t.b_s, t.ratio, t.ci, t.p, k, "welch-log, Holm-corrected")
        if a.layer_steps_s and b.layer_steps_s and not tested:
            notes.append("per-layer times have too few profiled steps to test")
    layers = tuple(LayerDiff(s, ra["path"] if ra else None, rb["path"] if rb else None, (rb or ra).get("module_type", ""), ra, rb,
                             layer_times.get(i)) for i, (s, ra, rb) in enumerate(rows))
    return DiffResult(a, b, tuple(config_changes(a, b)), layers, e2e, tuple(notes), same_device, alpha)


# ----------------------------------------------------------------------------- the gate
GATE_METRICS = {"macs": "count", "flops": "count", "params": "count", "acts": "count", "bytes": "count", "latency_ms": "time",
                "layers_slower": "number", "layers_added": "number", "layers_removed": "number", "layers_changed": "number"}
RULE_GRAMMAR = ("METRIC OP VALUE, comma-separated: METRIC one of " + ", ".join(GATE_METRICS) + "; OP one of >, >=, <, <=; VALUE a number, "
                "signed or not, with % for a relative change (e.g. macs>0%, params>0%, latency_ms>+5%, layers_slower>0)")
_RULE = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|>|<)\s*([+-]?\d+(?:\.\d+)?)\s*(%?)\s*$")


@dataclass(frozen=True)
class Rule:
    metric: str
    op: str
    value: float
    relative: bool
    text: str

    def holds(self, x: float) -> bool:  # the rule is violated when this is true
        return {">": x > self.value, ">=": x >= self.value, "<": x < self.value, "<=": x <= self.value}[self.op]


def parse_rules(text: str) -> list[Rule]:
    """'macs>0%,latency_ms>+5%' -> rules; a malformed one is a one-line error naming it and the grammar."""
    rules = []
    for part in [p for p in text.split(",") if p.strip()]:
        m = _RULE.match(part)
        if not m or m.group(1) not in GATE_METRICS:
            raise UserInputError(f"gate rule {part.strip()!r} is not understood; the grammar: {RULE_GRAMMAR}")
        metric, op, value, pct = m.groups()
        if pct and GATE_METRICS[metric] == "number":
            raise UserInputError(f"gate rule {part.strip()!r}: {metric} is a number of layers, not a relative change; drop the %")
        rules.append(Rule(metric, op, float(value) / (100 if pct else 1), bool(pct), part.strip()))
    if not rules:
        raise UserInputError(f"no gate rule given; the grammar: {RULE_GRAMMAR}")
    return rules


def gate(result: DiffResult, rules: list[Rule]) -> list[str]:
    """One line per violated rule (empty: the gate passes). A time rule is violated only by a significant delta on the
    same device; counts are exact."""
    out = []
    for r in rules:
        kind = GATE_METRICS[r.metric]
        if kind == "count":
            d, rel = result.total_delta(r.metric)
            x = rel if r.relative else d
            if x is None:  # from zero to something: any relative increase
                x = float("inf")
            if r.holds(x):
                shown = f"{100 * x:+.2f} %" if r.relative and x != float("inf") else f"{d:+,}"
                out.append(f"{r.text}: {r.metric} changed {shown} ({result.a.totals.get(r.metric) or 0:,} -> {result.b.totals.get(r.metric) or 0:,})")
        elif kind == "time":
            e = result.end_to_end
            if e is None or not e.significant:
                continue
            x = (e.ratio - 1) if r.relative else 1e3 * (e.b_s - e.a_s)
            if r.holds(x):
                out.append(f"{r.text}: latency changed {100 * (e.ratio - 1):+.1f} % ({1e3 * e.a_s:.3f} -> {1e3 * e.b_s:.3f} ms, "
                           f"significant: p = {e.p:.2g})")
        else:
            n = {"layers_slower": len(result.slower), "layers_added": sum(l.status == "added" for l in result.layers),
                 "layers_removed": sum(l.status == "removed" for l in result.layers),
                 "layers_changed": sum(l.status == "changed" for l in result.layers)}[r.metric]
            if r.holds(n):
                out.append(f"{r.text}: {n} {r.metric.replace('_', ' ')}")
    return out
