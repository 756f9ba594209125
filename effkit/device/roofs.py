"""The roofs an analysis uses: from measured ceilings, a datasheet, or a ceilings JSON file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from effkit.device.ceilings import Ceilings
from effkit.device.datasheet import DATASHEETS, lookup
from effkit.errors import UserInputError
from effkit.files import read_json_file


@dataclass(frozen=True)
class Roof:
    """The two ceilings an analysis uses, at one dtype."""

    name: str
    dtype: str
    peak_flops: float  # FLOP/s
    bandwidth: float  # bytes/s
    source: str  # "measured on ..." or the datasheet's source
    l2_bytes: int | None = None  # the last on-chip cache before DRAM (GPU L2, CPU last level)
    launch_floor_s: float | None = None  # seconds per kernel launched back to back, eager (None: not measured)
    peaks: dict | None = None  # every compute dtype's peak FLOP/s (fp32, tf32, fp16, bf16), for per-op peaks

    def peak(self, key: str) -> float:
        """The peak for ops computing in `key` (a compute dtype); the roof's own peak where that one is unknown."""
        return (self.peaks or {}).get(key) or self.peak_flops

    @property
    def ridge(self) -> float:
        """Intensity (FLOP/byte) where the two roofs meet."""
        return self.peak_flops / self.bandwidth

    def attainable(self, intensity: float) -> float:
        return min(self.peak_flops, intensity * self.bandwidth)


def roof_from_ceilings(c: Ceilings, dtype: str) -> Roof:
    """A Roof from measured Ceilings."""
    peak = c.peak_flops.get(dtype)
    if not peak:
        raise UserInputError(f"no measured {dtype} peak on {c.name}; measured: {', '.join(d for d, v in c.peak_flops.items() if v)}")
    cache = c.facts.get("l2_cache_bytes") or c.facts.get("llc_bytes")  # GPU L2, or the CPU's last-level cache
    return Roof(c.name, dtype, peak, c.bandwidth_bytes_per_s, f"measured on {c.name} ({c.measured_at})", cache, c.launch_floor_s,
                {k: v for k, v in c.peak_flops.items() if v})


def roof_from_spec(spec: str, dtype: str) -> Roof:
    """A Roof from a datasheet name (e.g. 'h100', 'a100 80gb') or a ceilings JSON file."""
    p = Path(spec)
    if p.suffix == ".json":
        d = read_json_file(p, "ceilings file")
        if not isinstance(d, dict) or "peak_flops" not in d or "bandwidth_bytes_per_s" not in d:
            raise UserInputError(f"ceilings file {spec!r} needs 'peak_flops' (per dtype, FLOP/s) and 'bandwidth_bytes_per_s'")
        d.setdefault("name", p.stem)
        if "samples" in d:
            fields = ("device", "name", "peak_flops", "bandwidth_bytes_per_s", "samples", "sizes", "facts", "datasheet", "measured_at")
            return roof_from_ceilings(Ceilings(**{k: d.get(k) for k in fields}), dtype)
        peak = d["peak_flops"].get(dtype)
        if not peak:
            raise UserInputError(f"ceilings file {spec!r} has no {dtype} peak")
        return Roof(d["name"], dtype, peak, d["bandwidth_bytes_per_s"], f"ceilings file {spec}", peaks={k: v for k, v in d["peak_flops"].items() if v})
    ds = lookup(spec.replace("_", " "))
    if ds is None:
        names = ", ".join(d.name.lower().replace(" ", "_") for d in DATASHEETS)
        raise UserInputError(f"unknown ceilings {spec!r}; give a ceilings JSON file or one of: {names}")
    peak = ds.flops.get(dtype)
    if not peak:
        raise UserInputError(f"{ds.name} has no {dtype} rate in its datasheet; choose another --dtype")
    return Roof(f"{ds.name} (datasheet)", dtype, peak, ds.bandwidth, ds.source, peaks={k: v for k, v in ds.flops.items() if v})
