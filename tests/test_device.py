"""Device ceilings: arithmetic of the figures, cache, datasheet lookup, CLI."""
import json

import pytest
import torch
from typer.testing import CliRunner

from effkit.cli import app
from effkit.device import ceilings
from effkit.device.datasheet import lookup


def test_gemm_and_copy_figures_from_samples(monkeypatch):
    # stub the timer: every run "takes" 2 ms, so FLOP/s = 2 n^3 / 0.002 and bytes/s = 2 x bytes / 0.002
    monkeypatch.setattr(ceilings, "_samples", lambda fn, device, repeats: [0.002] * repeats)
    flops, s = ceilings.gemm_peak("cpu", "fp32", 64)
    assert flops == 2 * 64**3 / 0.002 and len(s) == 10
    bw, per_kernel = ceilings.copy_bandwidth("cpu", 4 * 1024)
    assert bw == 2 * 4 * 1024 / 0.002  # 1024 fp32 elements read and written
    assert set(per_kernel) == {"copy_", "neg (out of place)", "mul_ (in place)"}


def test_bandwidth_is_the_fastest_copy(monkeypatch):
    times = iter([[0.004] * 3, [0.002] * 3, [0.003] * 3])  # copy_, neg, mul_: neg is fastest
    monkeypatch.setattr(ceilings, "_samples", lambda fn, device, repeats: next(times))
    bw, _ = ceilings.copy_bandwidth("cpu", 4 * 1024, repeats=3)
    assert bw == 2 * 4 * 1024 / 0.002


def test_gemm_measurement_agrees_with_an_independent_timing():
    import time

    n = 256
    a, b = torch.randn(n, n), torch.randn(n, n)
    ours, _ = ceilings.gemm_peak("cpu", "fp32", n, repeats=20)
    ts = []
    for _ in range(20):
        t = time.perf_counter()
        torch.mm(a, b)
        ts.append(time.perf_counter() - t)
    ref = 2 * n**3 / sorted(ts)[len(ts) // 2]
    assert 0.33 < ours / ref < 3  # same order: a noisy 2-core machine, two separate runs


def test_cache_reuse_and_refresh(monkeypatch, tmp_path):
    monkeypatch.setenv("EFFKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(ceilings, "default_sizes", lambda d: {"fp32": 64, "fp16": 32, "bf16": 32, "copy_bytes": 1 << 16})
    a = ceilings.device_ceilings("cpu")
    b = ceilings.device_ceilings("cpu")
    assert not a.cached and b.cached and a.peak_flops == b.peak_flops
    c = ceilings.device_ceilings("cpu", refresh=True)
    assert not c.cached
    assert set(a.peak_flops) == {"fp32", "tf32", "fp16", "bf16"} and a.peak_flops["tf32"] is None
    assert list(tmp_path.glob("ceilings/*.json"))
    # ceilings measured by an earlier method are not reused
    monkeypatch.setattr(ceilings, "METHOD_VERSION", ceilings.METHOD_VERSION + 1)
    assert not ceilings.device_ceilings("cpu").cached


@pytest.mark.parametrize("name,expect", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"), ("NVIDIA H200", "H200 SXM"),
    ("NVIDIA A100-SXM4-80GB", "A100 80GB"), ("NVIDIA A100-SXM4-40GB", "A100 40GB"), ("NVIDIA A10", "A10"),
    ("NVIDIA L4", "L4"), ("NVIDIA L40S", "L40S"), ("Tesla T4", "T4"), ("Tesla V100-SXM2-32GB", "V100"),
    ("NVIDIA GeForce RTX 4090", "RTX 4090"), ("NVIDIA GeForce RTX 3090", "RTX 3090"),
])
def test_datasheet_lookup(name, expect):
    ds = lookup(name)
    assert ds.name == expect and ds.source and ds.bandwidth > 0


def test_datasheet_unknown():
    assert lookup("Some Future GPU") is None


def test_device_cli_json(monkeypatch, tmp_path):
    monkeypatch.setenv("EFFKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(ceilings, "default_sizes", lambda d: {"fp32": 64, "fp16": 32, "bf16": 32, "copy_bytes": 1 << 16})
    res = CliRunner().invoke(app, ["device", "--json", str(tmp_path / "c.json")])
    assert res.exit_code == 0, res.output
    d = json.loads((tmp_path / "c.json").read_text())
    assert d["peak_flops"]["fp32"] > 0 and d["bandwidth_bytes_per_s"] > 0
    assert "peak fp32" in res.output and "FLOP/s" in res.output


def test_device_cli_errors():
    res = CliRunner().invoke(app, ["device", "--device", "gpu0"])
    assert res.exit_code == 2 and "unknown device 'gpu0'; choose one of: cpu, cuda, cuda:N" in res.output
