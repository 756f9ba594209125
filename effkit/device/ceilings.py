"""Device ceilings, measured on the device: peak matrix throughput per dtype (a large GEMM
on random data), memory bandwidth (large device-to-device copies, bytes read + written)
and the per-kernel launch floor (back-to-back launches of a one-element op).

A ceiling is the best *stable* rate, not a median: each figure is measured in rounds of
`repeats` timed runs (through effkit.timing's discipline), each round gives its best rate,
and rounds go on until two consecutive best rates agree within `STABLE_TOL`. The rounds'
best rates are kept and their spread recorded.

Ceilings are cached per device + driver + torch version and the measurement and counting
versions, but only when they can be trusted: measured while no other process used more
than a quarter of the CPUs (or held the GPU) and with every figure settled. Otherwise they
serve the run that measured them, a warning says why they were not kept, and `--ceilings`
(a datasheet name or a JSON file) gives fixed roofs instead.
"""
from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch

from effkit._version import COUNTING_VERSION, MEASUREMENT_VERSION, __version__
from effkit.config import COMPUTE_DTYPES, DTYPES, compute_dtype_unsupported, tf32_switches
from effkit.device.datasheet import lookup
from effkit.device.facts import LoadMonitor, device_facts, load_issues
from effkit.devices import parse_device
from effkit.files import atomic_write_json, read_json_cache
from effkit.paths import cache_root
from effkit.timing import measure as measure_steps

log = logging.getLogger("effkit")

STABLE_TOL = 0.02  # consecutive rounds' best rates must agree within this fraction
MAX_ROUNDS = 6
SUSTAIN_WARM_S = 1.0  # GPU GEMMs: seconds of load before timing, for the clocks to settle
SUSTAIN_ROUND_S = 0.2  # GPU GEMMs: each round lasts at least this long


@dataclass(frozen=True)
class Ceilings:
    device: str
    name: str
    peak_flops: dict  # dtype -> FLOP/s measured (None: not supported here)
    bandwidth_bytes_per_s: float
    samples: dict  # dtype or "copy: KERNEL" -> raw seconds per run, every round
    sizes: dict  # what was measured: GEMM n per dtype, copy bytes
    facts: dict
    datasheet: dict | None  # name, flops, bandwidth, source
    measured_at: str
    versions: dict = field(default_factory=dict)
    cached: bool = False
    rounds: dict = field(default_factory=dict)  # figure -> best rate of each round
    launch_floor_s: float | None = None  # seconds per kernel launched back to back (eager)
    load: dict = field(default_factory=dict)  # what other processes did while measuring
    issues: tuple = ()  # why these ceilings cannot be trusted (empty: they can)

    @property
    def trusted(self) -> bool:
        return not self.issues

    def spread(self, figure: str) -> float | None:
        """(best - worst) / best over the rounds' best rates of one figure."""
        r = [x for x in self.rounds.get(figure) or [] if x]
        return (max(r) - min(r)) / max(r) if r else None

    def to_frame(self) -> pd.DataFrame:
        ds = self.datasheet or {}
        rows = [{"quantity": f"peak {d}", "measured": v, "datasheet": (ds.get("flops") or {}).get(d), "unit": "FLOP/s", "spread": self.spread(d)}
                for d, v in self.peak_flops.items()]
        rows.append({"quantity": "memory bandwidth", "measured": self.bandwidth_bytes_per_s, "datasheet": ds.get("bandwidth"), "unit": "bytes/s",
                     "spread": self.spread("bandwidth")})
        rows.append({"quantity": "launch floor", "measured": self.launch_floor_s, "datasheet": None, "unit": "s per kernel",
                     "spread": self.spread("launch")})
        df = pd.DataFrame(rows)
        df["measured_over_datasheet"] = df["measured"] / df["datasheet"]
        return df

    def to_dict(self) -> dict:
        d = asdict(self)
        d["issues"] = list(self.issues)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Ceilings":
        d = dict(d)
        d["issues"] = tuple(d.get("issues") or ())
        return cls(**d)


def cache_dir() -> Path:
    return cache_root() / "ceilings"


# Bumped whenever what is measured changes, so cached ceilings measured the old way are not reused.
METHOD_VERSION = MEASUREMENT_VERSION


def _cache_key(facts: dict) -> str:
    raw = (f"{facts.get('name')}-{facts.get('driver', 'nodriver')}-torch{torch.__version__}-{facts.get('cores', '')}"
           f"-m{METHOD_VERSION}-c{COUNTING_VERSION}")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw)


def cache_path(device: str) -> Path:
    return cache_dir() / f"{_cache_key(device_facts(device))}.json"


def _samples(fn, device: str, repeats: int) -> list[float]:
    # effkit's one timing discipline: warm up until settled, then `repeats` timed runs
    return list(measure_steps(fn, device, min_runs=repeats, min_time_s=0.0, max_runs=repeats).samples_s)


def best_stable(fn, device: str, work: float, repeats: int = 10, tol: float = STABLE_TOL, max_rounds: int = MAX_ROUNDS):
    """(rate, rounds' best rates, all samples): `work` per second at the best stable rate, i.e. once two
    consecutive rounds of `repeats` runs give best rates within `tol` of each other."""
    rounds, samples = [], []
    for _ in range(max_rounds):
        s = _samples(fn, device, repeats)
        samples += s
        rounds.append(work / min(s))
        if len(rounds) >= 2 and abs(rounds[-1] - rounds[-2]) <= tol * max(rounds[-1], rounds[-2]):
            break
    return max(rounds[-2:]), rounds, samples


def settled(rounds: list, tol: float = STABLE_TOL) -> bool:
    return len(rounds) >= 2 and abs(rounds[-1] - rounds[-2]) <= tol * max(rounds[-1], rounds[-2])


def gemm_peak(device: str, dtype: str, n: int, repeats: int = 10) -> tuple[float, list[float], list[float]]:
    """FLOP/s of an n x n x n matrix product on random data (2 n^3 FLOPs) at its best stable rate."""
    dev = torch.device(device)
    tdtype = DTYPES["fp32" if dtype == "tf32" else dtype]
    a = torch.randn(n, n, device=dev, dtype=tdtype)
    b = torch.randn(n, n, device=dev, dtype=tdtype)
    out = torch.empty(n, n, device=dev, dtype=tdtype)
    step = lambda: torch.mm(a, b, out=out)  # noqa: E731
    with tf32_switches(dtype == "tf32", dtype == "tf32"):
        if dev.type != "cuda":
            return best_stable(step, device, 2 * n**3, repeats)
        # A GPU's clocks follow its power draw: a few milliseconds of tensor-core GEMMs run at boost clocks that
        # a model's loop does not keep (on an H200, bf16 read 776 TFLOP/s cold and 672-681 TFLOP/s on the next two
        # runs, 13 % apart). So run GEMMs until the clocks have settled under the load, and time rounds long enough
        # to be at those clocks: the ceiling is the sustained rate.
        t0, done = time.perf_counter(), 0
        while time.perf_counter() - t0 < SUSTAIN_WARM_S:
            for _ in range(10):
                step()
            torch.cuda.synchronize(dev)
            done += 10
        per_step = (time.perf_counter() - t0) / done
        return best_stable(step, device, 2 * n**3, max(repeats, math.ceil(SUSTAIN_ROUND_S / per_step)))


BANDWIDTH_KERNELS = {
    # three ways to stream a large buffer through DRAM, each counting bytes read + written;
    # the ceiling is the fastest (on an H200 the memcpy path reads ~3 % below elementwise kernels)
    "copy_": lambda src, dst: dst.copy_(src),  # cudaMemcpyAsync device-to-device (memcpy on the CPU)
    "neg (out of place)": lambda src, dst: torch.neg(src, out=dst),  # an elementwise kernel: read src, write dst
    "mul_ (in place)": lambda src, dst: dst.mul_(1.0),  # read and write the same buffer
}


def copy_bandwidth(device: str, nbytes: int, repeats: int = 10) -> tuple[float, dict, dict]:
    """Bytes/s of large device-to-device copies of `nbytes` (read + written): the fastest of BANDWIDTH_KERNELS
    at its best stable rate; returns it, each kernel's rounds and each kernel's samples."""
    dev = torch.device(device)
    src = torch.randn(nbytes // 4, device=dev)
    dst = torch.randn_like(src)
    moved = 2 * src.numel() * 4
    rounds, samples = {}, {}
    for name, k in BANDWIDTH_KERNELS.items():
        _, rounds[name], samples[name] = best_stable(lambda k=k: k(src, dst), device, moved, repeats)
    best = max(rounds, key=lambda k: max(rounds[k][-2:]))
    return max(rounds[best][-2:]), rounds, samples


LAUNCH_BURST = 200


def launch_floor(device: str, repeats: int = 10) -> tuple[float, list[float]]:
    """Seconds per launch of a one-element op issued back to back (a kernel on CUDA, a dispatch on the CPU):
    no layer of a model that launches k kernels runs in less than k times this, eager."""
    x = torch.zeros(1, device=torch.device(device))

    def burst():
        for _ in range(LAUNCH_BURST):
            x.add_(1.0)

    rate, rounds, _ = best_stable(burst, device, LAUNCH_BURST, repeats)
    return 1.0 / rate, rounds


def default_sizes(device: str) -> dict:
    if device == "cpu":  # seconds, not minutes, on a laptop; low precision runs slowly on many CPUs
        return {"fp32": 1024, "fp16": 512, "bf16": 512, "copy_bytes": 256 * 2**20}
    return {"fp32": 8192, "tf32": 8192, "fp16": 8192, "bf16": 8192, "copy_bytes": 2 * 2**30}


def measure(device: str = "cpu", sizes: dict | None = None, repeats: int = 10, progress=None) -> Ceilings:
    """Measure the ceilings of `device` now (no cache), watching what else the machine does meanwhile."""
    device = parse_device(device, allow_meta=False)
    facts = device_facts(device)
    sizes = {**default_sizes(device), **(sizes or {})}
    peak, samples, rounds = {}, {}, {}
    say = progress or (lambda m: None)
    with LoadMonitor(device, watch_at_least=True) as monitor:
        for d in COMPUTE_DTYPES:
            if d not in sizes or compute_dtype_unsupported(device, d):
                peak[d] = None
                continue
            say(f"GEMM {d} {sizes[d]}^3")
            peak[d], rounds[d], samples[d] = gemm_peak(device, d, sizes[d], repeats=repeats)
        say(f"copy {sizes['copy_bytes'] / 2**20:.0f} MiB")
        bw, copy_rounds, copies = copy_bandwidth(device, sizes["copy_bytes"], repeats=repeats)
        rounds["bandwidth"] = copy_rounds[max(copy_rounds, key=lambda k: max(copy_rounds[k][-2:]))]
        samples.update({f"copy: {k}": v for k, v in copies.items()})
        say("launch floor")
        floor, rounds["launch"] = launch_floor(device, repeats)
    issues = load_issues(monitor.result)
    unsettled = [f for f, r in rounds.items() if not settled(r)]
    if unsettled:
        issues.append("did not settle within " + ", ".join(f"{f} ({100 * (max(r) - min(r)) / max(r):.0f} % apart over {len(r)} rounds)"
                                                         for f, r in ((f, rounds[f]) for f in unsettled))
                      + f": consecutive best rates must agree within {100 * STABLE_TOL:g} %")
    ds = lookup(facts["name"]) if device != "cpu" else None
    return Ceilings(device, facts["name"], peak, bw, samples, sizes, facts,
                    {"name": ds.name, "flops": ds.flops, "bandwidth": ds.bandwidth, "source": ds.source} if ds else None,
                    time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    {"torch": torch.__version__, "cuda": torch.version.cuda, "effkit": __version__, "measurement": METHOD_VERSION},
                    False, rounds, floor, monitor.result, tuple(issues))


def device_ceilings(device: str = "cpu", refresh: bool = False, progress=None) -> Ceilings:
    """Ceilings of `device`: from the cache unless `refresh`; measured ones are cached only if trusted."""
    device = parse_device(device, allow_meta=False)
    path = cache_path(device)
    d = None if refresh else read_json_cache(path)
    if d is not None:
        try:
            return Ceilings.from_dict({**d, "cached": True})
        except TypeError:  # written by another version of this class: measure again
            pass
    c = measure(device, progress=progress)
    if c.trusted:
        atomic_write_json(path, c.to_dict())
    else:
        log.warning("the ceilings just measured on %s are not cached: %s. They serve this run only; measure again on an idle machine "
                    "(effkit device --refresh) or give --ceilings a datasheet name or a ceilings JSON file", c.name, "; ".join(c.issues))
    return c
