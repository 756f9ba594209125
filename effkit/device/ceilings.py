"""Device ceilings, measured on the device: peak matrix throughput per dtype (a large GEMM
on random data) and memory bandwidth (a large device-to-device copy, bytes read + written).

Each figure is the median of repeated timed runs after warm-up, through the same timing
discipline as every other effkit measurement (effkit.timing). Results are
cached per device + driver + torch version in the user's cache folder.
"""
from __future__ import annotations

import re
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch

from effkit._version import COUNTING_VERSION, MEASUREMENT_VERSION, __version__
from effkit.config import COMPUTE_DTYPES, DTYPES, compute_dtype_unsupported, tf32_switches
from effkit.device.datasheet import lookup
from effkit.device.facts import device_facts
from effkit.devices import parse_device
from effkit.files import atomic_write_json, read_json_cache
from effkit.paths import cache_root
from effkit.timing import measure as measure_steps


@dataclass(frozen=True)
class Ceilings:
    device: str
    name: str
    peak_flops: dict  # dtype -> FLOP/s measured (None: not supported here)
    bandwidth_bytes_per_s: float
    samples: dict  # dtype or "copy" -> raw seconds per run
    sizes: dict  # what was measured: GEMM n per dtype, copy bytes
    facts: dict
    datasheet: dict | None  # name, flops, bandwidth, source
    measured_at: str
    versions: dict = field(default_factory=dict)
    cached: bool = False

    def to_frame(self) -> pd.DataFrame:
        ds = self.datasheet or {}
        rows = [{"quantity": f"peak {d}", "measured": v, "datasheet": (ds.get("flops") or {}).get(d), "unit": "FLOP/s"}
                for d, v in self.peak_flops.items()]
        rows.append({"quantity": "memory bandwidth", "measured": self.bandwidth_bytes_per_s, "datasheet": ds.get("bandwidth"), "unit": "bytes/s"})
        df = pd.DataFrame(rows)
        df["measured_over_datasheet"] = df["measured"] / df["datasheet"]
        return df

    def to_dict(self) -> dict:
        return asdict(self)


def cache_dir() -> Path:
    return cache_root() / "ceilings"


# Bumped whenever what is measured changes, so cached ceilings measured the old way are not reused.
METHOD_VERSION = MEASUREMENT_VERSION


def _cache_key(facts: dict) -> str:
    raw = (f"{facts.get('name')}-{facts.get('driver', 'nodriver')}-torch{torch.__version__}-{facts.get('cores', '')}"
           f"-m{METHOD_VERSION}-c{COUNTING_VERSION}")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw)


def _samples(fn, device: str, repeats: int) -> list[float]:
    # effkit's one timing discipline: warm up until settled, then `repeats` timed runs
    return list(measure_steps(fn, device, min_runs=repeats, min_time_s=0.0, max_runs=repeats).samples_s)


def gemm_peak(device: str, dtype: str, n: int, repeats: int = 10) -> tuple[float, list[float]]:
    """FLOP/s of an n x n x n matrix product on random data (2 n^3 FLOPs), median of `repeats`."""
    dev = torch.device(device)
    tdtype = DTYPES["fp32" if dtype == "tf32" else dtype]
    a = torch.randn(n, n, device=dev, dtype=tdtype)
    b = torch.randn(n, n, device=dev, dtype=tdtype)
    out = torch.empty(n, n, device=dev, dtype=tdtype)
    with tf32_switches(dtype == "tf32", dtype == "tf32"):
        samples = _samples(lambda: torch.mm(a, b, out=out), device, repeats)
    return 2 * n**3 / statistics.median(samples), samples


BANDWIDTH_KERNELS = {
    # three ways to stream a large buffer through DRAM, each counting bytes read + written;
    # the ceiling is the fastest (on an H200 the memcpy path reads ~3 % below elementwise kernels)
    "copy_": lambda src, dst: dst.copy_(src),  # cudaMemcpyAsync device-to-device (memcpy on the CPU)
    "neg (out of place)": lambda src, dst: torch.neg(src, out=dst),  # an elementwise kernel: read src, write dst
    "mul_ (in place)": lambda src, dst: dst.mul_(1.0),  # read and write the same buffer
}


def copy_bandwidth(device: str, nbytes: int, repeats: int = 10) -> tuple[float, dict]:
    """Bytes/s of large device-to-device copies of `nbytes` (read + written), the fastest of
    BANDWIDTH_KERNELS; returns it and each kernel's samples."""
    dev = torch.device(device)
    src = torch.randn(nbytes // 4, device=dev)
    dst = torch.randn_like(src)
    moved = 2 * src.numel() * 4
    samples = {name: _samples(lambda k=k: k(src, dst), device, repeats) for name, k in BANDWIDTH_KERNELS.items()}
    return max(moved / statistics.median(v) for v in samples.values()), samples


def default_sizes(device: str) -> dict:
    if device == "cpu":  # seconds, not minutes, on a laptop; low precision runs slowly on many CPUs
        return {"fp32": 1024, "fp16": 512, "bf16": 512, "copy_bytes": 256 * 2**20}
    return {"fp32": 8192, "tf32": 8192, "fp16": 8192, "bf16": 8192, "copy_bytes": 2 * 2**30}


def measure(device: str = "cpu", sizes: dict | None = None, repeats: int = 10, progress=None) -> Ceilings:
    """Measure the ceilings of `device` now (no cache)."""
    device = parse_device(device, allow_meta=False)
    facts = device_facts(device)
    sizes = {**default_sizes(device), **(sizes or {})}
    peak, samples = {}, {}
    for d in COMPUTE_DTYPES:
        if d not in sizes or compute_dtype_unsupported(device, d):
            peak[d] = None
            continue
        if progress:
            progress(f"GEMM {d} {sizes[d]}^3")
        peak[d], samples[d] = gemm_peak(device, d, sizes[d], repeats=repeats)
    if progress:
        progress(f"copy {sizes['copy_bytes'] / 2**20:.0f} MiB")
    bw, copies = copy_bandwidth(device, sizes["copy_bytes"], repeats=repeats)
    samples.update({f"copy: {k}": v for k, v in copies.items()})
    ds = lookup(facts["name"]) if device != "cpu" else None
    return Ceilings(device, facts["name"], peak, bw, samples, sizes, facts,
                    {"name": ds.name, "flops": ds.flops, "bandwidth": ds.bandwidth, "source": ds.source} if ds else None,
                    time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    {"torch": torch.__version__, "cuda": torch.version.cuda, "effkit": __version__})


def device_ceilings(device: str = "cpu", refresh: bool = False, progress=None) -> Ceilings:
    """Ceilings of `device`, from the cache unless `refresh` (then measured and cached)."""
    device = parse_device(device, allow_meta=False)
    path = cache_dir() / f"{_cache_key(device_facts(device))}.json"
    d = None if refresh else read_json_cache(path)
    if d is not None:
        try:
            return Ceilings(**{**d, "cached": True})
        except TypeError:  # written by another version of this class: measure again
            pass
    c = measure(device, progress=progress)
    atomic_write_json(path, c.to_dict())
    return c
