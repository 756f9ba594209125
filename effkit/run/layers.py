"""Measured time per layer: every device kernel (or CPU op) of a step, attributed to the
tracer's layer paths through torch.profiler.

Forward: module hooks open a `record_function("effkit.layer::PATH")` range around every
module call; an op belongs to its innermost range (a parent's own ops to the parent), as
in the tracer. Backward: each `autograd::engine::evaluate_function` event carries the
sequence number of the forward op's autograd node; forward op events carry the same
number, which gives the path. On CUDA a layer's time is the summed duration of the
kernels its ops launched (CUPTI); on the CPU, the summed self time of its ops.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass

import pandas as pd
import torch
import torch.nn as nn
from torch.autograd.profiler import record_function
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

from effkit.trace.paths import AUTOGRAD, OUTSIDE as OTHER, module_path

_PREFIX = "effkit.layer::"
_ENGINE = "autograd::engine::evaluate_function"


@dataclass(frozen=True)
class LayerTime:
    path: str
    phase: str  # "forward" or "backward"
    time_s: float  # kernel time (CUDA) or op self time (CPU), per step
    count: float  # kernels (or ops) per step


@dataclass(frozen=True)
class LayerTimes:
    layers: tuple[LayerTime, ...]
    steps: int  # profiled steps the figures are averaged over
    device: str
    what: str  # "kernel time (CUPTI)" or "CPU op self time"
    profiled_step_s: float  # wall time of one step under the profiler
    unprofiled_step_s: float  # the same step without it (the timing discipline's median)

    @property
    def total_s(self) -> float:
        """Sum of per-layer times: the step's kernel time."""
        return sum(l.time_s for l in self.layers)

    @property
    def profiler_overhead(self) -> float:
        """How much slower a step runs under the profiler (profiled / unprofiled)."""
        return self.profiled_step_s / self.unprofiled_step_s if self.unprofiled_step_s else float("nan")

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"path": l.path, "phase": l.phase, "time_ms": 1e3 * l.time_s, "count": l.count} for l in self.layers])

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = [asdict(l) for l in self.layers]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LayerTimes":
        d = dict(d)
        d["layers"] = tuple(LayerTime(**l) for l in d["layers"])
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
    return OTHER, "forward"


def attribute(events, device: str, steps: int) -> list[LayerTime]:
    """Per-layer times from profiler events (averaged over `steps`)."""
    seq_paths: dict[int, str] = {}
    for evt in events:  # forward ops: their node's sequence number -> their layer
        if evt.sequence_nr is not None and evt.sequence_nr >= 0 and not evt.name.startswith(_ENGINE):
            path, phase = _layer_of(evt, {})
            if phase == "forward" and path != OTHER:
                seq_paths.setdefault(evt.sequence_nr, path)
    time_us: dict[tuple[str, str], float] = defaultdict(float)
    count: dict[tuple[str, str], int] = defaultdict(int)
    order: list[tuple[str, str]] = []
    cuda = device.startswith("cuda")
    for evt in events:
        if getattr(evt, "is_user_annotation", False) or evt.name.startswith(_PREFIX):
            continue
        if cuda:
            kernels = [k for k in evt.kernels] if evt.device_type == torch.autograd.DeviceType.CPU else []
            if not kernels:
                continue
            key = _layer_of(evt, seq_paths)
            time_us[key] += sum(k.duration for k in kernels)
            count[key] += len(kernels)
        else:
            if evt.device_type != torch.autograd.DeviceType.CPU or evt.name.startswith(_ENGINE):
                continue
            key = _layer_of(evt, seq_paths)
            time_us[key] += evt.self_cpu_time_total
            count[key] += 1
        if key not in order:
            order.append(key)
    return [LayerTime(p, ph, time_us[(p, ph)] / 1e6 / steps, count[(p, ph)] / steps) for p, ph in order]


def profile_layers(model: nn.Module, step, device: str, unprofiled_step_s: float, steps: int = 3) -> LayerTimes:
    """Profile `steps` calls of `step` (already warm) and attribute their time to layers."""
    import time

    from torch.profiler import ProfilerActivity, profile

    cuda = device.startswith("cuda")
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with _Ranges(model), profile(activities=acts) as prof:
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()
        wall = (time.perf_counter() - t) / steps
    layers = attribute(prof.events(), device, steps)
    return LayerTimes(tuple(layers), steps, device, "kernel time (CUPTI)" if cuda else "CPU op self time", wall, unprofiled_step_s)
