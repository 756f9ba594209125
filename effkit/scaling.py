"""`effkit.scale`: build, count (and measure) a base model scaled by each strategy and factor,
fit growth exponents, and write a report. Each variant is written as it completes."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from effkit.analysis.scaling import depth_unscaled_share, fit_exponent, r_squared
from effkit.errors import UserInputError
from effkit.files import atomic_write_json
from effkit.run.queue import Place
from effkit.models.scaling import STRATEGIES, theory, variant


@dataclass(frozen=True)
class ScalePoint:
    base: str
    strategy: str
    factor: float
    achieved_factor: float
    d: float
    w: float
    r: float
    resolution: int
    flops: int
    macs: int
    params: int
    acts: int
    latency_ms: float | None
    status: str  # "counted", "ok" (measured), "oom"
    latency_iqr_ms: float | None = None  # spread of the timed samples
    latency_cv: float | None = None


@dataclass(frozen=True)
class ScaleResult:
    points: tuple[ScalePoint, ...]
    fits: dict  # strategy -> {"params": (fit, theory), "acts": (fit, theory), "latency": (fit, None)}
    alpha: float
    folder: Path | None = None

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(p) for p in self.points])

    def fits_frame(self) -> pd.DataFrame:
        rows = []
        for s, f in self.fits.items():
            rows.append({"strategy": s, "params_exp": f["params"][0], "params_theory": f["params"][1], "acts_exp": f["acts"][0],
                         "acts_theory": f["acts"][1], "latency_exp": f["latency"][0]})
        return pd.DataFrame(rows)

    def latency_vs(self) -> dict:
        """R² of log latency against log activations and against log FLOPs, over all measured variants."""
        ok = [p for p in self.points if p.latency_ms]
        lat = [p.latency_ms for p in ok]
        return {"r2_acts": r_squared([p.acts for p in ok], lat), "r2_flops": r_squared([p.flops for p in ok], lat), "measured": len(ok)}


def parse_list(text: str, what: str, cast=float) -> list:
    try:
        return [cast(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserInputError(f"{what} {text!r} must be a comma-separated list") from None


def scale(
    base: str,
    strategies=("w", "d", "r", "dwr", "dWr"),
    factors=(1, 2, 4, 8, 16),
    *,
    alpha: float = 0.8,
    device: str | None = None,
    batch: int = 1,
    dtype: str = "fp32",
    out: str | Path | None = None,
    min_time_s: float = 0.5,
    cuda_graph: bool = False,
    channels_last: bool = False,
    on_point: Callable[[ScalePoint], None] | None = None,
) -> ScaleResult:
    """Scale zoo model `base` by every strategy and factor; count each variant (meta trace), measure
    it on `device` if given, fit params/acts/latency exponents against FLOPs, write a report to `out`."""
    from effkit.config import RunConfig
    from effkit.models.ref import resolve
    from effkit.models.registry import get_entry
    from effkit.files import safe_name
    from effkit.report.scaling import write_scale_report
    from effkit.trace.tracer import trace_ref

    name = base if ":" in base else get_entry(base).name
    strategies = list(strategies)
    for s in strategies:
        if s not in STRATEGIES:
            raise UserInputError(f"unknown strategy {s!r}; choose from: {', '.join(STRATEGIES)}")
    for f in factors:
        if not f > 0:
            raise UserInputError(f"flops factor must be > 0, got {f}")
    config = RunConfig(device=device, precision=dtype, batches=batch, layout="channels_last" if channels_last else "contiguous",
                       cuda_graph=cuda_graph, layers=False, min_time_s=min_time_s) if device else None
    folder = Path(out) if out else Path("reports") / f"scale-{safe_name(name)}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    base_ref = resolve(name)
    base_flops = trace_ref(base_ref, [batch], precision=dtype, device="meta")[0].totals.flops
    # each (strategy, factor) is a task drawn through the same queue as `effkit sweep` (run/queue.py): one process, or
    # torchrun's ranks, one GPU each; each variant is written to points/ as it is done, named by everything that
    # determines it, so a rerun into the same folder with the same settings reuses it
    from effkit.run.queue import Attempts, drain, place

    where = place(device) if device else Place()
    grid = [(strat, f) for strat in strategies for f in factors]
    setting = json.dumps({"base": name, "alpha": alpha, "batch": batch, "dtype": dtype,
                          "config": config.replace(device=device).key() if config else None}, sort_keys=True)
    stamp = hashlib.sha256(setting.encode()).hexdigest()[:12]
    points_dir = folder / "points"
    attempts = Attempts(points_dir)

    def key(i: int) -> str:
        return f"{grid[i][0]}-x{grid[i][1]:g}-{stamp}"

    def do(i: int) -> None:
        path = points_dir / f"{key(i)}.json"
        if path.is_file():
            return
        strat, f = grid[i]
        if attempts.exhausted(key(i)):
            v = variant(base_ref, strat, f, alpha)
            atomic_write_json(path, asdict(ScalePoint(name, strat, f, float("nan"), v.d, v.w, v.r, v.resolution, 0, 0, 0, 0, None, "failed")))
            return
        with attempts.running([key(i)]):
            pt = _variant_point(name, base_ref, base_flops, strat, f, alpha, batch, dtype,
                                config.replace(device=where.device) if config else None)
        atomic_write_json(path, asdict(pt))
        if on_point:
            on_point(pt)

    drain(len(grid), do, where, "effkit-scale")
    if where.rank != 0:
        return ScaleResult((), {}, alpha, folder)
    points = [ScalePoint(**json.loads((points_dir / f"{key(i)}.json").read_text())) for i in range(len(grid))]
    points = [p for p in points if p.status != "failed"]
    csv_path = folder / "variants.csv"
    if csv_path.exists():
        csv_path.unlink()
    for pt in points:
        _append_csv(csv_path, asdict(pt))
    fits = {}
    for strat in strategies:
        ps = [p for p in points if p.strategy == strat]
        th = theory(strat, alpha)
        fits[strat] = {
            "params": (fit_exponent([p.flops for p in ps], [p.params for p in ps]), th["params"]),
            "acts": (fit_exponent([p.flops for p in ps], [p.acts for p in ps]), th["acts"]),
            "latency": (fit_exponent([p.flops for p in ps if p.latency_ms], [p.latency_ms for p in ps if p.latency_ms]), None),
        }
    if "d" in fits:
        fits["d"]["unscaled"] = _depth_unscaled(base_ref, [p for p in points if p.strategy == "d"], alpha, batch, dtype)
    result = ScaleResult(tuple(points), fits, alpha, folder)
    write_scale_report(result, {"base": name, "device": (device or "not measured") + (", CUDA graphs" if cuda_graph else "")
                                + (", channels-last" if channels_last else ""), "batch": batch, "dtype": dtype, "alpha": alpha})
    return result


def _variant_point(name, base_ref, base_flops, strat, f, alpha, batch, dtype, config) -> ScalePoint:
    """One scaled variant: counted on a meta trace, measured on `config`'s device if given."""
    from effkit.models.ref import resolve
    from effkit.run.runner import is_oom, run
    from effkit.trace.tracer import trace_ref

    v = variant(base_ref, strat, f, alpha)
    ref = resolve(name, **v.build_kwargs)
    t = trace_ref(ref, [batch], precision=dtype, device="meta")[0].totals
    latency, status, iqr, cv = None, "counted", None, None
    if config is not None:
        try:
            p = run(ref, config).points[0]
            latency, status = (1e3 * p.latency_s, "ok") if p.status == "ok" else (None, p.status)
            iqr, cv = (1e3 * p.timing.iqr_s, p.timing.cv) if p.timing else (None, None)
        except Exception as e:  # noqa: BLE001 - an OOM outside the step (moving weights) is still an OOM
            if not is_oom(e):
                raise
            status = "oom"
    return ScalePoint(name, strat, f, t.flops / base_flops, v.d, v.w, v.r, v.resolution, t.flops, t.macs, t.params, t.acts,
                      latency, status, iqr, cv)


def _append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def _depth_unscaled(base_ref, ps: list, alpha: float, batch: int, dtype: str) -> dict | None:
    """Why depth scaling's activation exponent falls short of the per-layer theory of 1: the share of activations and
    FLOPs in the parts depth scaling does not copy (from meta traces of the base and the deepest variant), and the
    exponent those shares predict over the same factors (acts = f_a + (1 - f_a) g, FLOPs = f_f + (1 - f_f) g)."""
    from effkit.models.ref import resolve
    from effkit.trace.tracer import trace_ref

    deepest = max(ps, key=lambda p: p.factor, default=None)
    if deepest is None or deepest.factor <= 1:
        return None
    rows = lambda ref: [{"path": l.path, "acts": l.acts, "flops": l.flops}  # noqa: E731
                        for l in trace_ref(ref, [batch], precision=dtype, device="meta")[0].layers]
    v = variant(base_ref, "d", deepest.factor, alpha)
    share = depth_unscaled_share(rows(base_ref), rows(resolve(base_ref.spec, **v.build_kwargs)))
    if share is None or share["flops_share"] >= 1:
        return None
    fa, ff = share["acts_share"], share["flops_share"]
    xs = [p.achieved_factor for p in ps]
    share["predicted_exponent"] = fit_exponent(xs, [fa + (1 - fa) * (x - ff) / (1 - ff) for x in xs])
    return share
