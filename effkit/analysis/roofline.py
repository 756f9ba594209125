"""Roofline, waterline, efficiency gap and fusion what-if: pure functions of a trace, the
device's ceilings and (when there are any) measured layer times.

Definitions (DESIGN.md, stated in every report):
* roofline time of a layer = max(FLOPs / P, bytes / B); its bound is whichever term wins;
  P is per op: each op's FLOPs over the peak of the dtype it computes in (TF32 for fp32
  convolutions when cuDNN's TF32 switch is on and for fp32 matmuls when matmul TF32 is on,
  bf16 for autocast's products, fp32 for what stays fp32);
* waterline latency = the sum of roofline times over the layers in execution order;
* ideal latency = FLOPs / P; efficiency = FLOPs / (latency x P);
* gap ratios: memory-bound = waterline / ideal, kernel = kernel-time sum / waterline,
  overhead = end-to-end latency / kernel-time sum;
* a layer measured faster than its roofline time is flagged: either its input partly came
  from the last on-chip cache, written there by the layer before (each call can read at most
  one cache's worth from it: the flag says when that explains the time), or a count or a
  ceiling is wrong (faster even with that allowance);
* fusion what-if: a block run as one kernel moves only its input, output, weights and
  buffers through DRAM; its roofline time is recomputed with those bytes;
* launch floor: a layer that launches k kernels eager takes at least k x the measured
  per-kernel launch floor; the waterline is given with and without it;
* the ladder ideal <= waterline <= kernels <= end-to-end must hold; where a measured rung
  is below the one before it, that is a measurement problem (`ladder_problems`), never a
  negative gap.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from effkit.device.roofs import Roof

DEFINITIONS = {
    "roofline time": "max(FLOPs / P, bytes / B) per layer: no kernel can run that layer faster",
    "bound": "compute if FLOPs / P is the larger term, else memory",
    "waterline latency": "sum of roofline times over layers in execution order: the best these unfused kernels can do",
    "ideal latency": "FLOPs / P, summed op by op at each op's own peak (its compute dtype and the TF32 switches in force)",
    "efficiency": "ideal latency / latency (= FLOPs / (latency x P) where all ops share one peak)",
    "memory-bound gap": "waterline / ideal",
    "kernel gap": "sum of measured kernel times / waterline",
    "overhead gap": "end-to-end latency / sum of kernel times (launches, Python, synchronisation)",
    "layer efficiency": "roofline time / measured time (achieved against the roof at the layer's intensity)",
    "fusion what-if": "each block as one kernel: only its input, output, weights and buffers cross DRAM",
    "launch floor": "seconds per kernel launched back to back (a one-element op, measured); waterline with floor = sum of "
                    "max(roofline time, kernels x floor) per layer",
    "spread": "IQR (interquartile range) and CV (standard deviation / mean) of the timed samples; the median's 95 % interval "
              "from order statistics",
    "device time per step": "CUDA events around steps issued back to back (perf_counter per step on the CPU): the latency the ladder's "
                            "end-to-end rung and efficiency use",
    "synchronous latency": "wall clock from issuing one step to its result, one step at a time (what a caller waits for)",
    "throughput": "samples per second from the wall time of loops of steps issued back to back, synchronised once per loop",
}
KINDS = ("dense conv", "grouped conv", "depthwise conv", "pointwise conv", "linear", "attention", "norm", "elementwise",
         "pooling", "other")


@dataclass(frozen=True)
class LayerCost:
    """What one layer asks for (forward), from the trace."""

    path: str
    module_type: str
    kind: str
    flops: int
    bytes: int
    bytes_read: int = 0
    calls: int = 1
    ops: int = 0  # costed ops the trace saw (about the kernels it launches, eager)
    flops_by_peak: dict | None = None  # compute dtype -> FLOPs computed in it (None: all at the roof's own peak)

    def compute_s(self, roof: Roof) -> float:
        if not self.flops_by_peak:
            return self.flops / roof.peak_flops
        return sum(f / roof.peak(k) for k, f in self.flops_by_peak.items())


@dataclass(frozen=True)
class LayerResult:
    path: str
    module_type: str
    kind: str
    flops: int
    bytes: int
    roofline_s: float
    bound: str
    measured_s: float | None = None
    kernels: float | None = None
    bytes_read: int = 0
    calls: int = 1
    ops: int = 0
    compute_s: float | None = None  # FLOPs over their per-op peaks (None: FLOPs / the roof's peak)
    flops_by_peak: dict | None = None

    def floor_s(self, roof: "Roof") -> float:
        """Roofline time, or the launch floor of the kernels the layer launches if that is longer."""
        n = self.kernels if self.kernels is not None else self.ops
        return max(self.roofline_s, (n or 0) * (roof.launch_floor_s or 0.0))

    def cached_roofline_s(self, roof: "Roof") -> float:
        """The roofline time if as much of the layer's input as the last cache holds came from it:
        each call can read at most one cache's worth written by the layer before it."""
        allowance = min(self.bytes_read, self.calls * (roof.l2_bytes or 0))
        return max(self.compute_time(roof), (self.bytes - allowance) / roof.bandwidth)

    def compute_time(self, roof: "Roof") -> float:
        return self.compute_s if self.compute_s is not None else self.flops / roof.peak_flops

    @property
    def intensity(self) -> float | None:
        return self.flops / self.bytes if self.bytes else None

    @property
    def achieved_flops_per_s(self) -> float | None:
        return self.flops / self.measured_s if self.measured_s else None

    @property
    def achieved_bytes_per_s(self) -> float | None:
        return self.bytes / self.measured_s if self.measured_s else None

    @property
    def efficiency(self) -> float | None:
        """Roofline time / measured time: the fraction of the roof reached at this intensity."""
        return self.roofline_s / self.measured_s if self.measured_s else None

    @property
    def lost_s(self) -> float | None:
        return self.measured_s - self.roofline_s if self.measured_s is not None else None

    @property
    def faster_than_roofline(self) -> bool:
        return self.measured_s is not None and self.measured_s > 0 and self.measured_s < self.roofline_s

    def row(self) -> dict:
        return {"path": self.path, "module_type": self.module_type, "kind": self.kind, "flops": self.flops, "bytes": self.bytes,
                "intensity_flop_per_byte": self.intensity, "bound": self.bound, "roofline_ms": 1e3 * self.roofline_s,
                "measured_ms": None if self.measured_s is None else 1e3 * self.measured_s, "kernels": self.kernels,
                "achieved_flops_per_s": self.achieved_flops_per_s, "achieved_bytes_per_s": self.achieved_bytes_per_s,
                "efficiency": self.efficiency, "lost_ms": None if self.lost_s is None else 1e3 * self.lost_s,
                "faster_than_roofline": self.faster_than_roofline}


def roofline_time(flops: float, nbytes: float, roof: Roof, compute_s: float | None = None) -> tuple[float, str]:
    """(max(FLOPs / P, bytes / B), its bound); a layer with no work at all is bound by neither: 'none'.
    `compute_s` is FLOPs / P already taken op by op at per-op peaks."""
    t_c = compute_s if compute_s is not None else flops / roof.peak_flops
    t_m = nbytes / roof.bandwidth
    if not flops and not nbytes:
        return 0.0, "none"
    return max(t_c, t_m), "compute" if t_c >= t_m else "memory"


def analyse_layers(costs: list[LayerCost], roof: Roof, measured: dict | None = None) -> list[LayerResult]:
    """Roofline time and bound per layer; measured (seconds, kernels) where `measured` has the path."""
    out = []
    for c in costs:
        compute = c.compute_s(roof)
        t, bound = roofline_time(c.flops, c.bytes, roof, compute)
        m = (measured or {}).get(c.path)
        out.append(LayerResult(c.path, c.module_type, c.kind, c.flops, c.bytes, t, bound, m[0] if m else None, m[1] if m else None,
                               c.bytes_read, c.calls, c.ops, compute, c.flops_by_peak))
    return out


@dataclass(frozen=True)
class Block:
    """A block for the fusion what-if: its member layers and its DRAM traffic if fused."""

    path: str
    members: tuple[str, ...]
    fused_bytes: int  # input + output + weights + buffers


@dataclass(frozen=True)
class Fusion:
    blocks: tuple[str, ...]
    pattern: str
    waterline_s: float
    fused_waterline_s: float
    curve_s: tuple[float, ...]  # cumulative fused waterline, aligned with the layers

    @property
    def speedup(self) -> float:
        return self.waterline_s / self.fused_waterline_s if self.fused_waterline_s else float("nan")


def fusion_what_if(layers: list[LayerResult], blocks: list[Block], roof: Roof, pattern: str = "residual blocks") -> Fusion:
    """The waterline with each block's layers replaced by one kernel moving only its fused bytes."""
    block_of = {}
    for b in blocks:
        for m in b.members:
            block_of.setdefault(m, b)
    last_member = {b.path: max(i for i, l in enumerate(layers) if l.path in b.members) for b in blocks if any(l.path in b.members for l in layers)}
    flops = {b.path: sum(l.flops for l in layers if l.path in b.members) for b in blocks}
    compute = {b.path: sum(l.compute_time(roof) for l in layers if l.path in b.members) for b in blocks}
    curve, total = [], 0.0
    for i, l in enumerate(layers):
        b = block_of.get(l.path)
        if b is None:
            total += l.roofline_s
        elif last_member.get(b.path) == i:
            total += roofline_time(flops[b.path], b.fused_bytes, roof, compute[b.path])[0]
        curve.append(total)
    return Fusion(tuple(b.path for b in blocks), pattern, sum(l.roofline_s for l in layers), total, tuple(curve))


@dataclass(frozen=True)
class ModelAnalysis:
    model: str
    batch: int
    dtype: str
    device: str
    roof: Roof
    layers: tuple[LayerResult, ...]
    flops: int
    macs: int
    params: int
    acts: int
    latency_s: float | None  # end-to-end (median)
    kernels_s: float | None  # sum of measured per-layer kernel time (all layers)
    fusion: Fusion | None
    top1: float | None = None
    uncovered: tuple = ()
    notes: tuple[str, ...] = ()
    latency_iqr_s: float | None = None  # spread of the end-to-end samples
    latency_cv: float | None = None
    latency_samples: int | None = None
    kernels_iqr_s: float | None = None  # spread of the kernel-time sum over the profiled steps
    profiler_overhead: float | None = None  # profiled step / unprofiled step (before correction)
    sync_latency_s: float | None = None  # one step at a time, wall clock to the result
    throughput_samples_per_s: float | None = None  # from back-to-back loops
    casts: int = 0  # autocast's dtype casts in the forward
    cast_bytes: int = 0  # their bytes read + written
    cast_bytes_by_kind: dict | None = None  # layer kind -> cast bytes
    waterline_if_cast_s: float | None = None  # a mixed precision's waterline had the model been cast to its autocast dtype instead

    @property
    def ideal_s(self) -> float:
        """FLOPs / P, op by op at each op's own peak."""
        per_layer = sum(l.compute_time(self.roof) for l in self.layers)
        return per_layer if self.layers and sum(l.flops for l in self.layers) == self.flops else self.flops / self.roof.peak_flops

    def peaks_used(self) -> dict:
        """Compute dtype -> (peak FLOP/s, FLOPs computed at it): every peak the roofline used."""
        out: dict = {}
        for l in self.layers:
            for k, f in (l.flops_by_peak or {self.roof.dtype: l.flops}).items():
                if f:
                    out[k] = (self.roof.peak(k), out.get(k, (0, 0))[1] + f)
        return out

    @property
    def waterline_s(self) -> float:
        return sum(l.roofline_s for l in self.layers)

    @property
    def efficiency(self) -> float | None:
        """Ideal latency / latency: FLOPs / (latency x P) with each op at its own peak."""
        return self.ideal_s / self.latency_s if self.latency_s else None

    @property
    def waterline_floor_s(self) -> float | None:
        """The waterline with each layer at least its kernels x the launch floor (None: no floor measured)."""
        return sum(l.floor_s(self.roof) for l in self.layers) if self.roof.launch_floor_s else None

    @property
    def latency_spread(self) -> float | None:
        """IQR / median of the end-to-end samples."""
        return self.latency_iqr_s / self.latency_s if self.latency_s and self.latency_iqr_s is not None else None

    def ladder_problems(self) -> list[dict]:
        """Rungs of ideal <= waterline <= kernels <= end-to-end that run backwards: each a measurement problem,
        with its size (the upper rung's excess over the lower, as a fraction) and whether it exceeds the spread."""
        out = []
        if self.kernels_s and self.kernels_s < self.waterline_s:
            out.append({"rung": "kernels below waterline", "excess": self.waterline_s / self.kernels_s - 1, "beyond_spread": True,
                        "cause": "layers measured faster than their roofline: a count or a ceiling is wrong, or inputs came from cache"})
        if self.kernels_s and self.latency_s and self.kernels_s > self.latency_s:
            spread = (self.latency_iqr_s or 0.0) + (self.kernels_iqr_s or 0.0)
            out.append({"rung": "kernel sum above end-to-end", "excess": self.kernels_s / self.latency_s - 1,
                        "beyond_spread": self.kernels_s - self.latency_s > spread,
                        "cause": "per-layer times are taken in separate profiled steps: timing noise between them, or profiler "
                                 "overhead not fully corrected"})
        if self.ideal_s and self.waterline_s < self.ideal_s * (1 - 1e-9):
            out.append({"rung": "waterline below ideal", "excess": self.ideal_s / self.waterline_s - 1, "beyond_spread": True,
                        "cause": "a bug: the waterline sums max(FLOPs/P, bytes/B) and cannot be below FLOPs/P"})
        return out

    @property
    def memory_gap(self) -> float:
        return self.waterline_s / self.ideal_s if self.ideal_s else float("nan")

    @property
    def kernel_gap(self) -> float | None:
        return self.kernels_s / self.waterline_s if self.kernels_s and self.waterline_s else None

    @property
    def overhead_gap(self) -> float | None:
        return self.latency_s / self.kernels_s if self.latency_s and self.kernels_s else None

    @property
    def flagged(self) -> list[LayerResult]:
        return [l for l in self.layers if l.faster_than_roofline]

    def time_shares(self) -> dict:
        """Shares of measured time (or, unmeasured, of roofline time) by bound and by kind."""
        t = lambda l: l.measured_s if self.kernels_s else l.roofline_s  # noqa: E731
        total = sum(t(l) or 0 for l in self.layers) or 1.0
        by_bound, by_kind, memory_kind = {}, {}, {}
        for l in self.layers:
            share = (t(l) or 0) / total
            by_bound[l.bound] = by_bound.get(l.bound, 0) + share
            by_kind[l.kind] = by_kind.get(l.kind, 0) + share
            if l.bound == "memory":
                memory_kind[l.kind] = memory_kind.get(l.kind, 0) + share
        return {"basis": "measured kernel time" if self.kernels_s else "roofline time", "bound": by_bound, "kind": by_kind,
                "memory_kind": memory_kind}

    def summary_row(self) -> dict:
        return {
            "model": self.model, "batch": self.batch, "dtype": self.dtype, "device": self.device,
            "latency_ms": None if self.latency_s is None else 1e3 * self.latency_s,
            "samples_per_s": None if not self.latency_s else self.batch / self.latency_s,
            "macs": self.macs, "flops": self.flops, "params": self.params, "acts": self.acts,
            "efficiency": self.efficiency, "ideal_ms": 1e3 * self.ideal_s, "waterline_ms": 1e3 * self.waterline_s,
            "kernels_ms": None if self.kernels_s is None else 1e3 * self.kernels_s,
            "memory_gap": self.memory_gap, "kernel_gap": self.kernel_gap, "overhead_gap": self.overhead_gap,
            "fused_waterline_ms": None if not self.fusion else 1e3 * self.fusion.fused_waterline_s,
            "fusion_speedup": None if not self.fusion else self.fusion.speedup,
            "flagged_layers": len(self.flagged), "peak_flops_per_s": self.roof.peak_flops, "bandwidth_bytes_per_s": self.roof.bandwidth,
            "roof": self.roof.name, "top1": self.top1,
            "device_time_ms": None if self.latency_s is None else 1e3 * self.latency_s,
            "sync_latency_ms": None if self.sync_latency_s is None else 1e3 * self.sync_latency_s,
            "throughput_samples_per_s": self.throughput_samples_per_s,
            "cast_bytes": self.cast_bytes, "waterline_if_cast_ms": None if self.waterline_if_cast_s is None else 1e3 * self.waterline_if_cast_s,
            "peaks_used": ", ".join(f"{k} {v[0] / 1e12:.3g} TFLOP/s" for k, v in self.peaks_used().items()),
            "latency_iqr_ms": None if self.latency_iqr_s is None else 1e3 * self.latency_iqr_s, "latency_cv": self.latency_cv,
            "latency_samples": self.latency_samples, "kernels_iqr_ms": None if self.kernels_iqr_s is None else 1e3 * self.kernels_iqr_s,
            "waterline_with_launch_floor_ms": None if self.waterline_floor_s is None else 1e3 * self.waterline_floor_s,
            "launch_floor_us": None if not self.roof.launch_floor_s else 1e6 * self.roof.launch_floor_s,
            "ladder_problems": len(self.ladder_problems()),
        }

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = [asdict(l) for l in self.layers]
        return d

    @staticmethod
    def from_dict(d: dict) -> "ModelAnalysis":
        d = dict(d)
        d.pop("provenance", None)  # schema 1 kept the run's provenance here; the record holds it now
        d["roof"] = Roof(**d["roof"])
        d["layers"] = tuple(LayerResult(**l) for l in d["layers"])
        if d.get("fusion"):
            f = dict(d["fusion"])
            f["blocks"], f["curve_s"] = tuple(f["blocks"]), tuple(f["curve_s"])
            d["fusion"] = Fusion(**f)
        d["uncovered"], d["notes"] = tuple(d.get("uncovered") or ()), tuple(d.get("notes") or ())
        return ModelAnalysis(**d)
