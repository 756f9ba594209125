"""The runner on the CPU: statistics from kept samples, OOM, provenance, per-layer paths, errors."""
import json

import pytest
import torch
import torch.nn as nn

import effkit
from effkit.errors import UserInputError
from effkit.run.runner import CompileError, bench
from effkit.timing import Timing, measure

FAST = dict(min_runs=5, min_time_s=0.0)


def test_statistics_from_kept_samples():
    t = Timing(tuple(float(x) for x in (7, 1, 10, 3, 5, 9, 2, 8, 4, 6)), warmup_steps=3, clock="test")
    # sorted 1..10: median (5 + 6) / 2 = 5.5; quartiles by linear interpolation at positions
    # 0.25 * 9 = 2.25 -> 3.25 and 0.75 * 9 = 6.75 -> 7.75, so IQR 4.5; p95 at 8.55 -> 9.55
    assert t.median_s == 5.5 and t.iqr_s == 4.5 and t.min_s == 1.0
    assert t.p95_s == pytest.approx(9.55)
    # population std of 1..10 is sqrt(8.25) = 2.8723; / mean 5.5 = 0.52223
    assert t.cv == pytest.approx(0.52223, abs=1e-5)
    assert "IQR is 82% of the median" in t.spread_warning()
    assert Timing((1.0, 1.0, 1.01), 0, "t").spread_warning() is None


def test_measure_warms_up_then_times():
    calls = []
    r = measure(lambda: calls.append(1), "cpu", min_runs=7, min_time_s=0.0, warmup_min=3)
    assert r.warmup_steps >= 3 and len(r.samples_s) == 7 and len(calls) == r.warmup_steps + 7
    assert r.clock == "perf_counter"


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


def test_bench_point_provenance_and_throughput(tmp_path):
    r = bench(Tiny(), [1, 2], input_shape=(3, 8, 8), json_path=tmp_path / "b.json", csv_path=tmp_path / "b.csv", **FAST)
    assert [p.status for p in r.points] == ["ok", "ok"]
    p = r.points[1]
    assert p.samples_per_s == pytest.approx(2 / p.timing.median_s)
    for key in ("device", "device_name", "torch", "effkit", "threads", "host", "timestamp", "batch", "dtype", "layout",
                "compile", "cuda_graph", "state_start", "state_end"):
        assert key in p.provenance, key
    d = json.loads((tmp_path / "b.json").read_text())
    assert [q["batch"] for q in d["points"]] == [1, 2] and len(d["points"][0]["samples_s"]) >= 5
    assert (tmp_path / "b.csv").read_text().splitlines()[0].startswith("model,batch,status,latency_ms")
    df = r.to_frame()
    assert list(df["batch"]) == [1, 2] and "samples_per_s" in df


def test_per_layer_cpu_times_use_the_tracers_paths():
    m = Tiny()
    r = bench(m, 2, input_shape=(3, 8, 8), **FAST)
    lt = r.points[0].layers
    traced = {l.path for l in effkit.trace(m, (3, 8, 8), batch=2).layers}
    assert {l.path for l in lt.layers} == traced == {"conv", "act", "(root)", "fc"}
    assert lt.total_s > 0 and lt.profiler_overhead > 0 and lt.what == "CPU op self time"


def test_per_layer_train_mode_attributes_backward():
    r = bench(Tiny(), 2, input_shape=(3, 8, 8), mode="train", **FAST)
    phases = {(l.path, l.phase) for l in r.points[0].layers.layers}
    assert ("conv", "backward") in phases and ("fc", "backward") in phases and ("conv", "forward") in phases


def test_oom_is_recorded_and_the_sweep_goes_on(tmp_path):
    class Hungry(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            if x.shape[0] >= 8:  # as a GPU would at this batch
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
            return self.fc(x)

    r = bench(Hungry(), [2, 8, 4], input_shape=(4,), json_path=tmp_path / "s.json", **FAST)
    assert [p.status for p in r.points] == ["ok", "oom", "ok"]
    assert "out of memory" in r.points[1].note and r.points[1].timing is None
    assert [q["status"] for q in json.loads((tmp_path / "s.json").read_text())["points"]] == ["ok", "oom", "ok"]


def test_points_are_written_as_measured(tmp_path):
    class Breaks(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            if x.shape[0] == 3:
                raise ValueError("a bug at batch 3")
            return self.fc(x)

    with pytest.raises(ValueError):
        bench(Breaks(), [1, 2, 3], input_shape=(4,), json_path=tmp_path / "p.json", csv_path=tmp_path / "p.csv", **FAST)
    assert [q["batch"] for q in json.loads((tmp_path / "p.json").read_text())["points"]] == [1, 2]
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 3  # header + the two points done


def test_compile_failure_reported_or_falls_back(monkeypatch):
    def broken_compile(model, **kw):
        def run(*a, **k):
            raise RuntimeError("inductor: no C++ compiler")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.raises(CompileError, match="torch.compile failed for Tiny: RuntimeError: inductor: no C\\+\\+ compiler; pass --fallback-eager"):
        bench(Tiny(), 1, input_shape=(3, 8, 8), compile=True, **FAST)
    r = bench(Tiny(), 1, input_shape=(3, 8, 8), compile=True, fallback_eager=True, layers=False, **FAST)
    assert r.points[0].status == "ok" and r.points[0].note.startswith("compile failed")


class Wide(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.fc = nn.Linear(d, 2)

    def forward(self, x):
        return self.fc(x).relu()


def test_compile_stays_compiled_past_dynamos_recompile_limit(monkeypatch):
    # dynamo keeps 8 compiled versions of a code object (recompile_limit) and then runs it eagerly with a warning: ten
    # models of one class with different shapes, compiled in one process, would have the last two timed eager. Each
    # run must reach the compiler (here a backend that counts its graphs).
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real(model, backend=backend))
    for d in range(4, 14):
        bench(Wide(d), 1, input_shape=(d,), compile=True, layers=False, **FAST)
    assert len(graphs) >= 10


def test_errors():
    with pytest.raises(UserInputError, match="batch must be a positive integer, got 0"):
        bench(Tiny(), [1, 0], input_shape=(3, 8, 8))
    with pytest.raises(UserInputError, match="precision tf32 cannot run on cpu: tf32 is a CUDA tensor-core mode; choose one of: fp32, fp16, bf16, bf16-mixed, fp16-mixed"):
        bench(Tiny(), 1, input_shape=(3, 8, 8), dtype="tf32")
    with pytest.raises(UserInputError, match="unknown precision 'int8'"):
        bench(Tiny(), 1, input_shape=(3, 8, 8), dtype="int8")
    with pytest.raises(UserInputError, match="--cuda-graph needs a CUDA device"):
        bench(Tiny(), 1, input_shape=(3, 8, 8), cuda_graph=True)
    with pytest.raises(UserInputError, match="does not declare its input shape"):
        bench(Tiny(), 1)


def test_cuda_index_out_of_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserInputError, match=r"device 'cuda:3': this machine has 1 CUDA device\(s\): cuda:0"):
        bench(Tiny(), 1, input_shape=(3, 8, 8), device="cuda:3")


@pytest.mark.skipif(torch.cuda.is_available(), reason="message for machines without CUDA")
def test_cuda_without_cuda():
    with pytest.raises(UserInputError, match="device 'cuda': CUDA is not available on this machine; choose cpu$"):
        bench(Tiny(), 1, input_shape=(3, 8, 8), device="cuda")
