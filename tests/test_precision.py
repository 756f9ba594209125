"""Mixed precision, TF32, backend knobs and the three timing figures, on the CPU. Counts by hand in the comments."""
import pytest
import torch
import torch.nn as nn
from typer.testing import CliRunner

import effkit
from effkit import config as C
from effkit.analysis import analyse
from effkit.cli import app
from effkit.config import RunConfig, check_precision, get_precision
from effkit.device.roofs import Roof
from effkit.errors import UserInputError
from effkit.profiling import default_batches
from tests.test_trust import one_line_error


class Small(nn.Module):
    """conv 3->4 (3x3, bias) -> BN -> ReLU -> mean -> linear 4->2 -> softmax."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.act, self.fc = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Linear(4, 2)

    def forward(self, x):
        return torch.softmax(self.fc(self.act(self.bn(self.conv(x))).mean((2, 3))), -1)


# --------------------------------------------------------------------------- the vocabulary
def test_the_precision_vocabulary():
    mixed = get_precision("bf16-mixed")
    assert (mixed.param_dtype, mixed.input_dtype, mixed.autocast_dtype, mixed.compute_dtype) == ("fp32", "fp32", "bf16", "bf16")
    assert get_precision("fp16-mixed").autocast_dtype == "fp16" and not get_precision("bf16").mixed
    assert get_precision("fp32").tf32 is None  # PyTorch's own TF32 switches, not forced off
    assert check_precision("bf16-mixed", "cpu").name == "bf16-mixed"
    with pytest.raises(UserInputError, match=r"precision tf32 cannot run on cpu: .*; choose one of: fp32, fp16, bf16, bf16-mixed, fp16-mixed"):
        check_precision("tf32", "cpu")


def test_a_mixed_precision_this_torch_lacks_is_refused(monkeypatch):
    monkeypatch.setattr(C, "autocast_unsupported", lambda device, dtype: "torch 0.0's cpu autocast does not support float16")
    with pytest.raises(UserInputError, match=r"precision fp16-mixed cannot run on cpu: torch 0.0's cpu autocast does not support float16; "
                                             r"choose one of: fp32, fp16, bf16$"):
        check_precision("fp16-mixed", "cpu")


def test_precision_and_its_dtype_alias_on_the_cli():
    for opt in ("--precision", "--dtype"):
        res = CliRunner().invoke(app, ["trace", "resnet18", "--device", "meta", opt, "bf16-mixed", "--format", "json"])
        assert res.exit_code == 0 and '"precision": "bf16-mixed"' in res.output, res.output
    res = CliRunner().invoke(app, ["trace", "resnet18", "--precision", "fp8"])
    assert res.exit_code == 2 and "fp8" in res.output and "bf16-mixed" in res.output


def test_gpu_defaults_to_batch_1_and_64():
    assert default_batches("cuda:0") == (1, 64) and default_batches("cpu") == (1,)


# --------------------------------------------------------------------------- tracing under autocast
def test_autocast_trace_on_meta_follows_cudas_policy_by_hand():
    fp32 = effkit.trace(Small(), (3, 8, 8), device="meta")
    t = effkit.trace(Small(), (3, 8, 8), dtype="bf16-mixed", device="meta")
    casts = [o for o in t.ops if o.cast]
    # conv (lower precision): input 1x3x8x8 = 192, weight 4x3x3x3 = 108, bias 4 cast fp32 -> bf16 (read 4 B, write 2 B each);
    # BN, ReLU and mean have no policy and run on bf16; linear: weight 2x4 = 8 and bias 2 cast (its input is bf16 already);
    # softmax (float32 policy): its bf16 1x2 input cast up to fp32 (read 2 B, write 4 B each)
    assert [(o.path, o.in_shapes[0], o.out_dtypes[0]) for o in casts] == [
        ("conv", (1, 3, 8, 8), "bfloat16"), ("conv", (4, 3, 3, 3), "bfloat16"), ("conv", (4,), "bfloat16"),
        ("fc", (2, 4), "bfloat16"), ("fc", (2,), "bfloat16"), ("(root)", (1, 2), "float32")]
    # bytes: 192 x 6 + 108 x 6 + 4 x 6 + 8 x 6 + 2 x 6 + 2 x 6 = 1152 + 648 + 24 + 48 + 12 + 12 = 1896
    assert t.totals.casts == 6 and t.totals.cast_bytes == 1896
    dtypes = {o.op.split(".")[1]: o.out_dtypes[0] for o in t.ops if not o.cast}
    assert dtypes["convolution"] == "bfloat16" and dtypes["addmm"] == "bfloat16" and dtypes["_softmax"] == "float32"
    # the arithmetic is the same; only the dtypes, and so the bytes, change
    assert (t.totals.macs, t.totals.flops) == (fp32.totals.macs, fp32.totals.flops) and fp32.totals.casts == 0
    assert "CUDA autocast's op policy" in t.autocast


def test_real_cpu_autocast_follows_the_cpus_policy():
    t = effkit.trace(Small(), (3, 8, 8), dtype="bf16-mixed", device="cpu")
    # the CPU policy has no float32 softmax: the same casts as CUDA's minus the last one
    assert t.totals.casts == 5 and t.totals.cast_bytes == 1896 - 12 and t.autocast == "torch.autocast on cpu"
    assert next(o for o in t.ops if "_softmax" in o.op).out_dtypes[0] == "bfloat16"


def test_without_autocast_the_trace_is_unchanged():
    for p in ("fp32", "bf16"):
        a, b = effkit.trace("resnet18", dtype=p, device="meta", resolution=64), effkit.trace("resnet18", dtype=p, device="cpu", resolution=64)
        assert a.totals == b.totals and a.totals.casts == 0


# --------------------------------------------------------------------------- per-op peaks
def test_per_op_peaks_on_a_model_mixing_conv_matmul_and_norm():
    class Mix(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.norm, self.fc = nn.Conv2d(2, 2, 1, bias=False), nn.LayerNorm(2), nn.Linear(2, 2, bias=False)

        def forward(self, x):  # x 1x2x1x1
            return self.fc(self.norm(self.conv(x).flatten(1)))

    t = effkit.trace(Mix(), (2, 1, 1), device="meta")
    roof = Roof("toy", "fp32", 10.0, 1e12, "hand-made", peaks={"fp32": 10.0, "tf32": 100.0})
    # conv: 2 outputs x 2 MACs = 4 MACs = 8 FLOPs; layer norm: (4 + 4) x 2 elements = 16 FLOPs; linear 1x2x2 = 4 MACs = 8 FLOPs
    a = analyse(t, roof, tf32=(False, True))  # PyTorch's defaults: cuDNN convolutions in TF32, matmuls not
    by = {l.path: l for l in a.layers}
    assert by["conv"].flops_by_peak == {"tf32": 8} and by["conv"].compute_s == pytest.approx(8 / 100)
    assert by["norm"].flops_by_peak == {"fp32": 16} and by["norm"].compute_s == pytest.approx(16 / 10)
    assert by["fc"].flops_by_peak == {"fp32": 8} and by["fc"].compute_s == pytest.approx(8 / 10)
    assert a.ideal_s == pytest.approx(0.08 + 1.6 + 0.8) and set(a.peaks_used()) == {"tf32", "fp32"}
    b = analyse(t, roof, tf32=(True, True))  # matmul TF32 on too: the linear moves to the TF32 peak
    assert {l.path: l.flops_by_peak for l in b.layers}["fc"] == {"tf32": 8}
    m = analyse(effkit.trace(Mix(), (2, 1, 1), dtype="bf16-mixed", device="meta"), Roof("toy", "bf16", 50.0, 1e12, "h", peaks={"fp32": 10.0, "bf16": 50.0}))
    # under autocast the conv and the linear compute in bf16, the layer norm in fp32
    assert {l.path: l.flops_by_peak for l in m.layers} == {"conv": {"bf16": 8}, "norm": {"fp32": 16}, "fc": {"bf16": 8}}


# --------------------------------------------------------------------------- three figures and knobs
def test_three_timing_figures_agree_on_the_cpu():
    r = effkit.bench("resnet18", 2, resolution=64, min_time_s=0.5, layers=False)
    p = r.points[0]
    dev, sync, tput = p.latency_s, p.sync_latency_s, p.batch / p.throughput_samples_per_s
    noise = 3 * (p.timing.iqr_rel + p.sync.iqr_rel + p.throughput.iqr_rel) + 0.05  # no asynchrony on the CPU: equal within their noise
    assert abs(sync / dev - 1) < noise and abs(tput / dev - 1) < noise, (dev, sync, tput, noise)
    row = p.row()
    for key in ("device_time_ms", "sync_latency_ms", "sync_iqr_ms", "throughput_samples_per_s", "throughput_iqr_samples_per_s"):
        assert row[key] is not None, key


def test_every_knob_is_in_the_record_and_restored(tmp_path):
    before = C.backend_state()
    cfg = RunConfig(precision="bf16-mixed", cudnn_benchmark=True, tf32_matmul=True, tf32_cudnn=False, sdpa_backend="math", min_time_s=0.0)
    run = effkit.profiling.run_profile(effkit.resolve("vit_ti_16", resolution=32), cfg, effkit.profiling.ProfileOptions(out=tmp_path / "r"))
    assert C.backend_state() == before  # every switch restored
    p = run.record.models[0].points[0]
    assert p.config.knobs == {"cudnn_benchmark": True, "tf32_matmul": True, "tf32_cudnn": False, "sdpa_backend": "math"}
    # on the CPU the TF32 switches are not touched (they are CUDA's), cudnn.benchmark and the SDPA choice are
    assert p.environment.backend["cudnn_benchmark"] is True and p.environment.backend["sdpa_enabled"] == ["math"]
    assert "cudnn_benchmark=on" in cfg.describe() and "sdpa_backend=math" in (tmp_path / "r" / "index.html").read_text()
    row = run.analyses[0].summary_row()
    assert row["sync_latency_ms"] and row["throughput_samples_per_s"] and "bf16" in row["peaks_used"]


@pytest.mark.parametrize("args,pattern", [
    (("bench", "resnet18", "--cuda-graph", "--compile-mode", "reduce-overhead"),
     r"--cuda-graph with --compile-mode reduce-overhead: that mode captures CUDA graphs of its own"),
    (("bench", "vit_ti_16", "--resolution", "32", "--sdpa-backend", "efficient", "--min-time", "0"),
     r"SDPA backend efficient is not available for this model's attention shapes on cpu: .* \(every batch size skipped\)"),
    (("profile", "resnet18", "--precision", "tf32"), r"precision tf32 cannot run on cpu: tf32 is a CUDA tensor-core mode; choose one of"),
    (("bench", "resnet18", "--sdpa-backend", "warp"), r"Invalid value for '--sdpa-backend'"),
])
def test_bad_knobs(args, pattern):
    res = CliRunner().invoke(app, list(args))
    if "Invalid value" in pattern:
        assert res.exit_code == 2 and "warp" in res.output
    else:
        one_line_error(res, pattern)


def test_an_unavailable_backend_is_a_skipped_point_in_a_multi_point_run(monkeypatch):
    from effkit.run import runner

    calls = {"n": 0}
    real = runner._Session.point

    def point(self, b):  # the second batch size's attention has no kernel under the chosen backend
        calls["n"] += 1
        if b == 2:
            return runner.BenchPoint(self.ref.name, b, "skipped", None, None, None, self.config, None, "SDPA backend flash is not available")
        return real(self, b)

    monkeypatch.setattr(runner._Session, "point", point)
    r = effkit.bench("resnet18", [1, 2], resolution=32, min_time_s=0.0, layers=False)
    assert [p.status for p in r.points] == ["ok", "skipped"] and r.points[1].note.startswith("SDPA backend flash")
