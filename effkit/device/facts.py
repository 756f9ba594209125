"""What a device is: read through pynvml (NVIDIA), torch, and /proc on CPUs."""
from __future__ import annotations

import os
import platform
import time

import torch


def cpu_facts() -> dict:
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"kind": "cpu", "name": model or platform.machine(), "cores": os.cpu_count(),
            "threads_in_use": torch.get_num_threads(), "machine": platform.machine(), "llc_bytes": _last_level_cache()}


def _last_level_cache() -> int | None:
    """Bytes of the CPU's largest cache level, from sysfs (None where it is not exposed)."""
    import glob

    best = None
    for d in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*"):
        try:
            level = int(open(f"{d}/level").read())
            size = open(f"{d}/size").read().strip()
        except (OSError, ValueError):
            continue
        mult = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(size[-1], 1)
        n = int(size.rstrip("KMG")) * mult
        if best is None or level > best[0]:
            best = (level, n)
    return best[1] if best else None


def gpu_facts(index: int) -> dict:
    p = torch.cuda.get_device_properties(index)
    facts = {"kind": "cuda", "index": index, "name": p.name, "capability": f"{p.major}.{p.minor}",
             "multiprocessors": p.multi_processor_count, "total_memory_bytes": p.total_memory,
             "l2_cache_bytes": getattr(p, "L2_cache_size", None), "cuda": torch.version.cuda}
    facts.update(nvml_facts(index))
    return facts


def nvml_facts(index: int) -> dict:
    """Clocks, power, memory bus, driver through NVML; {} where NVML is not there."""
    try:
        import pynvml
    except ImportError:
        return {"nvml": "pynvml not importable"}
    try:
        pynvml.nvmlInit()
    except Exception as e:  # no driver, no NVML
        return {"nvml": f"unavailable: {e}"}
    out: dict = {}
    try:
        h = pynvml.nvmlDeviceGetHandleByIndex(index)
        reads = {
            "driver": lambda: pynvml.nvmlSystemGetDriverVersion(),
            "sm_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
            "sm_clock_max_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM),
            "mem_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM),
            "mem_clock_max_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM),
            "memory_bus_width_bits": lambda: pynvml.nvmlDeviceGetMemoryBusWidth(h),
            "power_limit_w": lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000,
            "power_draw_w": lambda: pynvml.nvmlDeviceGetPowerUsage(h) / 1000,
            "temperature_c": lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
            "memory_total_bytes": lambda: pynvml.nvmlDeviceGetMemoryInfo(h).total,
        }
        for key, read in reads.items():
            try:
                v = read()
                out[key] = v.decode() if isinstance(v, bytes) else v
            except Exception:  # a field this driver or part does not report
                out[key] = None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
    return out


def device_facts(device: str) -> dict:
    if device == "cpu":
        return cpu_facts()
    return gpu_facts(torch.device(device).index or 0)


def live_state(device: str) -> dict:
    """Clocks and power now (for provenance at the start and end of a measurement)."""
    if device == "cpu":
        return {}
    f = nvml_facts(torch.device(device).index or 0)
    return {k: f.get(k) for k in ("sm_clock_mhz", "mem_clock_mhz", "power_draw_w", "temperature_c")}


# --------------------------------------------------------------------------- host load
def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies over all CPUs since boot, from /proc/stat; None where unreadable."""
    try:
        with open("/proc/stat") as f:
            parts = f.readline().split()
    except OSError:
        return None
    if not parts or parts[0] != "cpu":
        return None
    v = [int(x) for x in parts[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    return sum(v[:8]) - idle, sum(v[:8])


def cpu_governor() -> str | None:
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor") as f:
            return f.read().strip()
    except OSError:
        return None


BUSY_PCT = 10  # NVML utilisation above this, with our own work finished, is someone else's work


def gpu_load(index: int, settle_s: float = 1.2) -> dict:
    """Other processes on the GPU and its utilisation now, through NVML ({} where NVML is not there); our own
    kernels are waited out (up to `settle_s`) before a busy GPU is believed busy."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no NVML: nothing to say
        return {}
    try:
        h = pynvml.nvmlDeviceGetHandleByIndex(index)
        procs = pynvml.nvmlDeviceGetComputeRunningProcesses(h)
        pids = [p.pid for p in procs]
        # in a container NVML may report host pids, so our own process need not appear under its pid: then one of the
        # processes listed is us (we hold a CUDA context by now)
        others = len([p for p in pids if p != os.getpid()]) - (0 if os.getpid() in pids or not pids else 1)
        util = pynvml.nvmlDeviceGetUtilizationRates(h).gpu
        out = {"gpu_other_processes": max(0, others), "gpu_utilization_pct": util}
        if util > BUSY_PCT and settle_s > 0:
            # NVML's figure is the share of its last sample period (1/6 s to 1 s) in which any kernel ran, ours
            # included: wait for our own work to finish and that period to pass, then ask again. What is still
            # busy then is someone else's work.
            out["gpu_utilization_pct_with_own_work"] = util
            if torch.cuda.is_initialized():
                torch.cuda.synchronize(index)
            deadline = time.perf_counter() + settle_s
            while util > BUSY_PCT and time.perf_counter() < deadline:
                time.sleep(0.1)
                util = pynvml.nvmlDeviceGetUtilizationRates(h).gpu
            out["gpu_utilization_pct"] = util
        return out
    except Exception:  # a field this driver does not report
        return {}
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


LOAD_LIMIT = 0.25  # other processes using more than this share of all CPUs is load
MIN_WATCH_S = 0.25  # blocks shorter than this are too short to measure others' CPU use


class LoadMonitor:
    """What other processes did while a block ran: the share of all CPUs they used (from /proc/stat,
    minus this process's own CPU time), the load average, the CPU governor, other GPU processes."""

    def __init__(self, device: str = "cpu", watch_at_least: bool = False):
        self.device = device
        self.watch_at_least = watch_at_least  # keep watching until MIN_WATCH_S have passed, so a short block still gets a figure
        self.result: dict = {}

    def __enter__(self):
        self._j0, self._self0, self._t0 = _cpu_jiffies(), _self_cpu_s(), time.perf_counter()
        self._gpu0 = gpu_load(torch.device(self.device).index or 0) if self.device.startswith("cuda") else {}
        return self

    def __exit__(self, *exc):
        if self.watch_at_least and exc[0] is None:
            time.sleep(max(0.0, MIN_WATCH_S - (time.perf_counter() - self._t0)))
        j1, self1, wall = _cpu_jiffies(), _self_cpu_s(), time.perf_counter() - self._t0
        out: dict = {"load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None, "cpu_governor": cpu_governor(),
                     "cpus": os.cpu_count()}
        if self._j0 and j1 and wall >= MIN_WATCH_S:  # /proc/stat ticks every 10 ms: shorter blocks cannot be told apart
            tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
            busy = (j1[0] - self._j0[0]) / tick
            capacity = wall * (os.cpu_count() or 1)
            out["others_cpu_fraction"] = round(min(1.0, max(0.0, busy - (self1 - self._self0)) / capacity), 4)
        if self._gpu0:
            out.update({f"{k}_at_start": v for k, v in self._gpu0.items()})
        self.result = out
        return False


def _self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def load_issues(load: dict) -> list[str]:
    """What in a LoadMonitor result makes a measurement untrustworthy, in words."""
    out = []
    frac = load.get("others_cpu_fraction")
    if frac is not None and frac > LOAD_LIMIT:
        out.append(f"other processes used {100 * frac:.0f} % of the {load.get('cpus')} CPUs while measuring")
    if load.get("gpu_other_processes_at_start"):
        out.append(f"{load['gpu_other_processes_at_start']} other process(es) held the GPU")
    util = load.get("gpu_utilization_pct_at_start")
    if util is not None and util > BUSY_PCT:
        out.append(f"the GPU was {util} % busy before measuring started")
    return out
