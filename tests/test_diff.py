"""effkit diff: alignment, significance, the gate and its exit codes, bad input, and the CI example."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch.nn as nn
from typer.testing import CliRunner

from effkit.analysis.diff import Side, align, diff, gate, parse_rules
from effkit.analysis.stats import compare_samples, mann_whitney, t_two_sided_p, welch_log
from effkit.cli import app
from effkit.diffing import diff as diff_specs, load_side, side_from_trace_dict
from effkit.errors import UserInputError
from effkit.trace.tracer import trace

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "run_v1_profile"
runner = CliRunner()


class Net(nn.Module):
    """stem Linear(8, W) -> ReLU -> [extra Linear(W, W)] -> head Linear(W, 4); renamable head."""

    def __init__(self, width=16, extra=False, head_name="head"):
        super().__init__()
        self.stem = nn.Linear(8, width)
        self.act = nn.ReLU()
        self.extra = nn.Linear(width, width) if extra else None
        setattr(self, head_name, nn.Linear(width, 4))
        self.head_name = head_name
        self.input_shape = (8,)

    def forward(self, x):
        x = self.act(self.stem(x))
        if self.extra is not None:
            x = self.extra(x)
        return getattr(self, self.head_name)(x)


def side(model, label="m") -> Side:
    return side_from_trace_dict(json.loads(trace(model, device="meta").to_json()), label)


# ----------------------------------------------------------------------------- alignment
def test_a_widened_layer_is_changed_with_its_deltas():
    r = diff(side(Net(16)), side(Net(32)))
    by = {l.path: l for l in r.layers}
    # stem: Linear(8, 16) -> Linear(8, 32) at batch 1: MACs 8*16 = 128 -> 8*32 = 256 (+128); params 8*16+16 = 144 -> 8*32+32 = 288 (+144)
    assert by["stem"].status == "changed" and by["stem"].delta("macs") == 128 and by["stem"].delta("params") == 144
    # head: Linear(16, 4) -> Linear(32, 4): MACs 64 -> 128 (+64); params 68 -> 132 (+64)
    assert by["head"].status == "changed" and by["head"].delta("macs") == 64 and by["head"].delta("params") == 64
    # totals: MACs 192 -> 384 (+100 %); params 212 -> 420
    assert r.total_delta("macs") == (192, 1.0) and r.total_delta("params")[0] == 420 - 212
    # the ReLU between them has no parameters or MACs but its output went from 1x16 to 1x32: changed too
    assert by["act"].status == "changed" and (by["act"].a["output_shape"], by["act"].b["output_shape"]) == ("1x16", "1x32")
    assert "+192 MACs (+100.00 %)" in r.summary() and "3 changed" in r.summary()


def test_an_added_block_is_listed_as_added_and_the_rest_is_the_same():
    r = diff(side(Net(16)), side(Net(16, extra=True)))
    status = {l.path: l.status for l in r.layers}
    assert status["extra"] == "added" and status["stem"] == "same" and status["head"] == "same"
    extra = next(l for l in r.layers if l.path == "extra")
    assert extra.delta("macs") == 16 * 16 and extra.delta("params") == 16 * 16 + 16  # Linear(16, 16): 256 MACs, 272 params
    back = diff(side(Net(16, extra=True)), side(Net(16)))
    assert {l.path: l.status for l in back.layers}["extra"] == "removed"
    assert [l.path for l in back.layers].index("extra") < [l.path for l in back.layers].index("head")  # kept in the model's order


def test_a_renamed_module_is_matched_by_type_shape_and_params():
    r = diff(side(Net(16)), side(Net(16, head_name="classifier")))
    renamed = [l for l in r.layers if l.status == "renamed"]
    assert len(renamed) == 1 and renamed[0].path_a == "head" and renamed[0].path_b == "classifier"
    assert renamed[0].delta("macs") == 0
    assert not [l for l in r.layers if l.status in ("added", "removed")]


def test_align_keeps_unmatched_layers_apart():
    a = [{"path": "x", "module_type": "Conv2d", "output_shape": "1x8", "params": 10, "macs": 5}]
    b = [{"path": "y", "module_type": "Linear", "output_shape": "1x8", "params": 10, "macs": 5}]
    assert [s for s, _, _ in align(a, b)] == ["added", "removed"]


def test_models_with_nothing_in_common_still_show_totals():
    a = Side("a", "a", ({"path": "conv", "module_type": "Conv2d", "output_shape": "1x8", "params": 10, "macs": 5, "flops": 10, "acts": 8,
                         "bytes": 100},), {"macs": 5, "flops": 10, "params": 10, "acts": 8, "bytes": 100})
    b = Side("b", "b", ({"path": "fc", "module_type": "Linear", "output_shape": "1x4", "params": 3, "macs": 2, "flops": 4, "acts": 4,
                         "bytes": 40},), {"macs": 2, "flops": 4, "params": 3, "acts": 4, "bytes": 40})
    r = diff(a, b)
    assert any("no layer in common" in n for n in r.notes) and r.total_delta("macs") == (-3, -0.6)


# ----------------------------------------------------------------------------- significance
def test_t_distribution_against_published_critical_values():
    # two-sided 5 % critical values of Student's t (any statistics table): df 1: 12.706, 4: 2.776, 10: 2.228, large: 1.960
    for t, df in ((12.706, 1), (2.776, 4), (2.228, 10), (1.960, 1e6)):
        assert t_two_sided_p(t, df) == pytest.approx(0.05, abs=2e-4)


def test_a_five_percent_shift_in_200_samples_of_one_percent_noise_is_flagged():
    rng = random.Random(7)
    a = [rng.gauss(1.0, 0.01) for _ in range(200)]
    b = [rng.gauss(1.05, 0.01) for _ in range(200)]
    d = compare_samples(a, b)
    assert d.significant and d.verdict == "slower" and d.ratio == pytest.approx(1.05, abs=0.005)
    assert d.ci[0] > 1.03 and d.ci[1] < 1.07


def test_same_distribution_is_flagged_at_about_the_chosen_level():
    """1,000 pairs of draws from one distribution (fixed seed): the share flagged at alpha = 5 % must stay within the
    level up to binomial noise: at most 5 % + 2.33 x sqrt(0.05 x 0.95 / 1000) = 6.6 % (one-sided 99 %)."""
    rng = random.Random(2026)
    flagged_u = flagged_t = 0
    for _ in range(1000):
        a = [rng.gauss(1.0, 0.01) for _ in range(200)]
        b = [rng.gauss(1.0, 0.01) for _ in range(200)]
        flagged_u += mann_whitney(a, b) < 0.05
        la = [rng.lognormvariate(0, 0.01) for _ in range(5)]  # per-layer: 5 profiled steps a side
        lb = [rng.lognormvariate(0, 0.01) for _ in range(5)]
        flagged_t += welch_log(la, lb) < 0.05
    assert flagged_u / 1000 <= 0.06 and flagged_t / 1000 <= 0.06  # the bound; 0.066 is where binomial noise alone would end
    assert flagged_u > 0 and flagged_t > 0  # a test that never rejects would pass the line above too


def _timed(side_: Side, e2e_mean: float, layer_means: dict, seed: int, noise: float = 0.01, device: str = "H200") -> Side:
    rng = random.Random(seed)
    from dataclasses import replace

    return replace(side_, samples_s=tuple(rng.gauss(e2e_mean, noise * e2e_mean) for _ in range(200)), batch=1, device_name=device,
                   layer_steps_s={p: tuple(rng.lognormvariate(0, noise) * m for _ in range(5)) for p, m in layer_means.items()})


def test_time_deltas_are_slower_faster_or_within_noise():
    base = side(Net(16))
    a = _timed(base, 1e-3, {"stem": 4e-4, "act": 1e-4, "head": 3e-4}, 1)
    b = _timed(base, 1.1e-3, {"stem": 6e-4, "act": 1e-4, "head": 2e-4}, 2)  # stem x1.5, act the same, head x0.67
    r = diff(a, b)
    verdict = {l.path: l.time.verdict for l in r.layers if l.time}
    assert verdict == {"stem": "slower", "act": "within noise", "head": "faster"}
    assert r.end_to_end.verdict == "slower" and r.end_to_end.ratio == pytest.approx(1.10, abs=0.01) and "% latency (significant)" in r.summary()
    assert "1 layer slower, 1 faster" in r.summary()


def test_per_layer_times_scaled_by_different_corrections_are_compared_as_profiled():
    """ConvNeXt-T on the H200, eager against CUDA graphs: the same kernels, but the graph's per-layer times were scaled by
    0.965 (unprofiled replay / profiled span) and the eager ones by 1: compared as scaled, 73 layers came out 'faster'."""
    from dataclasses import replace

    base = side(Net(16))
    means = {"stem": 4e-4, "act": 1e-4, "head": 3e-4}
    a = _timed(base, 1e-3, means, 1)
    b = _timed(base, 0.97e-3, means, 2)
    b = replace(b, layer_scale=0.965, layer_steps_s={p: tuple(0.965 * t for t in v) for p, v in b.layer_steps_s.items()})
    r = diff(a, b)
    assert {l.time.verdict for l in r.layers if l.time} == {"within noise"}
    assert any("compared as profiled" in n and "-3.5 %" in n for n in r.notes)
    same = diff(a, replace(b, layer_scale=1.0))  # what the records' scaled times alone would have said
    assert {l.time.verdict for l in same.layers if l.time} == {"faster"}


def test_different_devices_compare_efficiency_not_times():
    base = side(Net(16))
    from dataclasses import replace

    a = replace(_timed(base, 1e-3, {}, 1, device="H200"), efficiency=0.30)
    b = replace(_timed(base, 2e-3, {}, 2, device="A100"), efficiency=0.25)
    r = diff(a, b)
    assert r.end_to_end is None and any("not comparable" in n and "30.0 % against 25.0 %" in n for n in r.notes)


# ----------------------------------------------------------------------------- the gate
def test_gate_rules_parse_and_bad_ones_name_the_grammar():
    rules = parse_rules("macs>0%, params>=0.5%, latency_ms>+5%, layers_slower>0, bytes<-10")
    assert [(r.metric, r.op, r.value, r.relative) for r in rules] == [("macs", ">", 0.0, True), ("params", ">=", 0.005, True),
                                                                      ("latency_ms", ">", 0.05, True), ("layers_slower", ">", 0.0, False),
                                                                      ("bytes", "<", -10.0, False)]
    for bad in ("macs>>0", "speed>1%", "macs>", "layers_slower>1%", ""):
        with pytest.raises(UserInputError) as e:
            parse_rules(bad)
        assert "grammar" in str(e.value) or "drop the %" in str(e.value)


def test_gate_counts_and_times():
    base, wide = side(Net(16)), side(Net(32))
    r = diff(base, wide)
    assert gate(r, parse_rules("macs>0%")) == ["macs>0%: macs changed +100.00 % (192 -> 384)"]
    assert gate(r, parse_rules("macs>150%")) == []  # +100 % is not above 150 %
    assert gate(r, parse_rules("params>100")) and not gate(r, parse_rules("params>1000"))  # +208 params: absolute rules
    same = diff(base, base)
    assert gate(same, parse_rules("macs>0%,params>0%,layers_added>0")) == []
    # time: a 10 % slowdown violates latency_ms>+5 %; noise (same distribution) never does
    slow = diff(_timed(base, 1e-3, {}, 1), _timed(base, 1.1e-3, {}, 2))
    assert len(gate(slow, parse_rules("latency_ms>+5%"))) == 1 and gate(slow, parse_rules("latency_ms>+20%")) == []
    noise = diff(_timed(base, 1e-3, {}, 3), _timed(base, 1e-3, {}, 4, noise=0.02))
    assert not noise.end_to_end.significant and gate(noise, parse_rules("latency_ms>0%")) == []


def _write_trace(model, path: Path) -> Path:
    path.write_text(trace(model, device="meta").to_json())
    return path


def test_cli_gate_exit_codes(tmp_path):
    a, b = _write_trace(Net(16), tmp_path / "a.json"), _write_trace(Net(32), tmp_path / "b.json")
    ok = runner.invoke(app, ["diff", str(a), str(a), "--fail-on", "macs>0%,params>0%", "--format", "csv"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["diff", str(a), str(b), "--fail-on", "macs>0%,params>0%,flops>1000%", "--format", "json"])
    assert bad.exit_code == 1
    lines = [l for l in bad.stderr.splitlines() if l.startswith("gate:")]
    assert len(lines) == 2 and "macs>0%" in lines[0] and "params>0%" in lines[1]
    assert "internal error" not in bad.stderr and "Traceback" not in bad.stderr
    out = json.loads(bad.stdout)
    assert out["totals"]["macs"]["delta"] == 192 and out["layers"][0]["path"] == "stem"
    toml = tmp_path / "gate.toml"
    toml.write_text('fail_on = ["macs>0%"]\n')
    assert runner.invoke(app, ["diff", str(a), str(b), "--fail-on", str(toml), "--format", "csv"]).exit_code == 1
    toml.write_text('[fail_on]\nparams = ">1000%"\n')
    assert runner.invoke(app, ["diff", str(a), str(b), "--fail-on", str(toml), "--format", "csv"]).exit_code == 0


@pytest.mark.parametrize("args, says", [
    (["a.json", "a.json", "--fail-on", "macs>>1"], "gate rule 'macs>>1' is not understood; the grammar"),
    (["missing.json", "a.json"], "does not exist"),
    (["truncated.json", "a.json"], "truncated.json"),
    (["not_a_model_xyz", "a.json"], "unknown model"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, args, says, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_trace(Net(16), tmp_path / "a.json")
    (tmp_path / "truncated.json").write_text('{"model": "x", "layers": [')
    r = runner.invoke(app, ["diff", *args, "--format", "csv"])
    assert r.exit_code == 2 and says in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_run_folders_old_schema_and_comparisons(tmp_path):
    # the schema-1 profile folder (effkit 0.1) reads, and diffs against itself with no change
    # a comparison folder: its model's counts and samples come from that model's own folder, which the comparison links
    cmp = ROOT / "reports" / "examples" / "compare_h200_bf16_b64"
    same = diff_specs(str(cmp), str(cmp), model_a="resnet50", model_b="resnet50")
    assert same.total_delta("macs") == (0, 0.0) and same.a.totals["macs"] > 4e9 * 64 * 0.9 and same.end_to_end is not None
    assert not same.end_to_end.significant and not same.slower  # a run against itself: never a regression
    r = diff_specs(str(FIXTURE), str(FIXTURE))
    assert r.total_delta("macs") == (0, 0.0) and not r.counts_changed()
    assert r.end_to_end is None or not r.end_to_end.significant
    # a run folder from an unreadable schema: one line naming the versions
    bad = tmp_path / "future"
    bad.mkdir()
    (bad / "run.json").write_text(json.dumps({"schema_version": 99, "kind": "profile", "models": []}))
    with pytest.raises(UserInputError, match="schema version 99; this effkit .* reads versions 1, 2"):
        load_side(str(bad))


def test_a_model_spec_is_traced_on_the_fly(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import torch.nn as nn\n\ndef build():\n    m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))\n"
                 "    m.input_shape = (8,)\n    return m\n")
    m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    m.input_shape = (8,)
    base = _write_trace(m, tmp_path / "base.json")
    r = diff_specs(str(base), f"{f}:build")
    assert r.total_delta("macs") == (0, 0.0) and r.total_delta("params") == (0, 0.0)


def test_html_and_csv_views(tmp_path):
    from effkit.report.diff import to_csv, write_diff

    base = side(Net(16))
    r = diff(_timed(base, 1e-3, {"stem": 4e-4, "head": 3e-4}, 1), _timed(side(Net(32)), 1.1e-3, {"stem": 6e-4, "head": 3e-4}, 2))
    page = write_diff(r, tmp_path / "d")
    html = page.read_text()
    assert "waterfall" in html and "effkit diff" in html and "Mann-Whitney" in html
    assert (tmp_path / "d" / "diff.json").is_file() and "stem" in (tmp_path / "d" / "diff.csv").read_text()
    assert to_csv(r).splitlines()[0].startswith("status,path")


def test_the_github_actions_gate_script_runs(tmp_path):
    """The README's CI example (examples/ci/gate.sh, which the workflow runs), run as a script: it passes on an
    unchanged model, fails with one line per rule when the model grows, and refuses a missing baseline."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    model = tmp_path / "my_model.py"
    model.write_text("import torch.nn as nn\n\ndef build():\n    m = nn.Sequential(nn.Linear(8, WIDTH), nn.ReLU(), nn.Linear(WIDTH, 4))\n"
                     "    m.input_shape = (8,)\n    return m\n".replace("WIDTH", "16"))
    script = ROOT / "examples" / "ci" / "gate.sh"
    baseline = tmp_path / "effkit-baseline.json"
    missing = subprocess.run([bash, str(script), f"{model}:build", str(baseline)], env=env, capture_output=True, text=True)
    assert missing.returncode == 2 and "effkit trace" in missing.stderr
    # the baseline, written as the workflow's comment says
    subprocess.run(["effkit", "trace", f"{model}:build", "--device", "meta", "--json", str(baseline)], env=env, check=True, capture_output=True)
    same = subprocess.run([bash, str(script), f"{model}:build", str(baseline)], env=env, capture_output=True, text=True)
    assert same.returncode == 0, same.stderr
    model.write_text(model.read_text().replace("16", "32"))
    grown = subprocess.run([bash, str(script), f"{model}:build", str(baseline)], env=env, capture_output=True, text=True)
    assert grown.returncode == 1 and grown.stderr.count("gate:") == 2, grown.stderr
