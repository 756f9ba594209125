"""Latency and throughput of a model over a batch sweep, with per-layer times and provenance.

Every point goes through effkit.timing (warm-up until settled, device clocks, kept
samples). A batch that runs out of memory is recorded as `oom` and the sweep goes on.
Each point is written (JSON rewritten atomically, CSV appended) as soon as it is measured,
so an interrupt or a failure loses nothing already done.
"""
from __future__ import annotations

import contextlib
import csv
import gc
import json
import os
import platform
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

import effkit
from effkit.device.ceilings import DTYPES, _tf32, dtype_supported
from effkit.device.facts import device_facts, live_state
from effkit.devices import parse_device
from effkit.errors import EffkitError, UserInputError, check_choice, check_positive
from effkit.models.registry import BuiltModel, build_model
from effkit.run.layers import LayerTimes, profile_layers
from effkit.timing import Timing, measure

MODES = ("infer", "train")


class CompileError(EffkitError):
    """torch.compile failed for this model (use fallback_eager to measure eager instead)."""


@dataclass(frozen=True)
class BenchPoint:
    model: str
    batch: int
    status: str  # "ok", "oom"
    timing: Timing | None
    peak_memory_bytes: int | None
    layers: LayerTimes | None
    provenance: dict
    note: str = ""

    @property
    def latency_s(self) -> float | None:
        return self.timing.median_s if self.timing else None

    @property
    def samples_per_s(self) -> float | None:
        return self.batch / self.timing.median_s if self.timing else None

    def row(self) -> dict:
        t = self.timing.summary() if self.timing else {}
        p = self.provenance
        return {
            "model": self.model, "batch": self.batch, "status": self.status,
            "latency_ms": t.get("median_ms"), "iqr_ms": t.get("iqr_ms"), "min_ms": t.get("min_ms"), "p95_ms": t.get("p95_ms"),
            "cv": t.get("cv"), "samples": t.get("samples"), "samples_per_s": self.samples_per_s,
            "peak_memory_bytes": self.peak_memory_bytes,
            "kernel_sum_ms": 1e3 * self.layers.total_s if self.layers else None,
            "profiler_overhead": self.layers.profiler_overhead if self.layers else None,
            "device": p.get("device"), "dtype": p.get("dtype"), "mode": p.get("mode"), "layout": p.get("layout"),
            "compile": p.get("compile"), "cuda_graph": p.get("cuda_graph"), "note": self.note,
        }

    def to_dict(self) -> dict:
        return {**self.row(), "samples_s": list(self.timing.samples_s) if self.timing else [],
                "layers": [asdict(l) for l in self.layers.layers] if self.layers else [],
                "layers_what": self.layers.what if self.layers else None, "provenance": self.provenance}


@dataclass(frozen=True)
class BenchResult:
    points: tuple[BenchPoint, ...]
    config: dict = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([p.row() for p in self.points])

    def to_dict(self) -> dict:
        return {"config": self.config, "points": [p.to_dict() for p in self.points]}


def is_oom(e: BaseException) -> bool:
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)) if t)
    return isinstance(e, oom_types) or (isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


def provenance(device: str, **config) -> dict:
    facts = device_facts(device)
    return {
        "device": device, "device_name": facts.get("name"), "driver": facts.get("driver"), "cuda": torch.version.cuda,
        "torch": torch.__version__, "effkit": effkit.__version__, "threads": torch.get_num_threads(),
        "host": socket.gethostname(), "platform": platform.platform(), "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **config,
    }


def _make_step(model: nn.Module, x: torch.Tensor, mode: str) -> Callable[[], object]:
    if mode == "infer":
        def step():
            with torch.no_grad():
                return model(x)
        return step
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(x)
        if out.dim() == 2:  # a classifier: cross-entropy on fixed random labels
            loss = F.cross_entropy(out.float(), labels[: out.shape[0]] % out.shape[1])
        else:
            loss = out.float().mean()
        loss.backward()
        opt.step()

    labels = torch.randint(0, 1000, (x.shape[0],), device=x.device)
    return step


def _graph_step(step: Callable[[], object], device: str) -> Callable[[], object]:
    """Capture `step` in a CUDA graph (after warming it on a side stream) and return a replay."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        step()
    return g.replay


def bench(
    model: str | nn.Module | BuiltModel,
    batch: int | list[int] = 1,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    input_shape: tuple[int, ...] | None = None,
    resolution: int | None = None,
    channels_last: bool = False,
    compile: bool = False,
    cuda_graph: bool = False,
    mode: str = "infer",
    layers: bool = True,
    fallback_eager: bool = False,
    json_path: str | Path | None = None,
    csv_path: str | Path | None = None,
    min_runs: int = 20,
    min_time_s: float = 1.0,
    on_point: Callable[[BenchPoint], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> BenchResult:
    """Measure latency and throughput of `model` for each batch size (see module docstring)."""
    batches = [batch] if isinstance(batch, int) else list(batch)
    if not batches:
        raise UserInputError("give at least one batch size")
    for b in batches:
        check_positive("batch", b)
    check_choice("dtype", dtype, DTYPES)
    check_choice("mode", mode, MODES)
    device = parse_device(device, allow_meta=False)
    reason = dtype_supported(device, dtype)
    if reason:
        choices = [d for d in DTYPES if not dtype_supported(device, d)]
        raise UserInputError(f"dtype {dtype} cannot run on {device}: {reason}; choose one of: {', '.join(choices)}")
    if cuda_graph and not device.startswith("cuda"):
        raise UserInputError("--cuda-graph needs a CUDA device")
    if cuda_graph and mode == "train":
        raise UserInputError("--cuda-graph times inference steps (--mode infer); time training eager or with --compile")
    built = model if isinstance(model, BuiltModel) else build_model(model, resolution=resolution) if isinstance(model, str) else \
        BuiltModel(model, type(model).__name__, None, "module")
    shape = tuple(input_shape) if input_shape else built.input_shape
    if shape is None:
        raise UserInputError(f"model {built.name!r} does not declare its input shape; give input_shape / --input-shape")
    layout = "channels_last" if channels_last else "contiguous"
    config = {"model": built.name, "input_shape": list(shape), "dtype": dtype, "mode": mode, "layout": layout,
              "compile": compile, "cuda_graph": cuda_graph}
    net = built.model.to(device=device, dtype=DTYPES[dtype])
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    net.train(mode == "train")
    runner = net
    if compile:
        runner = torch.compile(net)
    points: list[BenchPoint] = []
    writer = _Writer(json_path, csv_path, config)
    with _tf32(dtype == "tf32") if device.startswith("cuda") else contextlib.nullcontext():
        for b in batches:
            start = live_state(device)
            if on_stage:
                on_stage(f"batch {b}: warm-up and timing")
            point = _measure_point(built.name, runner, net, b, shape, device, dtype, mode, channels_last, compile, cuda_graph,
                                   layers, fallback_eager, min_runs, min_time_s, on_stage)
            prov = provenance(device, batch=b, **config, state_start=start, state_end=live_state(device))
            point = BenchPoint(point.model, point.batch, point.status, point.timing, point.peak_memory_bytes, point.layers, prov, point.note)
            if point.note.startswith("compile failed") and fallback_eager:
                runner = net
            points.append(point)
            writer.write(points)
            if on_point:
                on_point(point)
    return BenchResult(tuple(points), config)


def _measure_point(name, runner, net, b, shape, device, dtype, mode, channels_last, compile, cuda_graph, layers, fallback_eager,
                   min_runs, min_time_s, on_stage) -> BenchPoint:
    cuda = device.startswith("cuda")
    x = step = None
    note = ""
    try:
        x = torch.randn((b, *shape), device=device, dtype=DTYPES[dtype])
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        step = _make_step(runner, x, mode)
        try:
            step()  # first call: compile errors surface here
        except Exception as e:
            if not compile or is_oom(e):
                raise
            if not fallback_eager:
                raise CompileError(f"torch.compile failed for {name}: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}; "
                                   "pass --fallback-eager to measure eager instead") from e
            note = f"compile failed ({type(e).__name__}); measured eager"
            runner = net
            step = _make_step(runner, x, mode)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
        timed_step = _graph_step(step, device) if cuda_graph else step
        timing = measure(timed_step, device, min_runs=min_runs, min_time_s=min_time_s,
                         clock_name="cuda graph replays issued back to back, cuda events" if cuda_graph else None)
        peak = torch.cuda.max_memory_allocated(device) if cuda else None
        lt = None
        if layers:
            if on_stage:
                on_stage(f"batch {b}: per-layer times (profiler)")
            # graphs hide kernels from per-layer attribution: profile the eager step
            eager_median = timing.median_s if not cuda_graph else measure(step, device, min_runs=5, min_time_s=0.2).median_s
            lt = profile_layers(net, step, device, eager_median)
        return BenchPoint(name, b, "ok", timing, peak, lt, {}, note)
    except EffkitError:
        raise
    except Exception as e:
        if not is_oom(e):
            raise
        return BenchPoint(name, b, "oom", None, None, None, {}, f"out of memory: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}")
    finally:
        del x, step
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()


class _Writer:
    """Writes every point as soon as it is measured: JSON rewritten atomically, CSV appended."""

    def __init__(self, json_path, csv_path, config):
        self.json_path = Path(json_path) if json_path else None
        self.csv_path = Path(csv_path) if csv_path else None
        self.config = config
        for p in (self.json_path, self.csv_path):
            if p:
                p.parent.mkdir(parents=True, exist_ok=True)
        if self.csv_path and self.csv_path.exists():
            self.csv_path.unlink()

    def write(self, points: list[BenchPoint]) -> None:
        if self.json_path:
            tmp = self.json_path.with_suffix(self.json_path.suffix + ".tmp")
            tmp.write_text(json.dumps(BenchResult(tuple(points), self.config).to_dict(), indent=2, default=str))
            os.replace(tmp, self.json_path)
        if self.csv_path:
            row = points[-1].row()
            new = not self.csv_path.exists()
            with open(self.csv_path, "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(row))
                if new:
                    w.writeheader()
                w.writerow(row)
