"""Trustworthy numbers: noise shown, ladders that add up or say why not, ceilings that hold, files that survive,
fusion blocks found by structure. Every number below is derived by hand in its comment."""
import json
import re
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from typer.testing import CliRunner

import effkit
from effkit.analysis import LayerCost, ModelAnalysis, analyse_layers
from effkit.cli import app
from effkit.device import ceilings
from effkit.device.roofs import Roof
from effkit.errors import UserInputError
from effkit.profiling import ProfileOptions, run_profile
from effkit.report.headline import headline, ladder_sentence
from effkit.report.record import RunRecord
from effkit.report.run_dir import rebuild
from effkit.timing import Timing, measure
from tests.test_report import TinyNet

FAST = dict(input_shape=(3, 16, 16), min_time_s=0.0)


@pytest.fixture(autouse=True)
def _small_ceilings(monkeypatch, tmp_path):
    """Ceilings measured on tiny sizes into a fresh cache (fast), as a user's first run would."""
    monkeypatch.setenv("EFFKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(ceilings, "default_sizes", lambda d: {"fp32": 64, "fp16": 32, "bf16": 32, "copy_bytes": 1 << 16})


def _hogs():
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]


# --------------------------------------------------------------------------- 1. noise is measured and shown
def test_timing_extends_until_the_median_is_pinned_or_the_cap():
    t = measure(lambda: None, "cpu", min_runs=10, min_time_s=0.0, ci_target=0.5)
    assert t.stopped_by == "ci"  # a no-op's median is pinned within 50 % at once
    rng = __import__("random").Random(0)  # one generator: the sleeps differ (a fresh Random(0) each call slept 1.69 ms every time)
    t = measure(lambda: time.sleep(0.002 * rng.random()), "cpu", min_runs=10, min_time_s=0.0, ci_target=1e-4, max_time_s=0.3)
    assert t.stopped_by == "time cap" and t.ci_target == 1e-4  # sleeps of 0-2 ms never agree to 0.01 %
    assert t.summary()["ci_low_ms"] <= t.summary()["median_ms"] <= t.summary()["ci_high_ms"]


def test_median_interval_by_hand():
    # n = 100 samples 1..100: ranks 50 -/+ 1.96 x 10 / 2 = 40.2 .. 59.8 -> order statistics 40 and 60
    t = Timing(tuple(float(x) for x in range(1, 101)), 0, "t")
    assert t.ci_s == (40.0, 60.0) and t.ci_rel == pytest.approx(10 / 50.5)


def test_a_background_load_brings_the_warning_and_its_ceilings_are_not_kept(tmp_path):
    hogs = _hogs()
    try:
        time.sleep(0.5)
        run = effkit.profile(TinyNet(), out=tmp_path / "r", input_shape=(3, 16, 16), min_time_s=0.5)
    finally:
        for h in hogs:
            h.kill()
    rec = run.record
    env = rec.models[0].points[0].environment
    assert env.load["others_cpu_fraction"] > 0.25 and "load_average_1m" in env.load and "cpu_governor" in env.load
    lead = " ".join(headline(run.analyses[0], env))
    assert "Measured under load: other processes used" in lead
    assert any("not cached" in w for w in rec.warnings)  # the ceilings it measured were not kept
    assert not list((tmp_path / "cache").glob("ceilings/*.json"))
    html = (run.folder / "index.html").read_text()
    assert 'class="banner"' in html and "Measured under load" in html


def test_spread_is_in_every_output(tmp_path):
    run = effkit.profile(TinyNet(), out=tmp_path / "r", **FAST)
    row = json.loads((run.folder / "summary.json").read_text())["summary"][0]
    assert row["latency_iqr_ms"] is not None and row["latency_cv"] is not None and row["kernels_iqr_ms"] is not None
    csv = (run.folder / "summary.csv").read_text().splitlines()[0]
    assert "latency_iqr_ms" in csv and "latency_cv" in csv
    html = (run.folder / "index.html").read_text()
    # the HTML summary shows the latency with its spread (median ± IQR/2, rounded to it), the headline the IQR and CV
    assert "latency (ms, ± IQR/2)" in html and re.search(r"\d ± \d", html) and "CV" in html
    res = CliRunner().invoke(app, ["profile", "resnet18", "--resolution", "32", "--min-time", "0", "--out", str(tmp_path / "cli")])
    assert res.exit_code == 0 and "IQR (ms)" in res.output and "CV" in res.output, res.output


def test_noisy_timing_is_named_with_a_cause():
    roof = Roof("toy", "fp32", 100.0, 10.0, "hand-made")
    layers = analyse_layers([LayerCost("a", "Conv2d", "dense conv", 1000, 50)], roof, {"a": (12.5, 1)})
    # median 20 s, IQR 4 s: 20 % of the median, over the 10 % limit
    a = ModelAnalysis("toy", 1, "fp32", "d", roof, tuple(layers), 1000, 500, 1, 1, 20.0, 12.5, None, latency_iqr_s=4.0, latency_cv=0.15,
                      latency_samples=30)
    lead = headline(a)
    assert any(h.startswith("Noisy timing: the IQR of the end-to-end samples is 20 % of the median, CV 0.15 over 30 samples") for h in lead)


# --------------------------------------------------------------------------- 2. the ladder adds up, or says why not
def test_a_ladder_running_backwards_is_a_measurement_problem_not_negative_overhead():
    roof = Roof("toy", "fp32", 100.0, 10.0, "hand-made")
    layers = analyse_layers([LayerCost("a", "Conv2d", "dense conv", 1000, 50)], roof, {"a": (40.0, 1)})
    # ideal 10 s, waterline max(10, 5) = 10 s, kernels 40 s, end-to-end 20 s: kernels above end-to-end by 100 %
    a = ModelAnalysis("toy", 1, "fp32", "d", roof, tuple(layers), 1000, 500, 1, 1, 20.0, 40.0, None, latency_iqr_s=1.0, kernels_iqr_s=1.0)
    (p,) = a.ladder_problems()
    assert p["rung"] == "kernel sum above end-to-end" and p["excess"] == pytest.approx(1.0) and p["beyond_spread"]  # 20 s > 1 + 1 s
    s = ladder_sentence(a)
    assert "below the kernel sum: a measurement problem" in s and "×0.50" not in s and "launches, Python" not in s
    assert any(h.startswith("Measurement problem: kernel sum above end-to-end by 100.0 % (beyond the measured spread)") for h in headline(a))


def test_cpu_kernel_times_are_corrected_for_the_profiler():
    from effkit.run.layers import profile_layers

    m = nn.Sequential(nn.Linear(64, 64), nn.ReLU())
    x = torch.randn(8, 64)
    step = lambda: m(x)  # noqa: E731
    lt = profile_layers(m, step, "cpu", unprofiled_step_s=1e-9)  # as if the unprofiled step took no time
    # correction = min(1, unprofiled / profiled) = 1e-9 / (profiled wall) < 1; every layer and every step total scaled by it
    assert lt.correction == pytest.approx(1e-9 / lt.profiled_step_s) and lt.total_s == pytest.approx(sum(lt.step_totals_s) / lt.steps)
    assert lt.total_s < 1e-8
    slow = profile_layers(m, step, "cpu", unprofiled_step_s=10.0)  # the unprofiled step slower than the profiled: no correction
    assert slow.correction == 1.0
    # each layer's per-step times are kept (a diff tests them): their mean is the layer's time, and per step they add
    # up to that step's total
    assert all(len(l.step_s) == slow.steps and sum(l.step_s) / slow.steps == pytest.approx(l.time_s) for l in slow.layers)
    for i, total in enumerate(slow.step_totals_s):
        assert sum(l.step_s[i] for l in slow.layers) == pytest.approx(total)


def test_zero_work_layers_are_not_compute_bound():
    roof = Roof("toy", "fp32", 100.0, 10.0, "hand-made")
    (l,) = analyse_layers([LayerCost("drop", "Dropout", "elementwise", 0, 0)], roof)
    assert (l.roofline_s, l.bound) == (0.0, "none")


def test_the_waterline_with_and_without_the_launch_floor():
    roof = Roof("toy", "fp32", 100.0, 10.0, "hand-made", launch_floor_s=2.0)
    costs = [LayerCost("a", "Conv2d", "dense conv", 1000, 50, ops=1),  # roofline 10 s; 1 op x 2 s = 2 s -> 10 s
             LayerCost("b", "ReLU", "elementwise", 10, 30, ops=4)]  # roofline 3 s; 4 ops x 2 s = 8 s -> 8 s
    a = ModelAnalysis("t", 1, "fp32", "d", roof, tuple(analyse_layers(costs, roof)), 1010, 500, 1, 1, None, None, None)
    assert a.waterline_s == 13.0 and a.waterline_floor_s == 18.0
    assert a.summary_row()["waterline_with_launch_floor_ms"] == 18000.0 and a.summary_row()["launch_floor_us"] == 2e6


# --------------------------------------------------------------------------- 3. ceilings hold (more in test_device.py)
def test_profile_takes_refresh(tmp_path, monkeypatch):
    monkeypatch.setattr(ceilings, "_samples", lambda fn, device, repeats: [0.002] * repeats)  # settled at once: trusted and cached
    calls = []
    real = ceilings.measure
    monkeypatch.setattr(ceilings, "measure", lambda *a, **k: calls.append(1) or real(*a, **k))
    ref, cfg = effkit.resolve(TinyNet(), (3, 16, 16)), effkit.RunConfig(min_time_s=0.0)
    run_profile(ref, cfg, ProfileOptions(out=tmp_path / "a"))
    run_profile(ref, cfg, ProfileOptions(out=tmp_path / "b"))
    assert len(calls) == 1  # the second run read the cache
    run_profile(ref, cfg, ProfileOptions(out=tmp_path / "c", refresh=True))
    assert len(calls) == 2  # --refresh measured again
    res = CliRunner().invoke(app, ["profile", "resnet18", "--resolution", "32", "--min-time", "0", "--refresh", "--out", str(tmp_path / "d")])
    assert res.exit_code == 0 and len(calls) == 3, res.output


def test_cpu_measurements_against_a_gpu_datasheet_are_refused(tmp_path):
    with pytest.raises(UserInputError, match=r"--ceilings h100 gives a GPU's roofs \(H100 SXM \(datasheet\)\) but measuring runs on cpu.*"
                                             r"--mismatched-ceilings"):
        effkit.profile(TinyNet(), ceilings="h100", measure=True, out=tmp_path / "x", **FAST)
    opts = ProfileOptions(out=tmp_path / "y", ceilings="h100", measure=True, mismatched_ceilings=True)
    run = run_profile(effkit.resolve(TinyNet(), (3, 16, 16)), effkit.RunConfig(min_time_s=0.0), opts)
    assert run.analyses[0].latency_s and run.analyses[0].roof.peak_flops == 67e12  # H100 SXM fp32


def test_gpu_measurements_against_another_gpus_measured_ceilings_are_refused(tmp_path, monkeypatch):
    """Run 52's example profiles were asked for an H200 and ran on an H100 against the H200's ceilings file without a
    word (804 TFLOP/s and 4.24 TB/s roofs for an H100's times). A ceilings file effkit measured names its GPU; a
    measured run on another GPU is refused unless asked, a datasheet name or a hand-written file is not checked."""
    import json as _json

    import effkit.profiling as profiling
    from types import SimpleNamespace

    from effkit.device.roofs import roof_from_spec

    h200 = str(Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "h200" / "ceilings.json")  # effkit measured it
    hand = tmp_path / "hand.json"
    hand.write_text(_json.dumps({"name": "my gpu", "peak_flops": {"bf16": 8.0e14}, "bandwidth_bytes_per_s": 4.2e12}))
    monkeypatch.setattr(profiling, "_cuda_name", lambda device: "NVIDIA H100 80GB HBM3")
    cuda = SimpleNamespace(device="cuda")

    def check(spec, measure=True, **kw):
        profiling._check_roof_matches(roof_from_spec(spec, "bf16"), ProfileOptions(out=tmp_path / "x", ceilings=spec, **kw), cuda, measure)

    with pytest.raises(UserInputError, match=r"--ceilings .*h200/ceilings.json was measured on NVIDIA H200 but measuring runs on NVIDIA H100 "
                                             r"80GB HBM3 \(cuda\).*--mismatched-ceilings"):
        check(h200)
    check(h200, mismatched_ceilings=True)
    check(h200, measure=False)  # counts only: no times to compare
    check(str(hand))
    check("h100")
    # counts only, but a fusion check follows, which times: refused too, before anything runs
    ref, cfg = effkit.resolve(TinyNet(), (3, 16, 16)), effkit.RunConfig(device="cuda", min_time_s=0.0)
    with pytest.raises(UserInputError, match="was measured on NVIDIA H200 but measuring runs on NVIDIA H100"):
        run_profile(ref, cfg, ProfileOptions(out=tmp_path / "f", ceilings=h200, measure=False, fusion_check=True))
    assert not (tmp_path / "f").exists()
    run_profile(ref, cfg, ProfileOptions(out=tmp_path / "g", ceilings=h200, measure=False))  # counts only, no fusion check: allowed
    monkeypatch.setattr(profiling, "_cuda_name", lambda device: "NVIDIA H200")  # the same GPU (names compared as torch gives them)
    check(h200)


# --------------------------------------------------------------------------- 4. files that survive
def test_a_folder_holding_a_run_is_refused_unless_forced(tmp_path):
    effkit.profile(TinyNet(), out=tmp_path / "r", **FAST)
    with pytest.raises(UserInputError, match=r"folder '.*r' holds a profile of TinyNet \(fp32, infer, complete, .*\); choose another --out, "
                                             r"or pass --force"):
        effkit.profile(TinyNet(), out=tmp_path / "r", **FAST)
    run = run_profile(effkit.resolve(TinyNet(), (3, 16, 16)), effkit.RunConfig(min_time_s=0.0), ProfileOptions(out=tmp_path / "r", force=True))
    assert run.record.complete


def test_two_concurrent_runs_into_one_folder_one_refuses(tmp_path):
    folder = tmp_path / "shared"
    code = ("import effkit, sys; from tests.test_report import TinyNet; "
            f"effkit.profile(TinyNet(), out={str(folder)!r}, input_shape=(3, 16, 16), min_time_s=3.0)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    other = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while not (folder / ".effkit.lock").exists() and time.time() < deadline:
            time.sleep(0.05)
        with pytest.raises(UserInputError, match=r"is in use by another effkit run \(pid \d+\)"):
            effkit.profile(TinyNet(), out=folder, **FAST)
    finally:
        assert other.wait(timeout=120) == 0, other.stderr.read().decode()[-2000:]
    assert RunRecord.load(folder).complete  # the first run finished untouched


def test_an_interrupted_profile_leaves_a_record_that_rebuilds(tmp_path, monkeypatch):
    from effkit.run import runner

    real = runner._Session.point

    def point(self, b):
        if b == 4:
            raise KeyboardInterrupt
        return real(self, b)

    monkeypatch.setattr(runner._Session, "point", point)
    with pytest.raises(KeyboardInterrupt):
        effkit.profile(TinyNet(), batch=[1, 4], out=tmp_path / "r", **FAST)
    rec = RunRecord.load(tmp_path / "r")
    assert rec.status == "incomplete" and "interrupted (KeyboardInterrupt) after 1 of 2 measured point(s)" in rec.notes
    assert [p.batch for p in rec.models[0].points] == [1] and rec.analyses[0].latency_s and rec.analyses[1].latency_s is None
    (tmp_path / "r" / "index.html").unlink(missing_ok=True)
    res = CliRunner().invoke(app, ["report", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "r" / "index.html").read_text()
    assert "(incomplete run)" in html and "Incomplete run: interrupted (KeyboardInterrupt)" in html


def one_line_error(res, pattern):
    import re

    assert res.exit_code == 2, res.output
    lines = [l for l in res.output.splitlines() if l.strip() and not l.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in res.output, res.output
    assert re.search(pattern, lines[0]), lines[0]


def test_input_problems_are_one_line_errors(tmp_path):
    run = CliRunner().invoke
    (tmp_path / "file").write_text("x")
    one_line_error(run(app, ["profile", "resnet18", "--resolution", "32", "--out", str(tmp_path / "file")]),
                   r"output folder '.*file' is an existing file; give a folder")
    one_line_error(run(app, ["profile", "resnet18", "--resolution", "32", "--out", "/proc/version/out"]),
                   r"cannot create output folder '/proc/version/out'")
    effkit.profile(TinyNet(), out=tmp_path / "r", **FAST)
    text = (tmp_path / "r" / "run.json").read_text()
    (tmp_path / "r" / "run.json").write_text(text[: len(text) // 2])
    one_line_error(run(app, ["report", str(tmp_path / "r")]), r"run record '.*run.json' is truncated or not valid JSON")
    one_line_error(run(app, ["profile", "resnet18", "--resolution", "100000", "--min-time", "0", "--out", str(tmp_path / "huge")]),
                   r"out of memory at every batch size \(1\) of resnet18 on cpu: .*try a smaller --batch or --resolution")
    one_line_error(run(app, ["profile", "resnet18", "--ceilings", str(tmp_path / "nope.json")]), r"ceilings file '.*nope.json' does not exist")


# --------------------------------------------------------------------------- 5. fusion blocks found by structure
@pytest.mark.parametrize("model,blocks", [
    ("resnet50", 12),  # 3 + 4 + 6 + 3 = 16 bottlenecks; the first of each stage adds a projection of its input, not its input: 16 - 4
    ("convnext_tiny", 18),  # 3 + 3 + 9 + 3 CNBlocks, each adding its input; downsampling layers add nothing
    ("mobilenet_v2", 10),  # (t, c, n, s) rows repeat n times; stride-1 equal-width repeats: 0 + 1 + 2 + 3 + 2 + 2 + 0
    ("vit_b_16", 12),  # one per encoder block; the encoder's position-embedding add is input + parameter, not a block
])
def test_block_counts(model, blocks):
    t = effkit.trace(model, device="meta")
    assert len(t.blocks) == blocks, t.blocks
    assert "encoder" not in t.blocks


class BertEmbeddings(nn.Module):  # the structure of transformers' BertEmbeddings
    def __init__(self, vocab=100, d=16, n=12):
        super().__init__()
        self.word_embeddings, self.position_embeddings, self.token_type_embeddings = nn.Embedding(vocab, d), nn.Embedding(n, d), nn.Embedding(2, d)
        self.LayerNorm = nn.LayerNorm(d)
        self.register_buffer("position_ids", torch.arange(n).unsqueeze(0))

    def forward(self, ids):
        x = self.word_embeddings(ids) + self.token_type_embeddings(torch.zeros_like(ids))
        return self.LayerNorm(x + self.position_embeddings(self.position_ids[:, : ids.shape[1]]))


class SelfOutput(nn.Module):  # BertSelfOutput: dense, then LayerNorm(h + input_tensor) with the residual as a second argument
    def __init__(self, d):
        super().__init__()
        self.dense, self.LayerNorm = nn.Linear(d, d), nn.LayerNorm(d)

    def forward(self, h, input_tensor):
        return self.LayerNorm(self.dense(h) + input_tensor)


class Attention(nn.Module):  # BertAttention: self-attention, then SelfOutput(self(h), h)
    def __init__(self, d):
        super().__init__()
        self.self, self.output = nn.MultiheadAttention(d, 2, batch_first=True), SelfOutput(d)

    def forward(self, h):
        return self.output(self.self(h, h, h, need_weights=False)[0], h)


class Layer(nn.Module):  # BertLayer: attention, intermediate, output(intermediate, attention_output)
    def __init__(self, d):
        super().__init__()
        self.attention, self.intermediate, self.output = Attention(d), nn.Sequential(nn.Linear(d, 4 * d), nn.GELU()), SelfOutput(d)
        self.output.dense = nn.Linear(4 * d, d)

    def forward(self, h):
        a = self.attention(h)
        return self.output(self.intermediate(a), a)


class Bert(nn.Module):
    def __init__(self, layers=3, d=16):
        super().__init__()
        self.embeddings, self.encoder = BertEmbeddings(d=d), nn.Sequential(*[Layer(d) for _ in range(layers)])

    def forward(self, ids):
        return self.encoder(self.embeddings(ids))


def test_a_bert_layer_stack_has_one_block_per_layer_and_none_in_its_embeddings():
    from effkit.models import BuiltModel

    t = effkit.trace(BuiltModel(Bert(), "bert", (12,), "module", vocab_size=100), device="meta")
    # each BertAttention adds its own input h to self.output's dense(attention(h)), a function of h: one block per layer.
    # SelfOutput adds its second input to a function of its first (not of that input); the feed-forward residual adds the
    # attention output, which is no module's own input inside BertLayer; the embeddings add embeddings of ids, never ids.
    assert t.blocks == ("encoder.0.attention", "encoder.1.attention", "encoder.2.attention")


def test_gpu_load_waits_out_our_own_kernels(monkeypatch):
    """NVML's utilisation counts our own kernels of the last sample period: a GPU busy only with our work reads idle
    once that work is done and the period has passed; one that stays busy is someone else's work."""
    import sys
    import types

    from effkit.device import facts

    def fake_nvml(readings):
        it = iter(readings)
        last = [None]

        def util(h):
            last[0] = next(it, last[0])
            return types.SimpleNamespace(gpu=last[0])

        return types.SimpleNamespace(nvmlInit=lambda: None, nvmlShutdown=lambda: None, nvmlDeviceGetHandleByIndex=lambda i: i,
                                     nvmlDeviceGetComputeRunningProcesses=lambda h: [], nvmlDeviceGetUtilizationRates=util)

    monkeypatch.setattr(facts.time, "sleep", lambda s: None)
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([98, 60, 0]))  # our GEMMs fading out of the window
    own = facts.gpu_load(0)
    assert own["gpu_utilization_pct"] == 0 and own["gpu_utilization_pct_with_own_work"] == 98
    assert facts.load_issues({f"{k}_at_start": v for k, v in own.items()}) == []
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([98, 97, 99]))  # still busy: someone else
    clock = iter(range(100))
    monkeypatch.setattr(facts.time, "perf_counter", lambda: next(clock) * 0.1)
    other = facts.gpu_load(0, settle_s=0.5)
    assert other["gpu_utilization_pct"] == 99
    assert facts.load_issues({f"{k}_at_start": v for k, v in other.items()}) == ["the GPU was 99 % busy before measuring started"]


def test_graph_kernels_take_their_layers_from_the_eager_order():
    """A CUDA graph replays the captured kernels in order: kernel k of a replay is kernel k of the eager step."""
    from effkit.run.layers import match_graph_kernels

    a, b = ("stem", "forward"), ("head", "forward")
    eager = [("conv", a), ("relu", a), ("gemm", b)]
    replays = [[("conv", 10.0), ("relu", 2.0), ("gemm", 5.0)], [("conv", 12.0), ("relu", 2.0), ("gemm", 7.0)]]
    per_key, totals = match_graph_kernels(eager, replays)
    assert per_key == {a: (10 + 2, 12 + 2), b: (5, 7)}  # µs in each replay
    assert totals == [17.0, 21.0]
    why = match_graph_kernels(eager, [[("conv", 10.0), ("gemm", 5.0)]])
    assert isinstance(why, str) and "2 kernels and the eager step 3" in why and "kernel 1 on" in why
    assert isinstance(match_graph_kernels(eager, []), str)


def test_eager_kernel_order_follows_the_device():
    """Kernels in the order the device ran them, each attributed to the op that launched it (matched by name and
    duration), one step only: an outer op that starts first but launches after its inner op comes second."""
    import types

    from effkit.run import layers as L

    cpu, gpu = torch.autograd.DeviceType.CPU, torch.autograd.DeviceType.CUDA

    def op(name, start, parent=None, kernels=()):
        return types.SimpleNamespace(name=name, device_type=cpu, time_range=types.SimpleNamespace(start=start), cpu_parent=parent,
                                     kernels=[types.SimpleNamespace(name=k, duration=us) for k, us in kernels], sequence_nr=-1)

    def kernel(name, start, us):
        return types.SimpleNamespace(name=name, device_type=gpu, time_range=types.SimpleNamespace(start=start, end=start + us))

    s0, s1 = op(L._STEP + "0", 0), op(L._STEP + "1", 100)
    stem, head = op(L._PREFIX + "stem", 1, s0), op(L._PREFIX + "head", 50, s0)
    bn = op("aten::batch_norm", 2, stem, [("copy", 1.0)])  # outer op: starts first, launches its kernel last
    events = [bn, op("aten::bn_stats", 3, bn, [("stats", 2.0), ("apply", 3.0)]), op("aten::mm", 60, head, [("gemm", 4.0)]),
              op("aten::mm", 101, op(L._PREFIX + "stem", 100, s1), [("gemm", 4.0)])]
    events += [kernel("stats", 1000, 2.0), kernel("apply", 1003, 3.0), kernel("copy", 1007, 1.0), kernel("gemm", 1010, 4.0),
               kernel("gemm", 1100, 4.0)]
    stem_k, head_k = ("stem", "forward"), ("head", "forward")
    assert L.eager_kernel_order(events) == [("stats", stem_k), ("apply", stem_k), ("copy", stem_k), ("gemm", head_k)]
    assert L.eager_kernel_order(events, step=1) == [("gemm", stem_k)]


def test_graph_replay_correction_is_unprofiled_over_profiled_span():
    from effkit.run.layers import replay_correction

    # spans of five profiled replays 6140-6160 µs (median 6150 µs); the unprofiled replay took 6.09 ms:
    # correction = 6.09 / 6.150 = 0.99024
    assert replay_correction([6140.0, 6150.0, 6160.0, 6145.0, 6155.0], 6.09e-3) == pytest.approx(6.09 / 6.150)
    assert replay_correction([6000.0], 6.09e-3) == 1.0  # profiled faster than unprofiled: never scaled up
    assert replay_correction([], 6.09e-3) == 1.0 and replay_correction([6150.0], None) == 1.0
