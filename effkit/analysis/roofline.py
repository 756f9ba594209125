"""Roofline, waterline, efficiency gap and fusion what-if: pure functions of a trace, the
device's ceilings and (when there are any) measured layer times.

Definitions (DESIGN.md, stated in every report):
* roofline time of a layer = max(FLOPs / P, bytes / B); its bound is whichever term wins;
* waterline latency = the sum of roofline times over the layers in execution order;
* ideal latency = FLOPs / P; efficiency = FLOPs / (latency x P);
* gap ratios: memory-bound = waterline / ideal, kernel = kernel-time sum / waterline,
  overhead = end-to-end latency / kernel-time sum;
* a layer measured faster than its roofline time is flagged: either its input partly came
  from the last on-chip cache, written there by the layer before (each call can read at most
  one cache's worth from it: the flag says when that explains the time), or a count or a
  ceiling is wrong (faster even with that allowance);
* fusion what-if: a block run as one kernel moves only its input, output, weights and
  buffers through DRAM; its roofline time is recomputed with those bytes.
"""
from __future__ import annotations

import fnmatch
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from effkit.errors import UserInputError

DEFINITIONS = {
    "roofline time": "max(FLOPs / P, bytes / B) per layer: no kernel can run that layer faster",
    "bound": "compute if FLOPs / P is the larger term, else memory",
    "waterline latency": "sum of roofline times over layers in execution order: the best these unfused kernels can do",
    "ideal latency": "FLOPs / P",
    "efficiency": "FLOPs / (latency x P)",
    "memory-bound gap": "waterline / ideal",
    "kernel gap": "sum of measured kernel times / waterline",
    "overhead gap": "end-to-end latency / sum of kernel times (launches, Python, synchronisation)",
    "layer efficiency": "roofline time / measured time (achieved against the roof at the layer's intensity)",
    "fusion what-if": "each block as one kernel: only its input, output, weights and buffers cross DRAM",
}
KINDS = ("dense conv", "grouped conv", "depthwise conv", "pointwise conv", "linear", "attention", "norm", "elementwise",
         "pooling", "other")


@dataclass(frozen=True)
class Roof:
    """The two ceilings an analysis uses, at one dtype."""

    name: str
    dtype: str
    peak_flops: float  # FLOP/s
    bandwidth: float  # bytes/s
    source: str  # "measured on ..." or the datasheet's source
    l2_bytes: int | None = None  # the last on-chip cache before DRAM (GPU L2, CPU last level)

    @property
    def ridge(self) -> float:
        """Intensity (FLOP/byte) where the two roofs meet."""
        return self.peak_flops / self.bandwidth

    def attainable(self, intensity: float) -> float:
        return min(self.peak_flops, intensity * self.bandwidth)


def roof_from_ceilings(c, dtype: str) -> Roof:
    """A Roof from effkit.device Ceilings (measured)."""
    peak = c.peak_flops.get(dtype)
    if not peak:
        raise UserInputError(f"no measured {dtype} peak on {c.name}; measured: {', '.join(d for d, v in c.peak_flops.items() if v)}")
    cache = c.facts.get("l2_cache_bytes") or c.facts.get("llc_bytes")  # GPU L2, or the CPU's last-level cache
    return Roof(c.name, dtype, peak, c.bandwidth_bytes_per_s, f"measured on {c.name} ({c.measured_at})", cache)


def roof_from_spec(spec: str, dtype: str) -> Roof:
    """A Roof from a datasheet name (e.g. 'h100', 'a100 80gb') or a ceilings JSON file."""
    from effkit.device.ceilings import Ceilings
    from effkit.device.datasheet import DATASHEETS, lookup

    p = Path(spec)
    if p.suffix == ".json":
        if not p.is_file():
            raise UserInputError(f"ceilings file {spec!r} does not exist")
        d = json.loads(p.read_text())
        if "peak_flops" not in d or "bandwidth_bytes_per_s" not in d:
            raise UserInputError(f"ceilings file {spec!r} needs 'peak_flops' (per dtype, FLOP/s) and 'bandwidth_bytes_per_s'")
        d.setdefault("name", p.stem)
        c = Ceilings(**{k: d.get(k) for k in ("device", "name", "peak_flops", "bandwidth_bytes_per_s", "samples", "sizes", "facts", "datasheet", "measured_at")}) \
            if "samples" in d else None
        if c is not None:
            return roof_from_ceilings(c, dtype)
        peak = d["peak_flops"].get(dtype)
        if not peak:
            raise UserInputError(f"ceilings file {spec!r} has no {dtype} peak")
        return Roof(d["name"], dtype, peak, d["bandwidth_bytes_per_s"], f"ceilings file {spec}")
    ds = lookup(spec.replace("_", " "))
    if ds is None:
        names = ", ".join(d.name.lower().replace(" ", "_") for d in DATASHEETS)
        raise UserInputError(f"unknown ceilings {spec!r}; give a ceilings JSON file or one of: {names}")
    peak = ds.flops.get(dtype)
    if not peak:
        raise UserInputError(f"{ds.name} has no {dtype} rate in its datasheet; choose another --dtype")
    return Roof(f"{ds.name} (datasheet)", dtype, peak, ds.bandwidth, ds.source)


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

    def cached_roofline_s(self, roof: "Roof") -> float:
        """The roofline time if as much of the layer's input as the last cache holds came from it:
        each call can read at most one cache's worth written by the layer before it."""
        allowance = min(self.bytes_read, self.calls * (roof.l2_bytes or 0))
        return max(self.flops / roof.peak_flops, (self.bytes - allowance) / roof.bandwidth)

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


def roofline_time(flops: float, nbytes: float, roof: Roof) -> tuple[float, str]:
    t_c, t_m = flops / roof.peak_flops, nbytes / roof.bandwidth
    return max(t_c, t_m), "compute" if t_c >= t_m else "memory"


def analyse_layers(costs: list[LayerCost], roof: Roof, measured: dict | None = None) -> list[LayerResult]:
    """Roofline time and bound per layer; measured (seconds, kernels) where `measured` has the path."""
    out = []
    for c in costs:
        t, bound = roofline_time(c.flops, c.bytes, roof)
        m = (measured or {}).get(c.path)
        out.append(LayerResult(c.path, c.module_type, c.kind, c.flops, c.bytes, t, bound, m[0] if m else None, m[1] if m else None,
                               c.bytes_read, c.calls))
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
    curve, total = [], 0.0
    for i, l in enumerate(layers):
        b = block_of.get(l.path)
        if b is None:
            total += l.roofline_s
        elif last_member.get(b.path) == i:
            total += roofline_time(flops[b.path], b.fused_bytes, roof)[0]
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
    provenance: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def ideal_s(self) -> float:
        return self.flops / self.roof.peak_flops

    @property
    def waterline_s(self) -> float:
        return sum(l.roofline_s for l in self.layers)

    @property
    def efficiency(self) -> float | None:
        return self.flops / (self.latency_s * self.roof.peak_flops) if self.latency_s else None

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

    def headline(self) -> list[str]:
        out = []
        ms = lambda s: f"{1e3 * s:.3f} ms"  # noqa: E731
        if self.latency_s:
            out.append(f"{self.model} at batch {self.batch}, {self.dtype} on {self.device}: {ms(self.latency_s)} per batch, "
                       f"{self.batch / self.latency_s:,.0f} samples/s, {100 * self.efficiency:.1f} % of peak {self.dtype} "
                       f"({self.roof.peak_flops / 1e12:.3g} TFLOP/s, {self.roof.name}).")
        else:
            out.append(f"{self.model} at batch {self.batch}, {self.dtype}: not measured; roofline analysis against {self.roof.name}.")
        ladder = f"ideal {ms(self.ideal_s)} → waterline {ms(self.waterline_s)} (×{self.memory_gap:.2f}, memory-bound layers)"
        if self.kernels_s:
            ladder += f" → kernels {ms(self.kernels_s)} (×{self.kernel_gap:.2f}, kernel quality)"
        if self.latency_s and self.kernels_s:
            ladder += f" → end-to-end {ms(self.latency_s)} (×{self.overhead_gap:.2f}, launches, Python, synchronisation)"
        out.append("Gap ladder: " + ladder + ".")
        shares = self.time_shares()
        mem = shares["bound"].get("memory", 0)
        if shares["memory_kind"]:
            k, v = max(shares["memory_kind"].items(), key=lambda kv: kv[1])
            out.append(f"{100 * mem:.0f} % of {shares['basis']} is in memory-bound layers; {k} layers alone are {100 * v:.0f} %.")
        if self.fusion and self.fusion.blocks:
            out.append(f"Fusion what-if: running each of the {len(self.fusion.blocks)} {self.fusion.pattern} as one kernel would lower the "
                       f"waterline from {ms(self.fusion.waterline_s)} to {ms(self.fusion.fused_waterline_s)} (×{self.fusion.speedup:.2f}).")
        if self.flagged:
            beyond = [l for l in self.flagged if l.measured_s < l.cached_roofline_s(self.roof)]
            out.append(f"{len(self.flagged)} layer(s) measured faster than their DRAM roofline time; "
                       + (f"{len(beyond)} even allowing for cache reuse (a count or a ceiling is wrong): see the flags." if beyond else
                          "all within what reading their input from the cache the previous layer wrote allows: see the flags."))
        return out

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
        }

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = [asdict(l) for l in self.layers]
        return d

    @staticmethod
    def from_dict(d: dict) -> "ModelAnalysis":
        d = dict(d)
        d["roof"] = Roof(**d["roof"])
        d["layers"] = tuple(LayerResult(**l) for l in d["layers"])
        if d.get("fusion"):
            f = dict(d["fusion"])
            f["blocks"], f["curve_s"] = tuple(f["blocks"]), tuple(f["curve_s"])
            d["fusion"] = Fusion(**f)
        d["uncovered"], d["notes"] = tuple(d.get("uncovered") or ()), tuple(d.get("notes") or ())
        return ModelAnalysis(**d)


def match_blocks(paths: list[str], pattern: str) -> list[str]:
    return [p for p in paths if fnmatch.fnmatchcase(p, pattern)]
