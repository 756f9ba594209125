"""The fusion check says when its own times are in doubt: a configuration timed with a large spread or under load, and
eager timed twice in one run (the profile's measurement, then the check's) disagreeing beyond both spreads. On this
machine a first `effkit profile convfirst_net --fused` timed eager at 27.271 ms (IQR 6.021) in the check against 8.146 ms
(IQR 0.432) in the profile, with no word said; a second run gave 8.622 (IQR 0.283)."""
import json
from dataclasses import replace
from types import SimpleNamespace

import pytest

from effkit.analysis.stats import disagree
from effkit.profiling import timing_problems
from effkit.report.fusion import fusion_note, fusion_sentences, model_table
from effkit.timing import Timing


def test_disagree_beyond_both_spreads_and_a_tenth():
    # the run above: |27.271 - 8.146| = 19.125 ms > both IQRs (6.021, 0.432) and > 0.8146 (a tenth of 8.146)
    assert disagree(27.271, 6.021, 8.146, 0.432)
    # two H200 timings of one model a session apart: |0.594 - 0.5862| = 0.0078 ms, over both IQRs (0.003, 0.002) but under
    # a tenth of 0.5862 (0.0586): a drift, not a problem
    assert not disagree(0.594, 0.003, 0.5862, 0.002)
    # 10 against 12 ms: 2 ms apart, over a tenth (1.0) but within the larger IQR (3.0)
    assert not disagree(10.0, 3.0, 12.0, 1.0)
    assert disagree(10.0, 0.5, 12.0, 1.0)  # 2 > 1.0 and 2 > 1.0
    assert not disagree(0.0, None, 12.0, None)  # a figure that was not measured


def _point(samples_ms, load=()):
    t = Timing(tuple(v / 1e3 for v in samples_ms), 3, "perf_counter")
    return SimpleNamespace(latency_s=t.median_s, timing=t, environment=SimpleNamespace(load_issues=list(load)))


def test_timing_problems_name_the_spread_the_load_and_the_disagreement():
    tight = [10.0, 10.1, 10.0, 9.9, 10.0, 10.1, 9.9, 10.0, 10.0]  # sorted 9.9 9.9 10.0 x5 10.1 10.1: q1 = q3 = 10.0, IQR 0
    wide = [10.0, 14.0, 8.0, 12.0, 10.0, 7.0, 13.0, 10.0, 9.0]  # sorted 7 8 9 10 10 10 12 13 14: q1 9, q3 12, IQR 3 = 30 %
    points = {"eager": _point(tight), "compile": _point(wide), "fused": _point(tight, ["2 other processes used 150 % CPU"]),
              "fused_compile": _point(tight)}
    out = timing_problems(points, eager_reference=(10.05, 0.2))  # eager agrees with the profile's 10.05 (IQR 0.2)
    assert out == ["torch.compile timed with a large spread: its IQR is 30 % of its median over 9 samples",
                   "block-fused measured under load (2 other processes used 150 % CPU)"]
    out = timing_problems({"eager": _point(tight)}, eager_reference=(30.0, 1.0))
    (only,) = out
    # 10.000 here, 30.000 there: 3.00x apart
    assert only.startswith("eager, timed twice in this run, disagrees with itself: 10.000 ms (IQR 0.000) here against 30.000 ms (IQR 1.000)")
    assert "3.00x apart" in only and "a measurement problem" in only
    assert timing_problems({"eager": _point(tight)}) == []  # no reference (a compiled profile): nothing to compare


ROW = {"batch": 1, "fused_kernel": "the folded math in PyTorch", "fused_blocks": 12, "unfused_blocks": 0, "fused_stems": 1, "problem": None,
       "eager_ms": 27.271, "eager_iqr_ms": 6.021, "compile_ms": 8.202, "compile_iqr_ms": 0.249, "fused_ms": 7.741, "fused_iqr_ms": 0.262,
       "fused_compile_ms": 7.350, "fused_compile_iqr_ms": 0.250, "waterline_ms": 5.775, "fused_waterline_ms": 5.467,
       "fused_over_fused_waterline": 1.416, "timing_problems": ["eager timed with a large spread: its IQR is 22 % of its median over 40 samples"]}


def test_the_views_say_the_timing_is_in_doubt():
    note = fusion_note(ROW)
    assert note.endswith(". ⚠ Timing in doubt at batch 1, so are the ratios: eager timed with a large spread: its IQR is 22 % of its "
                         "median over 40 samples")
    assert model_table([ROW])[0]["batch"] == "1 ⚠ timing in doubt (see the notes)"
    (answer,) = fusion_sentences([ROW])
    assert answer.startswith("Measured (fusion check, batch 1): the block-fused model ran 7.350 ms")
    assert answer.endswith("⚠ But this batch's timing is in doubt (1 problem, in the notes): measure again on an idle machine before acting on it.")
    clean = {**ROW, "timing_problems": []}
    assert "⚠" not in fusion_note(clean) and model_table([clean])[0]["batch"] == 1 and "⚠" not in fusion_sentences([clean])[0]


def test_a_profile_whose_eager_disagrees_with_the_check_says_so(tmp_path, monkeypatch):
    # the profile's own eager measurement made 100x what it was: the check's eager must disagree with it, and the row,
    # the notes and the report say so
    from effkit.profiling import run_fusion_check

    from helpers import cpu_profile

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    run, ref, config, ceil = cpu_profile(tmp_path)
    run = replace(run, analyses=tuple(replace(a, latency_s=100 * a.latency_s, latency_iqr_s=0.0) for a in run.analyses))
    run, (row,) = run_fusion_check(run, ref, config, ceilings=ceil, selective=False)
    assert any("disagrees with itself" in p for p in row["timing_problems"]), row["timing_problems"]
    notes = json.loads((tmp_path / "p" / "run.json").read_text())["notes"]
    assert any("Timing in doubt at batch 1" in n and "disagrees with itself" in n for n in notes)
    assert "timing in doubt (see the notes)" in (tmp_path / "p" / "index.html").read_text()


def test_a_compiled_profile_is_not_eager_and_is_not_compared(tmp_path, monkeypatch):
    import effkit.profiling as profiling

    seen = {}
    monkeypatch.setattr(profiling, "fusion_check", lambda model, **kw: seen.update(kw) or [])
    monkeypatch.setattr(profiling, "add_fusion_check", lambda run, rows: run)
    a = SimpleNamespace(batch=1, latency_s=0.01, latency_iqr_s=0.001)
    run = SimpleNamespace(analyses=(a,), folder=tmp_path, record=None)
    plain = profiling._config("cpu", 1, "fp32", True, False, False, 0.02)
    profiling.run_fusion_check(run, "m", plain)
    assert seen["eager_reference"] == {1: pytest.approx((10.0, 1.0))}
    profiling.run_fusion_check(run, "m", plain.replace(compile=True))
    assert seen["eager_reference"] is None
