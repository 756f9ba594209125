"""Measured time per layer: every device kernel (or CPU op) of a step, attributed to the
tracer's layer paths through torch.profiler.

Forward: module hooks open a `record_function("effkit.layer::PATH")` range around every
module call; an op belongs to its innermost range (a parent's own ops to the parent), as
in the tracer. Backward: each `autograd::engine::evaluate_function` event carries the
sequence number of the forward op's autograd node; forward op events carry the same
number, which gives the path. On CUDA a layer's time is the summed duration of the
kernels its ops launched (CUPTI: device timestamps, not slowed by the profiler); on the
CPU, the summed self time of its ops.

The profiler slows a CPU step (it records every op), and CPU self times grow with it. So
on the CPU every layer's time is scaled by unprofiled step / profiled step (the
`correction`, at most 1): the kernel sum then estimates an unprofiled step's op time and
can be set against its end-to-end latency. CUDA kernel durations are not corrected.
Each profiled step is its own range, so the kernel sum has a spread over steps.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import pandas as pd
import torch
import torch.nn as nn
from torch.autograd.profiler import record_function
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

from effkit.trace.paths import AUTOGRAD, OUTSIDE, module_path

_PREFIX = "effkit.layer::"
_STEP = "effkit.step::"
_ENGINE = "autograd::engine::evaluate_function"


@dataclass(frozen=True)
class LayerTime:
    path: str
    phase: str  # "forward" or "backward"
    time_s: float  # kernel time (CUDA) or op self time (CPU, corrected), per step
    count: float  # kernels (or ops) per step


@dataclass(frozen=True)
class LayerTimes:
    layers: tuple[LayerTime, ...]
    steps: int  # profiled steps the figures are averaged over
    device: str
    what: str  # "kernel time (CUPTI)" or "CPU op self time"
    profiled_step_s: float  # wall time of one step under the profiler
    unprofiled_step_s: float  # the same step without it (the timing discipline's median)
    correction: float = 1.0  # factor applied to every layer time (CPU: unprofiled / profiled step, at most 1)
    step_totals_s: tuple[float, ...] = field(default=())  # kernel-time sum of each profiled step, corrected

    @property
    def total_s(self) -> float:
        """Sum of per-layer times: the step's kernel time."""
        return sum(l.time_s for l in self.layers)

    @property
    def total_iqr_s(self) -> float | None:
        """Spread of the kernel-time sum over the profiled steps."""
        s = sorted(self.step_totals_s)
        if len(s) < 2:
            return None
        q = statistics.quantiles(s, n=4, method="inclusive")
        return q[2] - q[0]

    @property
    def profiler_overhead(self) -> float:
        """How much slower a step runs under the profiler (profiled / unprofiled)."""
        return self.profiled_step_s / self.unprofiled_step_s if self.unprofiled_step_s else float("nan")

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"path": l.path, "phase": l.phase, "time_ms": 1e3 * l.time_s, "count": l.count} for l in self.layers])

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = [asdict(l) for l in self.layers]
        d["step_totals_s"] = list(self.step_totals_s)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LayerTimes":
        d = dict(d)
        d["layers"] = tuple(LayerTime(**l) for l in d["layers"])
        d["step_totals_s"] = tuple(d.get("step_totals_s") or ())
        return cls(**d)


class _Ranges:
    """Module hooks that open and close a profiler range named after each module's path."""

    def __init__(self, model: nn.Module):
        self.paths = {id(m): module_path(name) for name, m in model.named_modules()}
        self.open: list = []
        self.handles: list = []

    def _pre(self, module, args):
        path = self.paths.get(id(module))
        if path is not None:
            rf = record_function(_PREFIX + path)
            rf.__enter__()
            self.open.append((id(module), rf))

    def _post(self, module, args, output):
        if self.open and self.open[-1][0] == id(module):
            self.open.pop()[1].__exit__(None, None, None)

    def __enter__(self):
        self.handles = [register_module_forward_pre_hook(self._pre), register_module_forward_hook(self._post)]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        while self.open:
            self.open.pop()[1].__exit__(None, None, None)


def _layer_of(evt, seq_paths: dict) -> tuple[str, str]:
    """(path, phase) of a profiler event: its innermost effkit range, or its autograd node."""
    e = evt
    while e is not None:
        if e.name.startswith(_PREFIX):
            return e.name[len(_PREFIX):], "forward"
        if e.name.startswith(_ENGINE):
            return seq_paths.get(e.sequence_nr, AUTOGRAD), "backward"
        e = e.cpu_parent
    return OUTSIDE, "forward"


def _step_of(evt) -> int | None:
    e = evt
    while e is not None:
        if e.name.startswith(_STEP):
            return int(e.name[len(_STEP):])
        e = e.cpu_parent
    return None


def attribute(events, device: str, steps: int) -> tuple[list[LayerTime], list[float]]:
    """Per-layer times from profiler events (averaged over `steps`) and each step's total, seconds."""
    seq_paths: dict[int, str] = {}
    for evt in events:  # forward ops: their node's sequence number -> their layer
        if evt.sequence_nr is not None and evt.sequence_nr >= 0 and not evt.name.startswith(_ENGINE):
            path, phase = _layer_of(evt, {})
            if phase == "forward" and path != OUTSIDE:
                seq_paths.setdefault(evt.sequence_nr, path)
    time_us: dict[tuple[str, str], float] = defaultdict(float)
    count: dict[tuple[str, str], int] = defaultdict(int)
    per_step: dict[int, float] = defaultdict(float)
    order: list[tuple[str, str]] = []
    cuda = device.startswith("cuda")
    for evt in events:
        if getattr(evt, "is_user_annotation", False) or evt.name.startswith((_PREFIX, _STEP)):
            continue
        if cuda:
            kernels = [k for k in evt.kernels] if evt.device_type == torch.autograd.DeviceType.CPU else []
            if not kernels:
                continue
            us, n = sum(k.duration for k in kernels), len(kernels)
        else:
            if evt.device_type != torch.autograd.DeviceType.CPU or evt.name.startswith(_ENGINE):
                continue
            us, n = evt.self_cpu_time_total, 1
        key = _layer_of(evt, seq_paths)
        time_us[key] += us
        count[key] += n
        step = _step_of(evt)
        if step is not None:
            per_step[step] += us
        if key not in order:
            order.append(key)
    layers = [LayerTime(p, ph, time_us[(p, ph)] / 1e6 / steps, count[(p, ph)] / steps) for p, ph in order]
    return layers, [per_step[i] / 1e6 for i in sorted(per_step)]


def profile_layers(model: nn.Module, step, device: str, unprofiled_step_s: float, steps: int = 5) -> LayerTimes:
    """Profile `steps` calls of `step` (already warm) and attribute their time to layers (see the module docstring)."""
    import time

    from torch.profiler import ProfilerActivity, profile

    cuda = device.startswith("cuda")
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with _Ranges(model), profile(activities=acts) as prof:
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        for i in range(steps):
            with record_function(f"{_STEP}{i}"):
                step()
        if cuda:
            torch.cuda.synchronize()
        wall = (time.perf_counter() - t) / steps
    layers, totals = attribute(prof.events(), device, steps)
    correction = 1.0 if cuda or not wall else min(1.0, unprofiled_step_s / wall)
    if correction != 1.0:
        layers = [LayerTime(l.path, l.phase, l.time_s * correction, l.count) for l in layers]
        totals = [t * correction for t in totals]
    return LayerTimes(tuple(layers), steps, device, "kernel time (CUPTI)" if cuda else "CPU op self time",
                      wall, unprofiled_step_s, correction, tuple(totals))
