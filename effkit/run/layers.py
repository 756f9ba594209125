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
can be set against its end-to-end latency. Eager CUDA kernel durations are not corrected.

With CUDA graphs the times come from profiled replays of the graph that was timed (not from
eager steps, whose kernels run with gaps and slightly different timings): a replay runs the
captured kernels in the captured order, so kernel k of a replay belongs to the layer of kernel
k of a profiled eager step (`match_graph_kernels`). CUPTI lengthens a profiled replay a little;
its kernel times are scaled by unprofiled replay time / profiled replay span (`replay_correction`).
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
    step_s: tuple = ()  # the layer's time in each profiled step (its spread; what a diff tests)


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
    note: str = ""  # how the times were obtained where it is not the plain way (CUDA graphs)

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
        d["layers"] = tuple(LayerTime(**{**l, "step_s": tuple(l.get("step_s") or ())}) for l in d["layers"])
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
    per_key_step: dict[tuple[str, str], dict[int, float]] = defaultdict(lambda: defaultdict(float))
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
            per_key_step[key][step] += us
        if key not in order:
            order.append(key)
    steps_seen = sorted(per_step)
    layers = [LayerTime(p, ph, time_us[(p, ph)] / 1e6 / steps, count[(p, ph)] / steps,
                        tuple(per_key_step[(p, ph)].get(i, 0.0) / 1e6 for i in steps_seen)) for p, ph in order]
    return layers, [per_step[i] / 1e6 for i in sorted(per_step)]


def eager_kernel_order(events, step: int = 0) -> list[tuple[str, tuple[str, str]]]:
    """(kernel name, (layer path, phase)) of every device kernel one profiled step ran, in the order the device ran
    them. The profiler attaches each kernel to the op that launched it as (name, duration); the device's own kernel
    events carry the same name and duration and their start time. So each device event, in time order, is matched to
    the earliest op (by start) not yet matched that launched a kernel of that name and duration. (Ops cannot simply be
    sorted by start: an outer op starts before the inner op it calls but may launch its kernel after it.)"""
    from collections import deque

    queues: dict = defaultdict(deque)
    ops = sorted((e for e in events if e.device_type == torch.autograd.DeviceType.CPU and e.kernels), key=lambda e: e.time_range.start)
    for op in ops:
        for k in op.kernels:
            queues[(k.name, k.duration)].append(op)
    out = []
    for d in sorted((e for e in events if e.device_type == torch.autograd.DeviceType.CUDA), key=lambda e: e.time_range.start):
        q = queues.get((d.name, d.time_range.end - d.time_range.start))
        if q:
            op = q.popleft()
            if _step_of(op) == step:
                out.append((d.name, _layer_of(op, {})))
    return out


def match_graph_kernels(eager: list[tuple[str, tuple]], replays: list[list[tuple[str, float]]]) -> tuple[dict, list[float]] | str:
    """A CUDA graph hides which layer launched each kernel, but it replays the kernels that were captured, in the order
    captured. So the k-th kernel of a replay is the k-th kernel of an eager step, where the two lists match one to one
    by name. Returns (layer key -> its time in each replay in µs, each replay's total in µs), or why they do not match."""
    if not replays or not eager:
        return "no kernels were recorded in the graph replays" if not replays or not replays[0] else "no kernels in the eager step"
    names = [n for n, _ in eager]
    for r in replays:
        if [n for n, _ in r] != names:
            first = next((i for i, (a, b) in enumerate(zip(names, [n for n, _ in r])) if a != b), min(len(names), len(r)))
            return (f"the graph replays {len(r)} kernels and the eager step {len(names)}; they differ from kernel {first} on, "
                    "so graph kernels cannot be attributed to layers by their order")
    per_key: dict = defaultdict(lambda: [0.0] * len(replays))
    for i, r in enumerate(replays):
        for (_, key), (_, us) in zip(eager, r):
            per_key[key][i] += us
    return {k: tuple(v) for k, v in per_key.items()}, [sum(us for _, us in r) for r in replays]


def replay_correction(spans_us: list[float], unprofiled_s: float | None) -> float:
    """CUPTI's per-kernel records lengthen a profiled replay a little (ConvNeXt-T at batch 64 on an H200: its kernels
    summed to 0.7 % more than the unprofiled replay's device time). A replay's kernels run back to back, so the
    device span of a profiled replay (first kernel's start to last kernel's end) against the unprofiled replay's
    device time measures that lengthening: every kernel time is scaled by unprofiled / profiled span (at most 1)."""
    spans = [s for s in spans_us if s > 0]
    if not spans or not unprofiled_s:
        return 1.0
    return min(1.0, unprofiled_s / (statistics.median_high(spans) / 1e6))


def _graph_replays(replay, steps: int) -> tuple[list[list[tuple[str, float]]], float, list[float]]:
    """Profile `steps` replays of a CUDA graph: each replay's kernels (name, µs) in order, the wall time per replay, and
    each replay's device span in µs."""
    import time

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(steps):
            replay()
        torch.cuda.synchronize()
        wall = (time.perf_counter() - t) / steps
    kernels = sorted((e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA), key=lambda e: e.time_range.start)
    if not kernels or len(kernels) % steps:
        return [[(k.name, k.time_range.elapsed_us()) for k in kernels]], wall, []
    n = len(kernels) // steps
    chunks = [kernels[i * n:(i + 1) * n] for i in range(steps)]
    spans = [c[-1].time_range.end - c[0].time_range.start for c in chunks]
    return [[(k.name, k.time_range.elapsed_us()) for k in c] for c in chunks], wall, spans


def profile_layers(model: nn.Module, step, device: str, unprofiled_step_s: float, steps: int = 5, replay=None,
                   replay_step_s: float | None = None) -> LayerTimes:
    """Profile `steps` calls of `step` (already warm) and attribute their time to layers (see the module docstring).

    With `replay` (a captured CUDA graph of `step`, timed at `replay_step_s` per replay), the kernel times are taken from profiled replays of the graph, the
    configuration that was timed, and attributed to layers by kernel order (`match_graph_kernels`); where that is not
    possible, the eager step's times are kept and `note` says why."""
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
    events = prof.events()
    layers, totals = attribute(events, device, steps)
    correction = 1.0 if cuda or not wall else min(1.0, unprofiled_step_s / wall)
    if correction != 1.0:
        layers = [LayerTime(l.path, l.phase, l.time_s * correction, l.count, tuple(t * correction for t in l.step_s)) for l in layers]
        totals = [t * correction for t in totals]
    what, note = ("kernel time (CUPTI)" if cuda else "CPU op self time"), ""
    if replay is not None and cuda:
        replays, graph_wall, spans = _graph_replays(replay, steps)
        matched = match_graph_kernels(eager_kernel_order(events), replays)
        if isinstance(matched, str):
            note = f"per-layer times from eager steps, not the graph: {matched}"
        else:
            per_key, graph_totals = matched
            k = correction = replay_correction(spans, replay_step_s)
            layers = [LayerTime(l.path, l.phase, k * sum(per_key.get((l.path, l.phase), ())) / len(graph_totals) / 1e6, l.count,
                                tuple(k * us / 1e6 for us in per_key.get((l.path, l.phase), ()))) for l in layers]
            totals = [k * t / 1e6 for t in graph_totals]
            unprofiled_step_s = replay_step_s or unprofiled_step_s
            wall = statistics.median_high(spans) / 1e6 if spans else graph_wall  # the profiled replay's device span
            what = "kernel time (CUPTI) in CUDA graph replays"
            note = ("kernels of the graph replays, attributed to layers by their order in a profiled eager step"
                    + (f"; scaled by {k:.4f}, the unprofiled replay's device time over the profiled replay's span" if k != 1.0 else ""))
    return LayerTimes(tuple(layers), steps, device, what, wall, unprofiled_step_s, correction, tuple(totals), note)
