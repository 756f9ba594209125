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
  (IQR / median over `spread_warn`) is flagged.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Timing:
    samples_s: tuple[float, ...]  # one per timed step, seconds
    warmup_steps: int
    clock: str

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

    def spread_warning(self, limit: float = 0.10) -> str | None:
        r = self.iqr_s / self.median_s if self.median_s else 0.0
        return f"large spread: IQR is {100 * r:.0f}% of the median over {len(self.samples_s)} samples" if r > limit else None

    def summary(self) -> dict:
        return {"median_ms": 1e3 * self.median_s, "iqr_ms": 1e3 * self.iqr_s, "min_ms": 1e3 * self.min_s,
                "p95_ms": 1e3 * self.p95_s, "mean_ms": 1e3 * self.mean_s, "cv": self.cv, "samples": len(self.samples_s),
                "warmup_steps": self.warmup_steps, "clock": self.clock}


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


def measure(step: Callable[[], object], device: str, *, min_runs: int = 20, min_time_s: float = 1.0, max_runs: int = 1000,
            warmup_min: int = 3, warmup_max_s: float = 5.0, settle_tol: float = 0.05, clock_name: str | None = None) -> Timing:
    """Warm `step` up until it settles, then time it; return every sample."""
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
    if device.startswith("cuda"):
        samples = _timed_cuda_steps(step, min_runs, min_time_s, max_runs)
        name = "cuda events, steps issued back to back"
    else:
        samples = []
        t0 = time.perf_counter()
        while len(samples) < max_runs and (len(samples) < min_runs or time.perf_counter() - t0 < min_time_s):
            samples.append(timed(step))
    return Timing(tuple(samples), len(warm), clock_name or name)
