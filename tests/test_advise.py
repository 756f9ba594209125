"""effkit advise (issue 15), on the CPU: the search with a stubbed timer, the snippet, the numerical cost by hand,
resume after an interrupt, and the command."""
from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn as nn
from typer.testing import CliRunner

from effkit.advising import advise, numerical_cost
from effkit.analysis.advice import AdvicePoint, Knob, coordinate_search, knobs_key, rank, snippet
from effkit.cli import app
from effkit.models.ref import resolve

runner = CliRunner()

SPACE = [Knob("precision", ("fp32", "bf16"), "memory", ""), Knob("layout", ("contiguous", "channels_last"), "kernel", ""),
         Knob("compile", ("off", "default"), "kernel", "")]
# stubbed medians (ms): bf16 helps (x0.8), channels-last helps (x0.6), compile does nothing measurable
MS = {"precision": {"fp32": 1.0, "bf16": 0.8}, "layout": {"contiguous": 1.0, "channels_last": 0.6}, "compile": {"off": 1.0, "default": 1.0}}


class StubClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def stub_measure(clock: StubClock, cost_s: float = 10.0, seed: int = 0):
    rng = random.Random(seed)

    def measure(knobs):
        clock.t += cost_s  # each point costs 10 s of the budget
        m = 10.0
        for k, v in knobs.items():
            m *= MS[k][v]
        return AdvicePoint(dict(knobs), "ok", tuple(rng.gauss(m, 0.01 * m) / 1e3 for _ in range(50)))

    return measure


def test_search_ranks_by_measured_speed_and_keeps_only_significant_gains():
    clock = StubClock()
    res = coordinate_search(SPACE, stub_measure(clock), budget_s=1000, clock=clock)
    # pass 1: baseline 10 ms; bf16 8 ms (kept); + channels-last 4.8 ms (kept); + compile 4.8 ms: within noise, not kept.
    # Pass 1 kept something, so pass 2 goes round again from the new best: only fp32 + channels-last (8 ms) is new, and slower
    assert res.best.knobs == {"precision": "bf16", "layout": "channels_last", "compile": "off"}
    assert len(res.points) == 5 and not res.skipped
    assert res.points[-1].knobs == {"precision": "fp32", "layout": "channels_last", "compile": "off"}
    rows = rank(res)
    # the two fastest are bf16 + channels-last, with compile or without (4.8 ms both: their order is noise)
    assert all({"precision": "bf16", "layout": "channels_last"}.items() <= r["knobs"].items() for r in rows[:2])
    top = rows[0]
    assert top["speedup"] == pytest.approx(10 / 4.8, rel=0.02) and top["speedup_low"] < top["speedup"] < top["speedup_high"]
    assert [r["verdict"] for r in rows].count("baseline") == 1 and rows[1]["verdict"] == "faster"


def test_search_respects_the_budget():
    clock = StubClock()
    res = coordinate_search(SPACE, stub_measure(clock), budget_s=25, clock=clock)
    # 10 s per point: the baseline runs from t = 0 to 10, bf16 from 10 to 20 (expected 10 s, 15 s left); channels-last would
    # start at 20 with 5 s left and is expected to take 10 s: skipped; compile (expected 5 x 10 s) too, and both say why
    assert len(res.points) == 2 and len(res.skipped) == 2
    assert all("more than the 5 s left of the time budget (25 s)" in why for _, why in res.skipped)


def test_a_knob_that_pays_only_once_another_is_set_is_found_by_a_second_pass():
    """ViT-B/16 at batch 1 on the H200: eager bf16 was slower than fp32 (host-bound: 0.6 ms of kernels in 7.8 ms), so one pass
    kept fp32 and then CUDA graphs (3.1 ms); bf16 under CUDA graphs ran in 0.65 ms."""
    space = [Knob("precision", ("fp32", "bf16"), "memory", ""), Knob("cuda_graph", (False, True), "overhead", "")]
    ms = {("fp32", False): 3.7, ("bf16", False): 7.8, ("fp32", True): 3.1, ("bf16", True): 0.65}
    clock = StubClock()

    def measure(knobs):
        clock.t += 5
        m = ms[(knobs["precision"], knobs["cuda_graph"])]
        return AdvicePoint(dict(knobs), "ok", tuple(m * (1 + 0.001 * i) / 1e3 for i in range(30)))

    res = coordinate_search(space, measure, budget_s=1000, clock=clock)
    # pass 1: fp32 eager 3.7, bf16 eager 7.8 (slower), fp32 + graphs 3.1 (kept); pass 2: bf16 + graphs 0.65 (kept); pass 3: nothing new
    assert res.best.knobs == {"precision": "bf16", "cuda_graph": True} and len(res.points) == 4


def test_a_knob_that_needs_another_value_is_tried_with_it():
    """convfirst_net on CUDA: eager fp16 ran slower than fp32 (advise run 5, H100: 4.02 against 3.96 ms); had bf16 lost too,
    the search would keep fp32, where the fused kernels cannot run (they take 16-bit weights), and never try them."""
    from effkit.analysis.advice import knob_space

    (fused,) = [k for k in knob_space("cuda", fusable=True)[0] if k.name == "fused"]
    assert fused.needs == (("precision", ("bf16", "fp16")),)
    space = [Knob("precision", ("fp32", "bf16"), "memory", ""), fused]
    ms = {("fp32", False): 4.0, ("bf16", False): 4.4, ("bf16", True): 0.6}  # fused at fp32 is never asked for
    clock = StubClock()
    asked = []

    def measure(knobs):
        asked.append((knobs["precision"], knobs["fused"]))
        clock.t += 5
        m = ms[(knobs["precision"], knobs["fused"])]
        return AdvicePoint(dict(knobs), "ok", tuple(m * (1 + 0.001 * i) / 1e3 for i in range(30)))

    res = coordinate_search(space, measure, budget_s=1000, clock=clock)
    # pass 1: fp32 4.0 (baseline), bf16 4.4 (slower: fp32 kept), fused from fp32 taken at bf16, 0.6 (kept); pass 2: fp32 with
    # fused on is not a point, bf16 is the best itself, unfused bf16 was seen: nothing new
    assert asked == [("fp32", False), ("bf16", False), ("bf16", True)]
    assert res.best.knobs == {"precision": "bf16", "fused": True}


def test_max_autotune_is_not_started_when_it_cannot_finish_inside_the_budget():
    """The H200 run that motivated it: compile's default mode cost 23 s, max-autotune 321 s, in a 70 s budget."""
    space = [Knob("precision", ("fp32",), "memory", ""), Knob("compile", ("off", "default", "max-autotune-no-cudagraphs"), "kernel", "")]
    clock = StubClock()
    started = []

    def measure(knobs):
        started.append(knobs["compile"])
        clock.t += {"off": 4.0, "default": 20.0, "max-autotune-no-cudagraphs": 300.0}[knobs["compile"]]
        return AdvicePoint(dict(knobs), "ok", tuple(1e-3 * (1 + 0.001 * i) for i in range(20)))

    res = coordinate_search(space, measure, budget_s=70, clock=clock)
    # eager 0-4 s; default expected 5 x 4 = 20 s, twice that with the fresh-process check a compiled winner gets: 40 s of the
    # 66 s left, so it runs, 4-24 s; max-autotune expected 15 x 20 = 300 s, 600 s with its check, > 46 s left: not started
    assert started == ["off", "default"]
    (knobs, why), = res.skipped
    assert knobs["compile"] == "max-autotune-no-cudagraphs" and "about 600 s, more than the 46 s left" in why


def test_failed_and_oom_points_are_recorded_and_the_search_goes_on():
    clock = StubClock()
    good = stub_measure(clock)

    def measure(knobs):
        if knobs["compile"] == "default":
            return AdvicePoint(knobs, "failed", note="BackendCompilerFailed: no compiler")
        if knobs["layout"] == "channels_last":
            return AdvicePoint(knobs, "oom", note="out of memory")
        return good(knobs)

    res = coordinate_search(SPACE, measure, budget_s=1000, clock=clock)
    assert {p.status for p in res.points} == {"ok", "failed", "oom"} and res.best.knobs["precision"] == "bf16"


def test_the_snippet_runs_and_reproduces_the_configuration():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    x = torch.randn(1, 3, 8, 8)
    code = snippet({"precision": "bf16", "layout": "channels_last", "compile": "off", "threads": 1}, "cpu")
    old = torch.get_num_threads()
    scope = {"model": model, "x": x}
    try:
        exec(compile(code, "<snippet>", "exec"), scope)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(old)
    m, out = scope["model"], scope["out"]
    assert next(m.parameters()).dtype == torch.bfloat16 and out.dtype == torch.bfloat16
    assert next(m.parameters()).is_contiguous(memory_format=torch.channels_last) and not m.training
    mixed = snippet({"precision": "bf16-mixed", "compile": "default"}, "cpu")
    assert "torch.autocast('cpu', dtype=torch.bfloat16)" in mixed and "torch.compile(model)" in mixed
    graph = snippet({"precision": "fp32", "cuda_graph": True, "cudnn_benchmark": True}, "cuda")
    assert "torch.cuda.CUDAGraph()" in graph and "torch.backends.cudnn.benchmark = True" in graph
    compile(graph, "<graph snippet>", "exec")  # valid Python (it needs a GPU to run)


def test_numerical_cost_by_hand():
    class Scale(nn.Module):
        """y = w * x with w = 1 + 2^-10: exact in fp32, rounds to 1 in bf16 (8 mantissa bits)."""

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor(1.0 + 2**-10))
            self.input_shape = (4,)

        def forward(self, x):
            return self.w * x

    ref = resolve(Scale())
    torch.manual_seed(0)
    x = torch.randn(1, 4)
    # fp32: w x; bf16: w rounds to 1 and x to bf16: the difference is at most |x| 2^-10 + the rounding of x (2^-9 relative)
    abs_d, rel_d = numerical_cost(ref, "bf16", "cpu", batch=1, seed=0)
    y = (1 + 2**-10) * x
    assert 0 < abs_d <= y.abs().max().item() * (2**-10 + 2**-8)
    assert rel_d == pytest.approx(abs_d / y.abs().max().item())
    assert numerical_cost(ref, "fp32", "cpu") == (0.0, 0.0)


def test_numerical_warning_for_underflow_and_all_zero_outputs():
    """What the H200 run of 2026-12-02 met: mobilenet_v2's random-weight outputs (about 6e-9) vanish in fp16, and
    vit_b_16's zero-initialised head gives all-zero outputs, which make any precision look exact."""
    from effkit.advising import _numerical
    from effkit.analysis.advice import numerical_warning

    class Tiny(nn.Module):
        def __init__(self, w):
            super().__init__()
            self.w = nn.Parameter(torch.tensor(w))
            self.input_shape = (4,)

        def forward(self, x):
            return self.w * x

    # 1e-9 x: fp16's smallest subnormal is 2^-24 = 6e-8, so every output rounds to 0: 100 % off; bf16 keeps them
    tiny = resolve(Tiny(1e-9))
    abs16, rel16, ref_max = _numerical(tiny, "fp16", "cpu")
    assert rel16 == pytest.approx(1.0) and 0 < ref_max < 1e-8
    w16 = numerical_warning("fp16", ref_max, rel16)
    assert "below fp16's smallest normal number (6.1e-05)" in w16 and "100 %" in w16
    _, rel_bf, ref_max_bf = _numerical(tiny, "bf16", "cpu")
    assert rel_bf < 2**-7 and numerical_warning("bf16", ref_max_bf, rel_bf) == ""
    zero = resolve(Tiny(0.0))
    assert _numerical(zero, "bf16", "cpu") == (0.0, 0.0, 0.0)
    assert "all zero" in numerical_warning("bf16", 0.0, 0.0)
    # ordinary outputs, a large difference: flagged without the underflow reason; fp32 and tf32 never
    assert numerical_warning("bf16-mixed", 3.0, 0.25) == "numerical warning: the outputs differ from fp32 by 25 % of their scale"
    assert numerical_warning("bf16", 3.0, 0.004) == "" and numerical_warning("tf32", 0.0, 0.0) == ""


def test_resume_after_an_interrupt(tmp_path):
    calls = []
    clock_knobs = {}

    def measure(knobs):
        calls.append(knobs_key(knobs))
        if len(calls) == 3:
            raise KeyboardInterrupt  # the third point is interrupted
        m = 10.0 * MS["precision"].get(knobs.get("precision"), 1.0) * MS["layout"].get(knobs.get("layout"), 1.0)
        clock_knobs[knobs_key(knobs)] = m
        return AdvicePoint(dict(knobs), "ok", tuple(m / 1e3 * (1 + 0.001 * i) for i in range(20)))

    tiny = nn.Sequential(nn.Conv2d(3, 4, 3))
    tiny.input_shape = (3, 8, 8)
    with pytest.raises(KeyboardInterrupt):
        advise(tiny, out=tmp_path / "a", budget_s=1e6, measure=measure)
    saved = sorted(p.stem for p in (tmp_path / "a" / "points").glob("*.json"))
    assert len(saved) == 2  # the two points measured before the interrupt are on disk
    before = len(calls)
    res = advise(tiny, out=tmp_path / "a", budget_s=1e6, measure=measure)
    assert calls[before:] and all(c not in calls[:2] for c in calls[before:])  # the saved points are not measured again
    assert (tmp_path / "a" / "index.html").is_file() and (tmp_path / "a" / "best_config.py").is_file()
    assert res.search.best.knobs["layout"] == "channels_last"


def test_advice_json_keeps_what_the_second_process_said(tmp_path):
    """compile (process-variable) wins the search; a stubbed fresh-process measurement holds it: advice.json says so."""
    def measure(knobs):
        m = 5.0 if knobs.get("compile") == "default" else 10.0  # ms
        return AdvicePoint(dict(knobs), "ok", tuple(m / 1e3 * (1 + 0.001 * i) for i in range(20)))

    def verify(knobs):
        return AdvicePoint(dict(knobs), "ok", tuple(5.1e-3 * (1 + 0.001 * i) for i in range(20)))

    tiny = nn.Sequential(nn.Conv2d(3, 4, 3))
    tiny.input_shape = (3, 8, 8)
    res = advise(tiny, out=tmp_path / "a", budget_s=1e6, measure=measure, verify=verify)
    assert res.search.best.knobs["compile"] == "default"
    saved = json.loads((tmp_path / "a" / "advice.json").read_text())["second_process"]
    # the stub's median: 5.1 ms x (1 + 0.001 x 9.5), the middle of its 20 samples
    assert saved["said"] == "its gain held in a second process" and saved["median_ms"] == pytest.approx(5.1 * 1.0095)


def test_the_report_shows_the_best_configurations_code_as_code(tmp_path):
    """Advise run 5's report (H100) had the snippet inside the headline, its lines run together into one paragraph."""
    import html

    def measure(knobs):
        m = 5.0 if knobs.get("layout") == "channels_last" else 10.0  # ms
        return AdvicePoint(dict(knobs), "ok", tuple(m / 1e3 * (1 + 0.001 * i) for i in range(20)))

    tiny = nn.Sequential(nn.Conv2d(3, 4, 3))
    tiny.input_shape = (3, 8, 8)
    advise(tiny, out=tmp_path / "a", budget_s=1e6, measure=measure)
    code = (tmp_path / "a" / "best_config.py").read_text()
    page = (tmp_path / "a" / "index.html").read_text()
    assert "channels_last" in code and f'<pre id="code">{html.escape(code)}</pre>' in page  # line for line, escaped once
    assert page.count(html.escape(code)) == 1 and "Apply it:" not in page  # no longer also a headline item


def test_a_numerical_warning_reaches_the_ranking_and_the_report(tmp_path):
    """The best point's numerical note is shown beside its own note in the ranking and in the report's head."""
    def measure(knobs):
        m = 5.0 if knobs.get("precision") == "bf16" else 10.0  # ms
        warn = "numerical warning: the outputs differ from fp32 by 25 % of their scale" if knobs.get("precision") == "bf16" else ""
        return AdvicePoint(dict(knobs), "ok", tuple(m / 1e3 * (1 + 0.001 * i) for i in range(20)), note="graph captured",
                           numerical_note=warn)

    tiny = nn.Sequential(nn.Conv2d(3, 4, 3))
    tiny.input_shape = (3, 8, 8)
    res = advise(tiny, out=tmp_path / "a", budget_s=1e6, measure=measure)
    assert res.search.best.knobs["precision"] == "bf16"
    top = res.ranking[0]
    assert top["note"] == "graph captured; numerical warning: the outputs differ from fp32 by 25 % of their scale"
    assert "Best configuration: numerical warning: the outputs differ from fp32 by 25 % of their scale." in (
        tmp_path / "a" / "index.html").read_text()


def test_bad_input():
    r = runner.invoke(app, ["advise", "resnet18", "--budget", "0"])
    assert r.exit_code == 2 and "--budget must be > 0" in r.stderr
    r = runner.invoke(app, ["advise", "not_a_model_xyz"])
    assert r.exit_code == 2 and "unknown model" in r.stderr
    # found by hand on 2026-12-02: an unknown device was an internal error, batch 0 was measured
    r = runner.invoke(app, ["advise", "resnet18", "--device", "tpu"])
    assert r.exit_code == 2 and "unknown device 'tpu'; choose one of: cpu, cuda, cuda:N" in r.stderr
    r = runner.invoke(app, ["advise", "resnet18", "--batch", "0"])
    assert r.exit_code == 2 and "batch must be a positive integer, got 0" in r.stderr


def test_advise_command_on_the_cpu(tmp_path):
    r = runner.invoke(app, ["advise", "resnet18", "--resolution", "32", "--budget", "8", "--min-time", "0.05", "--out", str(tmp_path / "adv")])
    assert r.exit_code == 0, r.output
    assert "Apply the best configuration" in r.stdout and "model = model.eval()" in r.stdout
    assert (tmp_path / "adv" / "advice.json").is_file()


def test_throughput_search_doubles_then_bisects_on_oom():
    from effkit.analysis.advice import throughput_search

    # batches up to 100 fit; samples/s grows with the batch until 64 and then flattens (a stub, no GPU)
    def measure(b):
        if b > 100:
            return "oom", None
        return "ok", 1000.0 * min(b, 64) / (1 + 0.001 * b)

    best, tried = throughput_search(measure, 1)
    seen = [b for b, _, _ in tried]
    # doubling 1, 2, ..., 64, 128 (oom), then bisection between 64 and 128 to within 64 / 8 = 8: 96 (ok), 112 (oom), 104 (oom)
    assert seen[:8] == [1, 2, 4, 8, 16, 32, 64, 128] and seen[8:] == [96, 112, 104]
    assert [st for b, st, _ in tried if b > 100] == ["oom", "oom", "oom"]  # every OOM recorded
    assert best == 64  # 1000 x 64 / 1.064 = 60,150/s beats 96's 1000 x 64 / 1.096 = 58,394/s


def test_compile_split_by_hand():
    from effkit.analysis.advice import compile_split

    # eager kernels 10 ms, waterline 6 ms, fused waterline 2 ms; compiled kernels 4 ms:
    # gained 6 ms; below the waterline (6 -> 4): 2 ms of memory traffic removed; above it (10 -> 6): 4 ms of kernel gap;
    # the what-if predicted 6 - 2 = 4 ms from fusion: compile realised 2 / 4 = 50 %
    eager = AdvicePoint({"compile": "off"}, "ok", (0.01,), kernels_s=0.010, waterline_s=0.006, fused_waterline_s=0.002)
    compiled = AdvicePoint({"compile": "default"}, "ok", (0.005,), kernels_s=0.004)
    s = compile_split(eager, compiled)
    assert s["gain_ms"] == pytest.approx(6) and s["memory_traffic_part_ms"] == pytest.approx(2) and s["kernel_gap_part_ms"] == pytest.approx(4)
    assert s["realised_share_of_predicted"] == pytest.approx(0.5)


def test_throughput_search_respects_the_budget():
    from effkit.analysis.advice import throughput_search

    clock = StubClock()

    def measure(b):
        clock.t += 10  # 10 s a batch
        return "ok", float(b)

    best, tried = throughput_search(measure, 1, budget_s=25, clock=clock)
    # batch 1 (t 0 -> 10), 2 (10 -> 20), 4 (starts at 20 < 25, ends at 30), 8 would start at 30: skipped, and the search stops
    assert [b for b, st, _ in tried if st == "ok"] == [1, 2, 4] and tried[-1][1].startswith("skipped") and best == 4


def _point(knobs, ms, seed, n=50):
    rng = random.Random(seed)
    return AdvicePoint(dict(knobs), "ok", tuple(rng.gauss(ms, 0.01 * ms) / 1e3 for _ in range(n)))


def test_a_process_variable_gain_must_hold_in_a_second_process():
    from effkit.analysis.advice import SearchResult, confirm

    base = _point({"layout": "contiguous", "compile": "off"}, 10.0, 1)
    cl = _point({"layout": "channels_last", "compile": "off"}, 8.0, 2)
    comp = _point({"layout": "channels_last", "compile": "default"}, 6.0, 3)
    # the second process measures compile at the baseline's speed: its gain did not hold; channels-last is recommended
    r = confirm(SearchResult(base, comp, [base, cl, comp]), _point(comp.knobs, 10.0, 4))
    assert r.best is cl and "not in a second process" in r.confirmation
    # it holds (6.2 ms against 10): kept
    r = confirm(SearchResult(base, comp, [base, cl, comp]), _point(comp.knobs, 6.2, 5))
    assert r.best is comp and r.confirmation == "its gain held in a second process"
    # no process-variable knob changed: no second process needed, nothing said
    r = confirm(SearchResult(base, cl, [base, cl]), None)
    assert r.best is cl and r.confirmation == ""


def test_the_second_process_measures_in_a_fresh_python(tmp_path, monkeypatch):
    from effkit.advising import _second_process

    monkeypatch.setenv("EFFKIT_CACHE_DIR", str(tmp_path / "cache"))
    ref = resolve("resnet18", resolution=32)
    p = _second_process(ref, "cpu", 1, "infer", 0.05)({"precision": "fp32", "layout": "channels_last", "compile": "off", "threads": "default"})
    assert p.status == "ok" and len(p.samples_s) >= 20 and p.knobs["layout"] == "channels_last"
    assert _second_process(resolve(nn.Linear(4, 4), (4,)), "cpu", 1, "infer", 0.05)({"precision": "fp32"}) is None  # an object: no spec


def test_the_fused_knob_is_tried_on_cuda_for_inference_of_a_model_with_blocks_to_fuse():
    from effkit.advising import _why_not_fusable, config_of
    from effkit.analysis.advice import knob_space

    space, skipped = knob_space("cuda", fusable=True)
    names = [k.name for k in space]
    assert "fused" in names and names.index("fused") < names.index("compile")  # compile is then tried around the fused blocks
    assert next(k for k in space if k.name == "fused").values == (False, True)  # the baseline first
    _, skipped = knob_space("cuda", fusable=False, why_not_fusable="the model has no block to fuse")
    assert "fused: the model has no block to fuse" in skipped
    train, skipped = knob_space("cuda", mode="train", fusable=True)
    assert "fused" not in [k.name for k in train] and any(s.startswith("fused: ") and "inference only" in s for s in skipped)
    cpu, skipped = knob_space("cpu", fusable=True)
    assert "fused" not in [k.name for k in cpu] and any("fused" in s and "CUDA only" in s for s in skipped)
    # which models: convfirst_net's blocks fuse (Triton is in the test extra); resnet50's bottlenecks do not
    assert _why_not_fusable(resolve("convfirst_net", width=0.25, resolution=32)) is None
    assert "no ConvFirst block" in _why_not_fusable(resolve("resnet50"))
    assert config_of({"fused": True, "precision": "bf16"}, "cuda", 1, "infer", 0.1).fused
    assert not config_of({"fused": False}, "cuda", 1, "infer", 0.1).fused
    # the kernels take 16-bit weights: with fp32 weights the point is skipped, saying why, before anything runs (advise
    # run 5 on an H100 had these as compile failures for want of shared memory)
    from effkit.advising import _measurer

    measure = _measurer(resolve("convfirst_net", width=0.25, resolution=32), "cuda", 1, "infer", 0.1)
    for precision in ("fp32", "bf16-mixed"):
        p = measure({"precision": precision, "fused": True})
        assert p.status == "skipped" and p.note.endswith(f"give --precision fp16 or bf16, not {precision}")


def test_the_fused_snippet_folds_before_it_casts_and_runs(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # on the CPU the fused modules are the folded math in PyTorch
    from effkit.kernels import FusedConvFirst
    from effkit.models.registry import build_model

    code = snippet({"precision": "bf16", "layout": "channels_last", "fused": True}, "cpu")
    assert code.index("fuse_blocks(model.eval())") < code.index("model = model.to(torch.bfloat16)")
    model = build_model("convfirst_net", width=0.25, resolution=32).model.eval()
    scope = {"model": model, "x": torch.randn(1, 3, 32, 32)}
    exec(compile(code, "<snippet>", "exec"), scope)
    m = scope["model"]
    assert any(isinstance(b, FusedConvFirst) for b in m.modules()) and scope["out"].dtype == torch.bfloat16


def test_the_fused_models_numerical_cost_is_measured_against_the_unfused_model_in_fp32(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    from effkit.advising import _numerical
    from effkit.analysis.advice import numerical_warning
    from effkit.kernels import FusedConvFirst

    ref = resolve("convfirst_net", width=0.25, resolution=32)
    # fp32, fused: the BatchNorms folded into the convs change only the rounding (a few fp32 ulps of the outputs' scale)
    abs_d, rel_d, ref_max = _numerical(ref, "fp32", "cpu", fused=True)
    assert ref_max > 0 and rel_d < 1e-4
    # the fused model is what is compared: a block that adds 1 to its output moves the logits far beyond that
    real = FusedConvFirst.forward
    monkeypatch.setattr(FusedConvFirst, "forward", lambda self, x: real(self, x) + 1.0)
    _, rel_bad, ref_max_bad = _numerical(ref, "fp32", "cpu", fused=True)
    assert rel_bad > 1e-2
    # a fused model is judged at every precision, fp32 included, and says which outputs differ from which
    assert numerical_warning("fp32", 2.0, 0.3) == ""
    assert numerical_warning("fp32", 2.0, 0.3, fused=True) == ("numerical warning: the block-fused model's outputs differ from the "
                                                                "unfused model's in fp32 by 30 % of their scale")


def test_the_numerical_cost_is_of_the_layout_the_point_runs_in(monkeypatch):
    """A fused kernel once read a weight that the channels-last conversion had re-laid (c384, 0.26 of its output's
    scale on the H100), and the check, run on the contiguous model only, passed. A block that is wrong only in
    channels-last memory must show in that layout's cost and not in the other's."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    from effkit.advising import _numerical
    from effkit.kernels import FusedConvFirst

    ref = resolve("convfirst_net", width=0.25, resolution=32)
    real = FusedConvFirst.forward
    layouts = []

    def wrong_in_channels_last(self, x):
        cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        layouts.append(cl)
        return real(self, x) + (1.0 if cl else 0.0)

    monkeypatch.setattr(FusedConvFirst, "forward", wrong_in_channels_last)
    _, rel_plain, _ = _numerical(ref, "fp32", "cpu", fused=True)
    assert rel_plain < 1e-4 and layouts and not any(layouts)
    layouts.clear()
    _, rel_cl, _ = _numerical(ref, "fp32", "cpu", fused=True, channels_last=True)
    assert rel_cl > 1e-2 and any(layouts)  # (at 32 pixels the last stage's 1x1 maps are both layouts at once)
    # unfused fp32 in channels-last memory is a real comparison too (other conv algorithms), not the zero of the identity
    abs_d, rel_d, ref_max = _numerical(ref, "fp32", "cpu", channels_last=True)
    assert ref_max is not None and rel_d < 1e-4


def test_a_fused_point_stands_on_the_waterline_of_what_fuse_blocks_fuses(monkeypatch):
    """The fused knob measured through the runner (on the CPU the fused modules are the folded math in PyTorch): its
    point's floor is the what-if for the blocks fuse_blocks swaps, which for convfirst_net are the residual blocks, the
    4 strided blocks with their shortcut convs and the stem, so it lies below the report's residual-block what-if."""
    from types import SimpleNamespace

    import effkit.device.ceilings as ceilings
    from effkit.advising import _measurer

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(ceilings, "device_ceilings", lambda device, **kw: SimpleNamespace(
        name="stub cpu", peak_flops={"fp32": 1e11}, bandwidth_bytes_per_s=2e10, facts={}, measured_at="test", launch_floor_s=None))
    measure = _measurer(resolve("convfirst_net", width=0.25, resolution=32), "cpu", 1, "infer", 0.01)
    plain, fused = measure({"fused": False}), measure({"fused": True})
    assert plain.status == fused.status == "ok", (plain.note, fused.note)
    assert plain.waterline_s and plain.ideal_s == fused.ideal_s
    assert fused.waterline_s == fused.fused_waterline_s < plain.fused_waterline_s < plain.waterline_s
    assert plain.max_rel_diff == 0.0 and 0.0 <= fused.max_rel_diff < 1e-4  # fp32: the folding changes the rounding only
    assert "per-layer times not taken" in fused.note  # a fused block's kernel spans the layers the trace names


def test_a_point_saved_before_the_fused_knob_stands_for_the_unfused_configuration(tmp_path):
    from effkit.advising import saved_point
    from effkit.files import safe_name

    old = {"precision": "bf16", "layout": "channels_last"}  # an earlier version's knobs: no fused
    (tmp_path / f"{safe_name(knobs_key(old))}.json").write_text(json.dumps(AdvicePoint(old, "ok", (0.001, 0.002)).to_dict()))
    p = saved_point(tmp_path, {**old, "fused": False})
    assert p is not None and p.knobs == {**old, "fused": False} and p.samples_s == (0.001, 0.002)
    assert saved_point(tmp_path, {**old, "fused": True}) is None  # a fused point was never measured
    assert saved_point(tmp_path, {"precision": "fp32", "fused": False}) is None
    # the point under its own key comes first; a damaged file is measured again (None)
    (tmp_path / f"{safe_name(knobs_key({**old, 'fused': False}))}.json").write_text(json.dumps(AdvicePoint({**old, "fused": False}, "ok", (0.005,)).to_dict()))
    assert saved_point(tmp_path, {**old, "fused": False}).samples_s == (0.005,)
    (tmp_path / f"{safe_name(knobs_key({'compile': 'default'}))}.json").write_text("{not json")
    assert saved_point(tmp_path, {"compile": "default"}) is None
