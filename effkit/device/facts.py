"""What a device is: read through pynvml (NVIDIA), torch, and /proc on CPUs."""
from __future__ import annotations

import os
import platform

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
