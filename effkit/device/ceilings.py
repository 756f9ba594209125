"""Device ceilings, measured on the device: peak matrix throughput per dtype (a large GEMM
on random data) and memory bandwidth (a large device-to-device copy, bytes read + written).

Each figure is the median of repeated timed runs after warm-up, through the same timing
discipline as every other effkit measurement (effkit.timing). Results are
cached per device + driver + torch version in the user's cache folder.
"""
from __future__ import annotations

import json
import os
import re
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch

import effkit
from effkit.device.datasheet import lookup
from effkit.device.facts import device_facts
from effkit.devices import parse_device
from effkit.paths import cache_root
from effkit.timing import measure as measure_steps

DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


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


# Bumped whenever what is measured changes, so cached ceilings measured the old way are not reused
# (2: bandwidth became the fastest of three copy kernels).
METHOD_VERSION = 2


def _cache_key(facts: dict) -> str:
    raw = f"{facts.get('name')}-{facts.get('driver', 'nodriver')}-torch{torch.__version__}-{facts.get('cores', '')}-m{METHOD_VERSION}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw)


def _samples(fn, device: str, repeats: int) -> list[float]:
    # effkit's one timing discipline: warm up until settled, then `repeats` timed runs
    return list(measure_steps(fn, device, min_runs=repeats, min_time_s=0.0, max_runs=repeats).samples_s)


class _tf32:
    """Set PyTorch's TF32 switches for the block and restore them after."""

    def __init__(self, on: bool):
        self.on = on

    def __enter__(self):
        self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.on

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


def dtype_supported(device: str, dtype: str) -> str | None:
    """None if `dtype` runs on `device`, else the reason it does not."""
    if device == "cpu":
        return "tf32 is a CUDA tensor-core mode" if dtype == "tf32" else None
    major = torch.cuda.get_device_capability(torch.device(device))[0]
    if dtype in ("tf32", "bf16") and major < 8:
        return f"{dtype} needs compute capability 8.0 or newer"
    return None


def gemm_peak(device: str, dtype: str, n: int, repeats: int = 10) -> tuple[float, list[float]]:
    """FLOP/s of an n x n x n matrix product on random data (2 n^3 FLOPs), median of `repeats`."""
    dev = torch.device(device)
    a = torch.randn(n, n, device=dev, dtype=DTYPES[dtype])
    b = torch.randn(n, n, device=dev, dtype=DTYPES[dtype])
    out = torch.empty(n, n, device=dev, dtype=DTYPES[dtype])
    with _tf32(dtype == "tf32"):
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
    for d in DTYPES:
        if d not in sizes or dtype_supported(device, d):
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
                    {"torch": torch.__version__, "cuda": torch.version.cuda, "effkit": effkit.__version__})


def device_ceilings(device: str = "cpu", refresh: bool = False, progress=None) -> Ceilings:
    """Ceilings of `device`, from the cache unless `refresh` (then measured and cached)."""
    device = parse_device(device, allow_meta=False)
    path = cache_dir() / f"{_cache_key(device_facts(device))}.json"
    if path.exists() and not refresh:
        d = json.loads(path.read_text())
        d["cached"] = True
        return Ceilings(**d)
    c = measure(device, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(c.to_dict(), indent=2))
    os.replace(tmp, path)
    return c
