"""Latency and throughput of a model over a batch sweep, with per-layer times and the environment.

Every point goes through effkit.timing (warm-up until settled, device clocks, kept
samples). A batch that runs out of memory is recorded as `oom` and the sweep goes on.
Each point is written (JSON rewritten atomically, CSV appended) as soon as it is measured,
so an interrupt or a failure loses nothing already done.

`bench(model, batch, device=..., ...)` is the keyword form; `run(ref, config)` takes a
resolved ModelRef and a RunConfig and is what the other stages call.
"""
from __future__ import annotations

import contextlib
import csv
import gc
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from effkit.config import RunConfig, backend_state, check_precision
from effkit.devices import parse_device
from effkit.errors import EffkitError, UserInputError
from effkit.files import atomic_write_json
from effkit.models.ref import ModelRef, resolve
from effkit.device.facts import LoadMonitor
from effkit.run.environment import Environment, capture, state
from effkit.run.layers import LayerTimes, profile_layers
from effkit.timing import Timing, measure, measure_sync, measure_throughput


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
    config: RunConfig = field(default_factory=RunConfig)
    environment: Environment | None = None
    note: str = ""
    sync: Timing | None = None  # synchronous latency: one step at a time, wall clock to the result
    throughput: Timing | None = None  # seconds per step over back-to-back loops (samples/s = batch / median)
    predicted_peak_bytes: int | None = None  # the meta-trace prediction of the step's peak (CUDA points; trace/memory.py)

    @property
    def latency_s(self) -> float | None:
        return self.timing.median_s if self.timing else None

    @property
    def samples_per_s(self) -> float | None:
        """batch / device time per step (the ladder's end-to-end rung)."""
        return self.batch / self.timing.median_s if self.timing else None

    @property
    def sync_latency_s(self) -> float | None:
        return self.sync.median_s if self.sync else None

    @property
    def throughput_samples_per_s(self) -> float | None:
        return self.batch / self.throughput.median_s if self.throughput else None

    @property
    def provenance(self) -> dict:
        """What was asked and what was found, flattened for display."""
        c = self.config
        return {**(self.environment.to_dict() if self.environment else {}), "batch": self.batch, "dtype": c.precision, "mode": c.mode,
                "layout": c.layout, "compile": c.compile, "cuda_graph": c.cuda_graph}

    def row(self) -> dict:
        t = self.timing.summary() if self.timing else {}
        c = self.config
        return {
            "model": self.model, "batch": self.batch, "status": self.status,
            "latency_ms": t.get("median_ms"), "iqr_ms": t.get("iqr_ms"), "min_ms": t.get("min_ms"), "p95_ms": t.get("p95_ms"),
            "cv": t.get("cv"), "ci_low_ms": t.get("ci_low_ms"), "ci_high_ms": t.get("ci_high_ms"), "samples": t.get("samples"),
            "stopped_by": t.get("stopped_by"), "samples_per_s": self.samples_per_s,
            "device_time_ms": t.get("median_ms"),
            "sync_latency_ms": 1e3 * self.sync.median_s if self.sync else None, "sync_iqr_ms": 1e3 * self.sync.iqr_s if self.sync else None,
            "throughput_samples_per_s": self.throughput_samples_per_s,
            "throughput_iqr_samples_per_s": self.throughput_samples_per_s * self.throughput.iqr_rel if self.throughput else None,
            "peak_memory_bytes": self.peak_memory_bytes, "predicted_peak_bytes": self.predicted_peak_bytes,
            "peak_measured_over_predicted": self.peak_memory_bytes / self.predicted_peak_bytes
            if self.peak_memory_bytes and self.predicted_peak_bytes else None,
            "kernel_sum_ms": 1e3 * self.layers.total_s if self.layers else None,
            "profiler_overhead": self.layers.profiler_overhead if self.layers else None,
            "device": c.device, "dtype": c.precision, "mode": c.mode, "layout": c.layout,
            "compile": c.compile, "cuda_graph": c.cuda_graph, **c.knobs, "note": self.note,
        }

    def to_dict(self) -> dict:
        return {**self.row(), **(self.timing.to_dict() if self.timing else {"samples_s": []}),
                "sync": self.sync.to_dict() if self.sync else None, "throughput": self.throughput.to_dict() if self.throughput else None,
                "layers": self.layers.to_dict() if self.layers else None, "config": self.config.to_dict(),
                "environment": self.environment.to_dict() if self.environment else None}

    @classmethod
    def from_dict(cls, d: dict) -> "BenchPoint":
        timing = Timing.from_dict(d) if d.get("samples_s") else None
        return cls(d["model"], d["batch"], d["status"], timing, d.get("peak_memory_bytes"),
                   LayerTimes.from_dict(d["layers"]) if isinstance(d.get("layers"), dict) else None,
                   RunConfig.from_dict(d["config"]), Environment.from_dict(d["environment"]) if d.get("environment") else None,
                   d.get("note") or "", Timing.from_dict(d["sync"]) if d.get("sync") else None,
                   Timing.from_dict(d["throughput"]) if d.get("throughput") else None, d.get("predicted_peak_bytes"))


@dataclass(frozen=True)
class BenchResult:
    points: tuple[BenchPoint, ...]
    config: RunConfig
    model: str = ""
    input_shapes: tuple = ()

    def _repr_html_(self) -> str:
        """In Jupyter: one row per batch size with its spread, and where it was measured."""
        from html import escape

        env = next((p.environment for p in self.points if p.environment is not None), None)
        where = escape(f"{env.device_name} · torch {env.torch} · {self.config.describe()}") if env is not None else escape(self.config.describe())
        cols = [c for c in ("batch", "status", "latency_ms", "iqr_ms", "cv", "ci_low_ms", "ci_high_ms", "sync_latency_ms",
                            "throughput_samples_per_s", "peak_memory_bytes", "kernel_sum_ms", "note") if c in self.to_frame().columns]
        return (f"<p><b>{escape(self.model)}</b> on {where}: device time per step (median) with its IQR and 95 % interval, ms</p>"
                + self.to_frame()[cols].to_html(index=False))

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([p.row() for p in self.points])

    def to_dict(self) -> dict:
        return {"model": self.model, "input_shapes": [list(s) for s in self.input_shapes], "config": self.config.to_dict(),
                "points": [p.to_dict() for p in self.points]}


_OOM_TEXT = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")


def is_oom(e: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's refusal (DefaultCPUAllocator: can't allocate memory)."""
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)) if t)
    text = str(e).lower()
    return isinstance(e, (MemoryError, *oom_types)) or (isinstance(e, RuntimeError) and any(t in text for t in _OOM_TEXT))


def bench(
    model,
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
    fused: bool = False,
    fused_only: list[str] | None = None,
    json_path: str | Path | None = None,
    csv_path: str | Path | None = None,
    min_runs: int = 20,
    min_time_s: float = 1.0,
    on_point: Callable[[BenchPoint], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
    seq_len: int | None = None,
    **model_kwargs,
) -> BenchResult:
    """Measure latency and throughput of `model` for each batch size (see the module docstring)."""
    config = RunConfig(device=device, precision=dtype, batches=batch, mode=mode, layout="channels_last" if channels_last else "contiguous",
                       cuda_graph=cuda_graph, compile=compile, layers=layers, fallback_eager=fallback_eager, min_time_s=min_time_s, fused=fused,
                       fused_only=fused_only, min_runs=min_runs)
    ref = resolve(model, input_shape, resolution=resolution, seq_len=seq_len, **model_kwargs)
    return run(ref, config, json_path=json_path, csv_path=csv_path, on_point=on_point, on_stage=on_stage)


def check_config(config: RunConfig) -> RunConfig:
    """The config with its device normalised (cuda -> cuda:0), if it can run here; else a UserInputError."""
    device = parse_device(config.device, allow_meta=False)
    check_precision(config.precision, device)
    if config.cuda_graph and not device.startswith("cuda"):
        raise UserInputError("--cuda-graph needs a CUDA device")
    if config.cuda_graph and config.mode == "train":
        raise UserInputError("--cuda-graph times inference steps (--mode infer); time training eager or with --compile")
    return config.replace(device=device)


def run(ref: ModelRef, config: RunConfig, *, json_path=None, csv_path=None, on_point: Callable[[BenchPoint], None] | None = None,
        on_stage: Callable[[str], None] | None = None) -> BenchResult:
    """Measure `ref` at every batch size of `config`, writing each point as it completes."""
    config = check_config(config)
    try:
        session = _Session(ref, config, on_stage or (lambda s: None))
    except Exception as e:
        if is_oom(e):
            raise UserInputError(f"out of memory building {ref.name} on {config.device}: {_first_line(e)[:160]}; "
                                 "try a smaller --resolution or another device") from e
        raise
    env = capture(config.device)
    writer = _Writer(json_path, csv_path, ref, config)
    points: list[BenchPoint] = []
    with config.backend():
        backend = backend_state()
        for b in config.batches:
            start = state(config.device)
            with LoadMonitor(config.device) as load:
                point = session.point(b)
            point = replace(point, environment=env.with_states(start, state(config.device), load.result, backend))
            points.append(point)
            writer.write(points)
            if on_point:
                on_point(point)
    if points and all(p.status == "skipped" for p in points):
        raise UserInputError(f"{points[0].note} (every batch size skipped)")
    return BenchResult(tuple(points), config, ref.name, ref.input_shapes)


def _make_step(model: nn.Module, xs: list[torch.Tensor], mode: str, autocast=None, call=None) -> Callable[[], object]:
    """One step: a forward (infer), or forward + backward + SGD step (train); under torch.autocast for a mixed precision.
    `call(model, xs)` runs the model (ModelRef.call: by position, or by the names the model declared)."""
    autocast = autocast or contextlib.nullcontext
    call = call or (lambda m, inputs: m(*inputs))

    def forward():
        return call(model, xs)

    if mode == "infer":
        def step():
            with torch.no_grad(), autocast():
                return forward()
        return step
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    labels = torch.randint(0, 1000, (xs[0].shape[0],), device=xs[0].device)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            out = forward()
        out = first_float(out)
        if out.dim() == 2:  # a classifier: cross-entropy on fixed random labels
            loss = F.cross_entropy(out.float(), labels[: out.shape[0]] % out.shape[1])
        else:
            loss = out.float().mean()
        loss.backward()
        opt.step()

    return step


def first_float(out) -> torch.Tensor:
    """The first floating-point tensor of a model's output (a tensor, a tuple, a dict or a transformers ModelOutput)."""
    return next(t for t in _tensors(out) if t.is_floating_point())


def _tensors(out):
    if isinstance(out, torch.Tensor):
        yield out
    elif isinstance(out, dict):
        for v in out.values():
            yield from _tensors(v)
    elif isinstance(out, (list, tuple)):
        for v in out:
            yield from _tensors(v)
    elif hasattr(out, "to_tuple"):  # transformers' ModelOutput
        yield from _tensors(out.to_tuple())


def _graph_step(step: Callable[[], object]) -> Callable[[], object]:
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


class _Session:
    """One model on one device under one configuration; measures a point per batch size."""

    def __init__(self, ref: ModelRef, config: RunConfig, on_stage: Callable[[str], None]):
        self.ref, self.config, self.on_stage = ref, config, on_stage
        if config.fused:
            from effkit.kernels import fused_build

            self.net = fused_build(ref, config.device, config.prec.param_torch, config.fused_only)[0]
        else:
            self.net = ref.build(config.device, config.prec.param_torch)
        if config.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.net.train(config.mode == "train")
        if config.compile:
            # dynamo keeps at most 8 compiled versions of a code object per process (recompile_limit) and past that runs the
            # frame eagerly with only a warning: a sweep or comparison of models sharing a forward (widths, depths, block
            # designs) would time its later points eager under the name compile. Each run starts from an empty cache.
            torch._dynamo.reset()
        self.runner = torch.compile(self.net, **({"mode": config.compile_mode} if config.compile_mode else {})) if config.compile else self.net
        self.autocast = (lambda: config.prec.autocast(config.device)) if config.prec.mixed else None

    def point(self, b: int) -> BenchPoint:
        c, cuda = self.config, self.config.device.startswith("cuda")
        xs = step = None
        note = ""
        self.on_stage(f"batch {b}: warm-up and timing")
        try:
            xs = self.ref.inputs(b, c.prec.input_torch, c.device, c.channels_last)
            step = _make_step(self.runner, xs, c.mode, self.autocast, self.ref.call)
            try:
                step()  # first call: compile errors and unavailable backends surface here
            except Exception as e:
                reason = _unavailable(e, c)
                if reason:
                    return BenchPoint(self.ref.name, b, "skipped", None, None, None, c, None, reason)
                if not c.compile or is_oom(e):
                    raise
                if not c.fallback_eager:
                    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
                    raise CompileError(f"torch.compile failed for {self.ref.name}: {type(e).__name__}: {msg}; "
                                       "pass --fallback-eager to measure eager instead") from e
                note = f"compile failed ({type(e).__name__}); measured eager"
                self.runner = self.net
                step = _make_step(self.runner, xs, c.mode, self.autocast, self.ref.call)
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats(c.device)
            timed_step = _graph_step(step) if c.cuda_graph else step
            timing = measure(timed_step, c.device, min_runs=c.min_runs, min_time_s=c.min_time_s, ci_target=c.ci_target,
                             max_time_s=c.max_time_s,
                             clock_name="cuda graph replays issued back to back, cuda events" if c.cuda_graph else None)
            peak = torch.cuda.max_memory_allocated(c.device) if cuda else None
            self.on_stage(f"batch {b}: synchronous latency and throughput")
            budget = max(c.min_time_s / 4, 0.05)
            sync = measure_sync(timed_step, c.device, min_runs=max(5, c.min_runs // 2), min_time_s=budget)
            throughput = measure_throughput(timed_step, c.device, min_time_s=budget)
            lt = None
            if c.fused and c.layers:
                note = "; ".join(x for x in (note, "per-layer times not taken: a fused block's kernel spans the layers the trace names") if x)
            if c.layers and not c.fused:
                self.on_stage(f"batch {b}: per-layer times (profiler)")
                # graphs hide which layer launched a kernel: the eager step gives the attribution, the replays the times
                eager_median = timing.median_s if not c.cuda_graph else measure(step, c.device, min_runs=5, min_time_s=0.2).median_s
                lt = profile_layers(self.net, step, c.device, eager_median, replay=timed_step if c.cuda_graph else None,
                                    replay_step_s=timing.median_s if c.cuda_graph else None)
            if c.cudnn_benchmark and cuda:
                note = "; ".join(x for x in (note, "cudnn.benchmark on: its choice of kernels can differ from run to run") if x)
            return BenchPoint(self.ref.name, b, "ok", timing, peak, lt, c, None, note, sync, throughput,
                              _predicted(self.ref, b, c) if cuda else None)
        except EffkitError:
            raise
        except Exception as e:
            if not is_oom(e):
                raise
            return BenchPoint(self.ref.name, b, "oom", None, None, None, c, None, f"out of memory: {_first_line(e)[:200]}")
        finally:
            del xs, step
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()


def _predicted(ref, b: int, c: RunConfig) -> int | None:
    """The meta-trace prediction of a step's peak memory, set beside the measured one (None where not modelled)."""
    from effkit.trace.memory import predict_memory

    if c.compile or (c.prec.mixed and c.mode == "train"):
        return None  # compiled code allocates what its fused kernels need; autocast's training casts are not modelled
    try:
        return predict_memory(ref, b, precision=c.precision, mode=c.mode, optimizer="sgd-momentum" if c.mode == "train" else None).peak_bytes
    except Exception:  # noqa: BLE001 - a prediction that cannot be made never costs the measurement
        return None


def _unavailable(e: BaseException, c: RunConfig) -> str | None:
    """Why a configuration cannot run at all (an SDPA backend not available for these shapes), or None."""
    text = str(e)
    if c.sdpa_backend and ("No available kernel" in text or "No viable backend" in text):
        return f"SDPA backend {c.sdpa_backend} is not available for this model's attention shapes on {c.device}: {_first_line(e)[:160]}"
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


class _Writer:
    """Writes every point as soon as it is measured: JSON rewritten atomically, CSV appended."""

    def __init__(self, json_path, csv_path, ref: ModelRef, config: RunConfig):
        self.json_path = Path(json_path) if json_path else None
        self.csv_path = Path(csv_path) if csv_path else None
        self.ref, self.config = ref, config
        if self.csv_path and self.csv_path.exists():
            self.csv_path.unlink()

    def write(self, points: list[BenchPoint]) -> None:
        if self.json_path:
            atomic_write_json(self.json_path, BenchResult(tuple(points), self.config, self.ref.name, self.ref.input_shapes).to_dict())
        if self.csv_path:
            row = points[-1].row()
            new = not self.csv_path.exists()
            self.csv_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.csv_path, "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(row))
                if new:
                    w.writeheader()
                w.writerow(row)
