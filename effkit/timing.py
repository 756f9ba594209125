"""One timing discipline for every effkit measurement.

Why it times the way it does:
* **Warm-up until timings settle.** The first runs pay for allocator growth, cuDNN/cuBLAS
  heuristics, lazy module loading and (with torch.compile) compilation. Warm-up runs at
  least `warmup_min` steps and continues until the last three step times agree within
  `settle_tol`, or `warmup_max_s` passes.
* **Device clocks.** CUDA work is asynchronous: each timed step is bracketed by a pair of
  CUDA events and the steps are issued back to back, with one synchronisation at the end
  (as triton's do_bench does). A sample is then the device-side span of one step: when
  the host is the bottleneck (small eager batches) the span includes the gaps the GPU
  waits for launches; when the GPU is, the host's launch latency overlaps the previous
  step and is not counted, as in any serving loop. Synchronising after every step instead
  would add the launch latency (about 30 us for a CUDA-graph replay on an H200) to every
  sample. On the CPU, perf_counter around each step.
* **Many samples, robust statistics.** Timed steps run for at least `min_runs` steps and
  `min_time_s`; the raw samples are kept and the median (not the mean) is the headline;
  IQR, min, p95 and the coefficient of variation admit the noise, and a large spread
  (IQR / median over 10 %) is flagged.
* **Enough samples for the median.** After the minimum, timing goes on until the 95 %
  confidence interval of the median (distribution-free, from order statistics) is within
  `ci_target` of it, or until `max_time_s`; `stopped_by` records which ended it.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable


SPREAD_WARN = 0.10  # IQR / median above this is a large spread


def median_ci(samples, z: float = 1.96) -> tuple[float, float]:
    """A distribution-free ~95 % confidence interval of the median: the order statistics at
    ranks n/2 -/+ z*sqrt(n)/2 (the binomial(n, 1/2) normal approximation)."""
    s = sorted(samples)
    n = len(s)
    if n < 6:
        return s[0], s[-1]
    half = z * math.sqrt(n) / 2
    lo, hi = max(0, math.floor(n / 2 - half) - 1), min(n - 1, math.ceil(n / 2 + half) - 1)
    return s[lo], s[hi]


@dataclass(frozen=True)
class Timing:
    samples_s: tuple[float, ...]  # one per timed step, seconds
    warmup_steps: int
    clock: str
    stopped_by: str = ""  # "ci": the median's interval met the target; "time cap"; "max runs"; "" (not extended)
    ci_target: float | None = None  # the relative half-width of the median's interval asked for

    def _q(self, q: float) -> float:
        s = sorted(self.samples_s)
        pos = q * (len(s) - 1)
        lo, hi = int(pos), min(int(pos) + 1, len(s) - 1)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)

    @property
    def median_s(self) -> float:
        return statistics.median(self.samples_s)

    @property
    def iqr_s(self) -> float:
        return self._q(0.75) - self._q(0.25)

    @property
    def min_s(self) -> float:
        return min(self.samples_s)

    @property
    def p95_s(self) -> float:
        return self._q(0.95)

    @property
    def mean_s(self) -> float:
        return statistics.fmean(self.samples_s)

    @property
    def cv(self) -> float:
        """Coefficient of variation: standard deviation / mean."""
        return statistics.pstdev(self.samples_s) / self.mean_s if len(self.samples_s) > 1 else 0.0

    @property
    def ci_s(self) -> tuple[float, float]:
        """~95 % confidence interval of the median, seconds."""
        return median_ci(self.samples_s)

    @property
    def ci_rel(self) -> float:
        """Half-width of the median's confidence interval, as a fraction of the median."""
        lo, hi = self.ci_s
        return (hi - lo) / 2 / self.median_s if self.median_s else 0.0

    @property
    def iqr_rel(self) -> float:
        return self.iqr_s / self.median_s if self.median_s else 0.0

    @property
    def noisy(self) -> bool:
        return self.iqr_rel > SPREAD_WARN

    def spread_warning(self, limit: float = SPREAD_WARN) -> str | None:
        r = self.iqr_rel
        return f"large spread: IQR is {100 * r:.0f}% of the median over {len(self.samples_s)} samples" if r > limit else None

    def to_dict(self) -> dict:
        return {"samples_s": list(self.samples_s), "warmup_steps": self.warmup_steps, "clock": self.clock, "stopped_by": self.stopped_by,
                "ci_target": self.ci_target}

    @classmethod
    def from_dict(cls, d: dict) -> "Timing":
        return cls(tuple(d["samples_s"]), d.get("warmup_steps") or 0, d.get("clock") or "", d.get("stopped_by") or "", d.get("ci_target"))

    def summary(self) -> dict:
        lo, hi = self.ci_s
        return {"median_ms": 1e3 * self.median_s, "iqr_ms": 1e3 * self.iqr_s, "min_ms": 1e3 * self.min_s,
                "p95_ms": 1e3 * self.p95_s, "mean_ms": 1e3 * self.mean_s, "cv": self.cv, "ci_low_ms": 1e3 * lo, "ci_high_ms": 1e3 * hi,
                "samples": len(self.samples_s), "warmup_steps": self.warmup_steps, "clock": self.clock, "stopped_by": self.stopped_by}


def step_clock(device: str) -> tuple[Callable[[Callable[[], object]], float], str]:
    """A function that times one call of `step` on `device` in seconds, and its name."""
    if device.startswith("cuda"):
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def timed(step):
            start.record()
            step()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3

        return timed, "cuda events"

    def timed(step):
        t = time.perf_counter()
        step()
        return time.perf_counter() - t

    return timed, "perf_counter"


def _timed_cuda_steps(step: Callable[[], object], min_runs: int, min_time_s: float, max_runs: int) -> list[float]:
    """Issue steps back to back, each between two events; synchronise once; span per step."""
    import torch

    pairs = []
    t0 = time.perf_counter()
    while len(pairs) < max_runs and (len(pairs) < min_runs or time.perf_counter() - t0 < min_time_s):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        step()
        b.record()
        pairs.append((a, b))
    pairs[-1][1].synchronize()
    return [a.elapsed_time(b) / 1e3 for a, b in pairs]


def _timed_cpu_steps(step: Callable[[], object], min_runs: int, min_time_s: float, max_runs: int) -> list[float]:
    samples = []
    t0 = time.perf_counter()
    while len(samples) < max_runs and (len(samples) < min_runs or time.perf_counter() - t0 < min_time_s):
        t = time.perf_counter()
        step()
        samples.append(time.perf_counter() - t)
    return samples


def measure(step: Callable[[], object], device: str, *, min_runs: int = 20, min_time_s: float = 1.0, max_runs: int = 1000,
            warmup_min: int = 3, warmup_max_s: float = 5.0, settle_tol: float = 0.05, clock_name: str | None = None,
            ci_target: float | None = None, max_time_s: float | None = None) -> Timing:
    """Warm `step` up until it settles, then time it; return every sample.

    With `ci_target` (e.g. 0.02), timing goes on after `min_runs` and `min_time_s` until the
    median's 95 % interval is within that fraction of it, `max_time_s` passes, or `max_runs`."""
    timed, name = step_clock(device)
    warm: list[float] = []
    t0 = time.perf_counter()
    while True:
        warm.append(timed(step))
        if len(warm) >= warmup_min:
            last = warm[-3:]
            med = statistics.median(last)
            if med == 0 or (max(last) - min(last)) / med <= settle_tol or time.perf_counter() - t0 > warmup_max_s:
                break
    cuda = device.startswith("cuda")
    steps = _timed_cuda_steps if cuda else _timed_cpu_steps
    name = "cuda events, steps issued back to back" if cuda else name
    t0 = time.perf_counter()
    samples = steps(step, min_runs, min_time_s, max_runs)
    stopped_by = ""
    if ci_target is not None:
        cap = max_time_s if max_time_s is not None else max(5 * min_time_s, 2.0)
        chunk = max(min_runs // 2, 5)
        while True:
            t = Timing(tuple(samples), 0, "")
            if t.ci_rel <= ci_target:
                stopped_by = "ci"
                break
            if len(samples) >= max_runs:
                stopped_by = "max runs"
                break
            if time.perf_counter() - t0 >= cap:
                stopped_by = "time cap"
                break
            samples += steps(step, min(chunk, max_runs - len(samples)), 0.0, max_runs - len(samples))
    return Timing(tuple(samples), len(warm), clock_name or name, stopped_by, ci_target)


def _sync(device: str) -> Callable[[], None]:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return lambda: None


def measure_sync(step: Callable[[], object], device: str, *, min_runs: int = 10, min_time_s: float = 0.25) -> Timing:
    """Synchronous latency: the wall clock from issuing one step to having its result, one step at a time
    (what a caller waits for, as timm's infer_step_time and most serving code see it). `step` is warm."""
    sync = _sync(device)
    sync()
    samples = []
    t0 = time.perf_counter()
    while len(samples) < min_runs or time.perf_counter() - t0 < min_time_s:
        t = time.perf_counter()
        step()
        sync()
        samples.append(time.perf_counter() - t)
    return Timing(tuple(samples), 0, "perf_counter, one step at a time, synchronised after each")


THROUGHPUT_LOOP_S = 0.1
THROUGHPUT_MIN_STEPS = 10


def measure_throughput(step: Callable[[], object], device: str, *, loops: int = 5, min_time_s: float = 0.25) -> Timing:
    """Throughput: loops of steps issued back to back with one synchronisation at the end; each sample is a
    loop's wall time over its steps (seconds per step; samples/s = batch / it). `step` is warm."""
    sync = _sync(device)
    sync()
    t = time.perf_counter()
    step()
    sync()
    # each loop pays one synchronisation and one cold first launch: long enough loops (at least THROUGHPUT_LOOP_S and
    # THROUGHPUT_MIN_STEPS steps) keep that under a percent (H200, ViT-B/16 at 6 ms a step: 5-step loops read 4 % slow)
    per_loop = max(min_time_s / loops, THROUGHPUT_LOOP_S)
    n = max(THROUGHPUT_MIN_STEPS, min(10_000, math.ceil(per_loop / max(time.perf_counter() - t, 1e-6))))
    samples = []
    for _ in range(loops):
        t = time.perf_counter()
        for _ in range(n):
            step()
        sync()
        samples.append((time.perf_counter() - t) / n)
    return Timing(tuple(samples), 0, f"perf_counter over {n} steps issued back to back, synchronised once")
