"""effkit sweep: a grid of (model, configuration) points, on one device or spread over ranks by torchrun.

The grid is models x precisions x knob values; each (model, precision, knobs) is a *task* that builds the model once
and measures every batch size of the grid, and each (task, batch) is a *point*, written to `points/<key>.json` the
moment it is measured (named by the model and its one-batch `RunConfig.key()`). Under torchrun every rank takes the
GPU of its LOCAL_RANK and draws tasks from one shared counter on torch.distributed's c10d store (`store.add` is
atomic), largest first, so a long task does not leave the other GPUs idle at the end. Nothing finished is measured
again: a rerun, or a restart by `torchrun --max-restarts`, skips points whose file exists. Before a point is measured
its attempt is noted (`points/<key>.attempts`); a point whose worker was stopped twice while measuring it is recorded
as failed with that reason and not tried again. When every rank is done, rank 0 merges the point files into one table
(sweep.csv, sweep.json, sweep.parquet where pyarrow is installed) and a comparison report; `effkit report DIR`
rebuilds both from the point files at any time.

Column names follow timm's benchmark results where they mean the same thing: infer_samples_per_sec (samples/s,
batch / device time per step), infer_step_time (ms, device time per step), infer_batch_size, infer_img_size (px),
param_count (millions of parameters); effkit's own columns beside them carry their units in their names.
"""
from __future__ import annotations

import fnmatch
import itertools
import json
import os
import socket
import time
from datetime import timedelta
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from effkit.config import RunConfig, check_precision
from effkit.errors import UserInputError
from effkit.files import atomic_write_json, atomic_write_text, ensure_folder, safe_name
from effkit.run.queue import Attempts, drain, gate, place

MANIFEST = "grid.json"  # the grid and its point keys (the merged table is sweep.csv, sweep.json)
POINTS = "points"
TABLE = "sweep"
KNOBS = {"channels_last": ("layout", {"on": "channels_last", "off": "contiguous"}),
         "cuda_graph": ("cuda_graph", {"on": True, "off": False}),
         "compile": ("compile", {"on": True, "off": False}),
         "cudnn_benchmark": ("cudnn_benchmark", {"on": True, "off": False})}


@dataclass(frozen=True)
class Task:
    model: str  # the spec as given (a zoo name, timm:NAME, file.py:factory ...)
    config: RunConfig  # every batch of the grid
    resolution: int | None = None  # an input size other than the model's own (timm's test size)

    def point_config(self, batch: int) -> RunConfig:
        return self.config.replace(batches=(batch,))

    def key(self, batch: int) -> str:
        return f"{safe_name(self.model)}-b{batch}-{self.point_config(batch).key()}" + (f"-r{self.resolution}" if self.resolution else "")


# ----------------------------------------------------------------------------- the grid
def expand_models(patterns: list[str]) -> list[str]:
    """Zoo names matching each shell pattern, other specs as given; every unknown one named before any work starts."""
    from effkit.models.registry import list_models
    from effkit.models.ref import resolve

    out, unknown = [], []
    for p in patterns:
        if any(c in p for c in "*?[") and ":" not in p:
            hits = list_models(p)
            if not hits:
                unknown.append(f"{p!r} (a pattern matching no built-in model)")
            out += [h for h in hits if h not in out]
            continue
        try:
            resolve(p)
        except UserInputError as e:
            unknown.append(str(e))
            continue
        if p not in out:
            out.append(p)
    if unknown:
        raise UserInputError("; ".join(unknown))
    if not out:
        raise UserInputError("give at least one model or pattern")
    return out


def parse_knobs(items: list[str]) -> dict[str, list]:
    """['channels_last=on,off', 'cuda_graph=on'] -> {'channels_last': ['on', 'off'], 'cuda_graph': ['on']}."""
    knobs: dict[str, list] = {}
    for item in items:
        name, _, values = item.partition("=")
        name = name.strip().replace("-", "_")
        if name not in KNOBS:
            raise UserInputError(f"unknown knob {name!r}; choose from {', '.join(KNOBS)} (as NAME=on,off)")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        bad = [v for v in vals if v not in KNOBS[name][1]]
        if not vals or bad:
            raise UserInputError(f"knob {name} needs values from on, off (as {name}=on,off), got {values!r}")
        knobs[name] = vals
    return knobs


def build_grid(models: list[str], batches: list[int], precisions: list[str], knobs: dict[str, list], device: str,
               min_time_s: float = 0.5, layers: bool = False, resolutions: dict | None = None) -> list[Task]:
    for p in precisions:
        check_precision(p, device)
    names = list(knobs)
    tasks = []
    for model in models:
        for prec in precisions:
            for values in itertools.product(*(knobs[n] for n in names)) if names else [()]:
                fields = {KNOBS[n][0]: KNOBS[n][1][v] for n, v in zip(names, values)}
                config = RunConfig(device=device, precision=prec, batches=tuple(batches), min_time_s=min_time_s, layers=layers, **fields)
                tasks.append(Task(model, config, (resolutions or {}).get(model)))
    return tasks


def grid_spec(models, batches, precisions, knobs, device, min_time_s, layers, resolutions) -> dict:
    """What a sweep folder is for: a rerun with a different grid is refused, naming the keys that differ."""
    return {"models": list(models), "batches": list(batches), "precisions": list(precisions), "knobs": {k: list(v) for k, v in knobs.items()},
            "device": device, "min_time_s": min_time_s, "layers": layers, "resolutions": dict(resolutions or {})}


def claim_folder(folder: Path, spec: dict, tasks: list[Task], force: bool) -> None:
    """Write the manifest, or check it: the same grid resumes, another grid is refused unless `force` (which starts over)."""
    path = folder / MANIFEST
    if path.is_file() and not force:
        try:
            held = json.loads(path.read_text())["grid"]
        except (ValueError, KeyError, TypeError):
            held = None
        if held is not None and held != spec:
            differ = sorted(k for k in set(held) | set(spec) if held.get(k) != spec.get(k))
            raise UserInputError(f"folder {str(folder)!r} holds a sweep of another grid (differing: {', '.join(differ)}); "
                                 "choose another --out, or pass --force to start over")
    if force and (folder / POINTS).is_dir():
        for f in (folder / POINTS).iterdir():
            f.unlink()
    atomic_write_json(path, {"grid": spec, "points": [t.key(b) for t in tasks for b in t.config.batches],
                             "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


# ----------------------------------------------------------------------------- the queue
def order_tasks(tasks: list[Task], cost: Callable[[Task], float]) -> list[Task]:
    """Largest expected cost first: the last tasks to be drawn are the short ones, so the ranks finish together."""
    return sorted(tasks, key=lambda t: -cost(t))


# ----------------------------------------------------------------------------- one point
def gpu_identity(device: str) -> dict:
    """The GPU this rank measures on (name, UUID) and the host, so a cluster of mixed GPUs is reported honestly."""
    out = {"host": socket.gethostname(), "device": device, "rank": int(os.environ.get("RANK", "0")), "pid": os.getpid()}
    if device.startswith("cuda"):
        import torch

        idx = torch.device(device).index
        idx = torch.cuda.current_device() if idx is None else idx
        props = torch.cuda.get_device_properties(idx)
        out.update(gpu_name=props.name, gpu_uuid=str(getattr(props, "uuid", "")), gpu_index=idx)
    else:
        import platform

        out.update(gpu_name=None, gpu_uuid=None, cpu=platform.processor() or platform.machine())
    return out


def point_row(task: Task, batch: int, analysis, point, ref, identity: dict, wall: dict) -> dict:
    """One row of the merged table: timm's names where they mean the same, then effkit's own (units in the names)."""
    s = analysis.summary_row()
    step_ms = point.latency_s * 1e3 if point.latency_s else None
    c = task.point_config(batch)
    row = {"model": ref.name, "spec": task.model, "infer_samples_per_sec": point.samples_per_s, "infer_step_time": step_ms, "infer_batch_size": batch,
           "infer_img_size": ref.input_shapes[0][-1] if len(ref.input_shapes[0]) == 3 else None,
           "param_count": round(analysis.params / 1e6, 2), "precision": c.precision, "layout": c.layout, "cuda_graph": c.cuda_graph,
           "compile": c.compile, "cudnn_benchmark": c.cudnn_benchmark, "input_shape": "x".join(map(str, ref.input_shapes[0])),
           "step_time_iqr_ms": s.get("latency_iqr_ms"), "step_time_cv": s.get("latency_cv"), "step_time_samples": s.get("latency_samples"),
           "sync_latency_ms": s.get("sync_latency_ms"), "throughput_samples_per_s": s.get("throughput_samples_per_s"),
           "macs": s["macs"], "flops": s["flops"], "params": s["params"], "acts": s["acts"], "efficiency": s["efficiency"],
           "ideal_ms": s["ideal_ms"], "waterline_ms": s["waterline_ms"], "kernels_ms": s["kernels_ms"], "roof": s["roof"],
           "top1": s["top1"], "peak_memory_bytes": point.peak_memory_bytes}
    row.update({k: identity.get(k) for k in ("gpu_name", "gpu_uuid", "host")})
    row.update({f"wall_{k}_s": v for k, v in wall.items()})
    return row


class Worker:
    """Measures tasks in this process, reusing what a process can keep: resolved models, traces, the roof."""

    def __init__(self, folder: Path, device: str, roof_of: Callable[[str], object], log: Callable[[str], None] = lambda s: None):
        self.folder, self.device, self.roof_of, self.log = folder, device, roof_of, log
        self.points = ensure_folder(folder / POINTS)
        self.attempts = Attempts(self.points)
        self.identity = gpu_identity(device)
        self._refs: dict = {}
        self._traces: dict = {}

    def done(self, key: str) -> bool:
        return (self.points / f"{key}.json").is_file()

    def _ref(self, task: Task):
        from effkit.models.ref import resolve

        k = (task.model, task.resolution)
        if k not in self._refs:
            self._refs[k] = resolve(task.model, resolution=task.resolution)
        return self._refs[k]

    def _trace(self, ref, task: Task, batch: int):
        """The counts on meta tensors (real CPU tensors for a model that cannot run on fake ones), once per model, batch
        and precision in this process: the layout and the knobs do not change them."""
        from effkit.trace.tracer import trace_counts

        k = (task.model, task.resolution, task.config.precision, batch)
        if k not in self._traces:
            self._traces[k] = trace_counts(ref, [batch], precision=task.config.precision)[0]
        return self._traces[k]

    def _write(self, key: str, data: dict) -> None:
        atomic_write_json(self.points / f"{key}.json", data)

    def _point(self, task: Task, batch: int, status: str, note: str) -> dict:
        """What every point file holds: its status and why, the model, the batch, its configuration, where it ran."""
        return {"status": status, "model": task.model, "batch": batch, "config": task.point_config(batch).to_dict(), "note": note,
                **self.identity}

    def _record_unfinished(self, task: Task, batches: list[int], status: str, note: str) -> None:
        for b in batches:
            if not self.done(task.key(b)):
                self._write(task.key(b), self._point(task, b, status, note))

    def measure(self, task: Task) -> list[dict]:
        """Every batch of `task` not yet done: each point file written as it is measured."""
        from effkit.analysis import analyse
        from effkit.run.runner import run

        pending = []
        for b in task.config.batches:
            key = task.key(b)
            if self.done(key):
                continue
            if self.attempts.exhausted(key):
                self._write(key, self._point(task, b, "failed", self.attempts.why(key)))
                self.log(f"{task.model} b{b} {task.config.precision}: failed ({self.attempts.why(key)})")
                continue
            pending.append(b)
        if not pending:
            return []
        t0 = time.perf_counter()
        written: list = []
        last = [t0]
        ref = traces = roof = None
        t_trace = 0.0

        def on_point(p):
            now = time.perf_counter()
            key = task.key(p.batch)
            data = self._point(task, p.batch, p.status, p.note)
            if p.status == "ok":
                tf32 = task.config.tf32_flags() if self.device.startswith("cuda") else (False, False)
                a = analyse(traces[p.batch], roof, p, tf32=tf32, top1=ref.top1)
                data["row"] = point_row(task, p.batch, a, p, ref, self.identity, {"trace": t_trace / len(pending), "measure": now - last[0]})
                data["analysis"] = a.to_dict()
            self._write(key, data)
            written.append(data)
            last[0] = time.perf_counter()
            ms = f"{1e3 * p.latency_s:.3f} ms" if p.latency_s else p.status
            self.log(f"{ref.name} b{p.batch} {task.config.describe()}: {ms} ({now - t0:.1f} s) [{key}]")

        # stopped from outside (^C, or torchrun ending the ranks after another failed), the attempts are taken back
        with self.attempts.running([task.key(b) for b in pending], done=self.done):
            try:
                ref = self._ref(task)
                roof = self.roof_of(task.config.precision)
                traces = {b: self._trace(ref, task, b) for b in pending}
                t_trace = time.perf_counter() - t0
                last[0] = time.perf_counter()
                run(ref, task.config.replace(batches=tuple(pending), device=self.device), on_point=on_point)
            except UserInputError as e:  # every batch skipped (a precision the device lacks ...): recorded, the sweep goes on
                self._record_unfinished(task, pending, "skipped", str(e))
            except Exception as e:  # noqa: BLE001 - a model that fails: recorded with its first line, the sweep goes on
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
                self._record_unfinished(task, pending, "failed", f"{type(e).__name__}: {first}")
                self.log(f"{task.model} {task.config.describe()}: failed: {type(e).__name__}: {first}")
        return written


# ----------------------------------------------------------------------------- merge and report
def read_points(folder: Path) -> tuple[list[dict], list[str]]:
    """The point files the manifest names (in grid order), and the keys not measured yet."""
    folder = Path(folder)
    try:
        keys = json.loads((folder / MANIFEST).read_text())["points"]
    except (OSError, ValueError, KeyError) as e:
        raise UserInputError(f"{str(folder)!r} is not a sweep folder (no readable {MANIFEST}): {e}") from e
    found, missing = [], []
    for k in keys:
        p = folder / POINTS / f"{k}.json"
        try:
            found.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            missing.append(k)
    return found, missing


def merge(folder: str | Path) -> dict:
    """Write the merged table and the report from the point files; returns counts of what is in it."""
    import pandas as pd

    from effkit.analysis.roofline import ModelAnalysis
    from effkit.report.record import ModelRecord, RunRecord
    from effkit.report.run_dir import write_views

    folder = Path(folder)
    found, missing = read_points(folder)
    rows = [dict(d["row"], status="ok") for d in found if d.get("status") == "ok" and d.get("row")]
    others = [{"model": d.get("model"), "infer_batch_size": d.get("batch"), "precision": (d.get("config") or {}).get("precision"),
               "status": d.get("status"), "note": d.get("note"), "host": d.get("host"), "gpu_name": d.get("gpu_name")}
              for d in found if d.get("status") != "ok"]
    table = pd.DataFrame(rows + others)
    atomic_write_text(folder / f"{TABLE}.csv", table.to_csv(index=False))
    atomic_write_json(folder / f"{TABLE}.json", {"rows": rows + others, "missing": missing,
                                                   "units": {"infer_step_time": "ms", "infer_samples_per_sec": "samples/s",
                                                             "infer_img_size": "px", "param_count": "millions"}})
    try:
        import pyarrow  # noqa: F401

        table.to_parquet(folder / f"{TABLE}.parquet")
    except ImportError:
        pass
    measured = [d for d in found if d.get("status") == "ok" and d.get("analysis")]
    if measured:
        models = []
        shared = len({RunConfig.from_dict({**d["config"], "batches": [1]}).describe() for d in measured}) == 1  # then the subtitle says it
        for d in measured:
            a = ModelAnalysis.from_dict(d["analysis"])
            c = RunConfig.from_dict(d["config"])
            label = f"{d['row']['model']} b{d['batch']}" + ("" if shared else f" {c.describe()}")
            models.append(ModelRecord(label, (replace(a, model=label),)))
        config = RunConfig.from_dict(measured[0]["config"])
        notes = (f"{len(missing)} of {len(found) + len(missing)} points not measured yet",) if missing else ()
        notes += tuple(f"{d['model']} b{d.get('batch')}: {d.get('status')}: {d.get('note')}" for d in found if d.get("status") != "ok")
        record = RunRecord("compare", config, tuple(models), None, status="complete" if not missing else "incomplete", notes=notes,
                           options={"sweep": True})
        record.save(folder)
        write_views(folder, record)
    return {"ok": len(rows), "other": len(others), "missing": len(missing)}


# ----------------------------------------------------------------------------- the driver
def _roofs(device: str, ceilings: str | None):
    """roof_of(precision): from --ceilings, or the device's ceilings measured once in this process (cached where trusted)."""
    from effkit.config import get_precision
    from effkit.device.roofs import roof_from_spec

    cache: dict = {}
    measured: dict = {}

    def roof_of(precision: str):
        dtype = get_precision(precision).compute_dtype
        if dtype not in cache:
            if ceilings:
                cache[dtype] = roof_from_spec(ceilings, dtype)
            else:
                from effkit.device.ceilings import device_ceilings
                from effkit.device.roofs import roof_from_ceilings

                if "c" not in measured:
                    measured["c"] = device_ceilings(device)
                cache[dtype] = roof_from_ceilings(measured["c"], dtype)
        return cache[dtype]

    return roof_of


def _cost(task: Task) -> float:
    """Expected cost for ordering: published MACs (1 where unknown) x the batches, fp32 twice a 16-bit precision."""
    from effkit.models.ref import resolve

    try:
        macs = float(resolve(task.model, resolution=task.resolution).published.get("macs") or 1.0)
    except Exception:  # noqa: BLE001 - ordering only
        macs = 1.0
    return macs * sum(task.config.batches) * (2.0 if task.config.precision in ("fp32", "tf32") else 1.0)


def timm_test_sizes(models: list[str]) -> dict:
    """timm's test_input_size for each timm: model (what timm's benchmark tables use), where timm states one."""
    from effkit.models.external import timm_test_size

    return {m: r for m in models if m.startswith("timm:") and (r := timm_test_size(m.split(":", 1)[1]))}


def sweep(models: list[str], *, batches=(1,), precisions=("fp32",), knobs: dict | None = None, device: str = "cpu", out=None,
          min_time_s: float = 0.5, layers: bool = False, ceilings: str | None = None, force: bool = False, timm_test_size: bool = False,
          log: Callable[[str], None] | None = None, on_progress: Callable[[int, int, int], None] | None = None) -> dict:
    """Run the grid (see the module docstring) in this process, or as this torchrun rank; rank 0 merges the results.
    Returns {'folder', 'rank', 'world', 'measured' (points this rank wrote), and on rank 0 'ok', 'other', 'missing'}."""
    knobs = knobs or {}
    where = place(device)
    say = log or (lambda s: None)
    names = expand_models(list(models))
    resolutions = timm_test_sizes(names) if timm_test_size else {}
    # the tasks name the device as given ('cuda'), so every rank computes the same point keys; each measures on its own
    tasks = build_grid(names, list(batches), list(precisions), knobs, device, min_time_s, layers, resolutions)
    spec = grid_spec(names, batches, precisions, knobs, device, min_time_s, layers, resolutions)
    folder = Path(out) if out else Path("reports") / time.strftime("sweep-%Y%m%d-%H%M%S")
    gate(where, "effkit-sweep", lambda: claim_folder(ensure_folder(folder), spec, tasks, force))
    ordered = order_tasks(tasks, _cost)
    worker = Worker(folder, where.device, _roofs(where.device, ceilings), log=lambda s: say(f"[rank {where.rank}] {s}" if where.world > 1 else s))
    total = sum(len(t.config.batches) for t in tasks)
    progress = (lambda: on_progress(*_count(folder, tasks), total)) if on_progress else None
    measured = []

    def do(i: int) -> None:
        measured.extend(worker.measure(ordered[i]))
        if progress:
            progress()

    drain(len(ordered), do, where, "effkit-sweep", on_idle=progress)
    result = {"folder": folder, "rank": where.rank, "world": where.world, "measured": len(measured)}
    if where.rank == 0:
        result.update(merge(folder))
    return result


def _count(folder: Path, tasks: list[Task]) -> tuple[int, int]:
    """(points written, of which not ok) in the folder, for the progress bar."""
    done = bad = 0
    for t in tasks:
        for b in t.config.batches:
            p = folder / POINTS / f"{t.key(b)}.json"
            if p.is_file():
                done += 1
                try:
                    bad += json.loads(p.read_text()).get("status") != "ok"
                except (OSError, ValueError):
                    pass
    return done, bad
