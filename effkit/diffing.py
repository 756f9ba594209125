"""`effkit.diff(A, B)`: load two sides (run folders, run records, trace JSON files, or model specs traced
on the fly), compare them with effkit.analysis.diff, and write the views with effkit.report.diff.

Layer counts of a run folder are those of its last batch size, as in its report; its times are those
of the measured point at that batch.
"""
from __future__ import annotations

import json
from pathlib import Path

from effkit.analysis.diff import COUNTS, DiffResult, Side, diff as diff_sides, gate, parse_rules
from effkit.errors import UserInputError
from effkit.files import read_json_file


def _count_row(r: dict) -> dict:
    out = {"path": r.get("path", ""), "module_type": r.get("module_type", ""), "output_shape": r.get("output_shape") or ""}
    for c in COUNTS:
        out[c] = (r.get("bytes_read") or 0) + (r.get("bytes_written") or 0) if c == "bytes" else (r.get(c) or 0)
    return out


def _leaf_rows(rows: list[dict]) -> list[dict]:
    """Layers as traced (each layer's own ops): skip the whole-model row some views add."""
    return [_count_row(r) for r in rows if r.get("path") not in ("(total)", "TOTAL")]


def _totals(layers: list[dict]) -> dict:
    return {c: sum(r[c] for r in layers) for c in COUNTS}


def side_from_trace_dict(d: dict, label: str) -> Side:
    layers = _leaf_rows(d.get("layers") or [])
    totals = _totals(layers)
    t = d.get("totals") or {}
    if t.get("params") is not None:  # parameters are counted once per model (shared ones too), not summed over layers
        totals["params"] = t["params"]
    config = {k: d.get(k) for k in ("precision", "mode", "device") if d.get(k) is not None}
    return Side(label, d.get("model", label), tuple(layers), totals, d.get("batch"), config)


def side_from_record(record, label: str, model: str | None = None, folder: str | Path | None = None) -> Side:
    models = record.models
    if model is not None:
        pick = [m for m in models if m.model == model]
        if not pick:
            raise UserInputError(f"{label!r} holds no model {model!r}; it holds: {', '.join(m.model for m in models)}")
        m = pick[0]
    elif len(models) == 1:
        m = models[0]
    else:
        raise UserInputError(f"{label!r} is a comparison of {len(models)} models ({', '.join(m.model for m in models)}); "
                             "say which with --model-a/--model-b, or give that model's own folder")
    if not m.layers and m.link and folder is not None:
        # a comparison keeps each model's counts and samples in that model's own run folder, which its link names
        own = (Path(folder) / m.link).parent if not m.link.startswith("file:") else Path(m.link[len("file://"):]).parent
        if (own / "run.json").is_file():
            from effkit.report.record import RunRecord

            return side_from_record(RunRecord.load(own), label, None)
    a = m.analyses[-1] if m.analyses else None
    batch = a.batch if a else (m.counts[-1].get("batch") if m.counts else None)
    rows = [r for r in m.layers if r.get("batch", batch) == batch] or list(m.layers)
    if not rows and a is not None:  # no trace rows kept (schema 1 comparisons): the analysis's per-layer FLOPs and bytes, no MACs
        rows = [{"path": l.path, "module_type": l.module_type, "flops": l.flops, "bytes_read": l.bytes_read,
                 "bytes_written": l.bytes - l.bytes_read} for l in a.layers]
    layers = _leaf_rows(rows)
    totals = _totals(layers)
    if a is not None and a.params:
        totals["params"] = a.params
    point = next((p for p in reversed(m.points) if p.batch == batch and p.status == "ok"), None)
    samples = tuple(point.timing.samples_s) if point is not None and point.timing else ()
    steps = {}
    if point is not None and point.layers is not None:
        steps = {l.path: tuple(l.step_s) for l in point.layers.layers if l.phase == "forward" and l.step_s}
    env = record.environment.to_dict() if record.environment else {}
    ladder = {}
    if a is not None and a.latency_s:
        ladder = {"ideal": a.ideal_s, "waterline": a.waterline_s, "kernels": a.kernels_s, "end_to_end": a.latency_s}
    config = {k: v for k, v in record.config.to_dict().items() if k not in ("batches", "min_time_s", "min_runs", "ci_target", "max_time_s")}
    env_keep = {k: env.get(k) for k in ("device_name", "driver", "cuda", "torch", "effkit", "threads", "backend") if k in env}
    scale = point.layers.correction if point is not None and point.layers is not None else 1.0
    return Side(label, m.model, tuple(layers), totals, batch, config, env_keep, samples, steps, a.efficiency if a else None, ladder,
                env.get("device_name"), scale)


def load_side(spec: str, *, device: str = "meta", batch: int = 1, precision: str = "fp32", model: str | None = None) -> Side:
    """A run folder, a run.json, a trace JSON (effkit trace --json), or a model spec traced on `device`."""
    from effkit.report.record import RECORD_FILE, RunRecord

    p = Path(spec)
    if p.is_dir():
        return side_from_record(RunRecord.load(p), spec, model, p)
    if p.suffix == ".json":
        if not p.is_file():
            raise UserInputError(f"{spec!r} does not exist; give a run folder, a run.json, a trace JSON (effkit trace --json) or a model spec")
        d = read_json_file(p, "diff input")
        if isinstance(d, dict) and ({"models", "schema_version"} <= set(d) or p.name == RECORD_FILE):
            return side_from_record(RunRecord.load(p.parent), spec, model, p.parent)
        if isinstance(d, dict) and "layers" in d and "totals" in d:
            return side_from_trace_dict(d, spec)
        raise UserInputError(f"{spec!r} is neither an effkit run record nor an effkit trace JSON (no layers and totals)")
    from effkit.trace.tracer import trace

    t = trace(spec, batch=batch, dtype=precision, device=device)
    return side_from_trace_dict(json.loads(t.to_json()), spec)


def diff(a: str, b: str, *, device: str = "meta", batch: int = 1, precision: str = "fp32", model_a: str | None = None,
         model_b: str | None = None, alpha: float = 0.05) -> DiffResult:
    """What changed from A to B (each a run folder, run.json, trace JSON or model spec); see effkit.analysis.diff."""
    if not 0 < alpha < 1:
        raise UserInputError(f"alpha {alpha} must lie between 0 and 1 (e.g. 0.05)")
    return diff_sides(load_side(a, device=device, batch=batch, precision=precision, model=model_a),
                      load_side(b, device=device, batch=batch, precision=precision, model=model_b), alpha)


def read_rules(text: str):
    """Gate rules from a string ('macs>0%,latency_ms>+5%') or a TOML file with `fail_on = [...]` or a [fail_on] table."""
    p = Path(text)
    if text.endswith(".toml"):
        if not p.is_file():
            raise UserInputError(f"gate file {text!r} does not exist")
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise UserInputError("reading a TOML gate file needs Python 3.11 or later; give the rules inline, e.g. --fail-on 'macs>0%'") from None
        try:
            d = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as e:
            raise UserInputError(f"gate file {text!r} is not valid TOML: {e}") from None
        rules = d.get("fail_on")
        if isinstance(rules, dict):  # [fail_on] macs = ">0%"
            rules = [f"{k}{v}" for k, v in rules.items()]
        if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
            raise UserInputError(f"gate file {text!r} needs fail_on = [\"macs>0%\", ...] or a [fail_on] table (macs = \">0%\")")
        text = ",".join(rules)
    return parse_rules(text)


__all__ = ["diff", "gate", "load_side", "read_rules"]
