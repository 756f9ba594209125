"""The tracer's attribution, coverage ledger, meta tracing and training mode."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import effkit
from effkit.errors import CoverageError, ModelRunError, UserInputError
from effkit.trace.result import ROOT


class Block(nn.Module):
    """conv -> bn, plus a residual add and an interpolate in the parent's own forward."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.bn(self.conv(x)) + x  # the add belongs to this block
        return F.interpolate(y, scale_factor=2, mode="nearest")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.body = nn.Sequential(Block(), nn.ReLU())
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        x = self.body(self.stem(x))
        return self.head(x.mean((2, 3)))  # the mean belongs to the root


def test_attribution_to_innermost_module_and_parents():
    r = effkit.trace(Net(), (3, 8, 8), batch=2)
    by = {l.path: l for l in r.layers}
    assert [l.path for l in r.layers] == ["stem", "body.0.conv", "body.0.bn", "body.0", "body.1", ROOT, "head"]
    # body.0's own ops: the residual add (2x4x8x8 = 512 elements) and the interpolate copy
    ops = [o.op for o in r.ops if o.path == "body.0"]
    assert ops == ["aten.add.Tensor", "aten.upsample_nearest2d.default"]
    assert by["body.0"].flops == 512
    assert by["body.0"].output_shape == (2, 4, 16, 16)
    assert by["body.0.conv"].macs == 512 * 36  # 512 outputs x 4 channels x 3x3
    assert by[ROOT].flops == 2 * 4 * 256 + 8  # mean over 16x16: every input + a divide per output
    assert by["head"].params == 4 * 2 + 2 and by["stem"].params == 3 * 4 + 4
    assert r.params == sum(p.numel() for p in Net().parameters())


def test_rollup_depth_keeps_totals():
    r = effkit.trace(Net(), (3, 8, 8))
    for depth in (0, 1, 2):
        rows = r.rollup(depth)
        assert sum(l.flops for l in rows) == r.totals.flops
        assert sum(l.params for l in rows) == r.params
    assert [l.path for l in r.rollup(1)] == ["stem", "body", ROOT, "head"]
    assert r.rollup(0)[0].path == ROOT


def test_uncovered_op_is_listed_never_silently_zero():
    class Odd(nn.Module):
        def forward(self, x):
            return torch.cumprod(x, 1)  # no formula for cumprod

    r = effkit.trace(Odd(), (5,))
    assert [(u.op, u.count, u.layers) for u in r.uncovered] == [("aten.cumprod", 1, (ROOT,))]
    assert r.to_dict()["uncovered"][0]["op"] == "aten.cumprod"
    with pytest.raises(CoverageError, match="aten.cumprod x1"):
        effkit.trace(Odd(), (5,), strict=True)


@pytest.mark.parametrize("name", ["resnet18", "convnext_tiny", "efficientnet_b0", "mobilenet_v2", "vit_b_16"])
def test_meta_and_real_traces_are_identical(name):
    res = None if name == "vit_b_16" else 96
    real = effkit.trace(name, device="cpu", resolution=res, batch=2)
    meta = effkit.trace(name, device="meta", resolution=res, batch=2)
    assert real.layers == meta.layers
    assert real.totals == meta.totals


def test_meta_trace_of_a_module_instance():
    m = Net()
    assert effkit.trace(m, (3, 8, 8), device="meta").layers == effkit.trace(m, (3, 8, 8)).layers
    assert next(m.parameters()).device.type == "cpu"  # the caller's model is untouched


def test_training_mode_linear_hand_count():
    m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    r = effkit.trace(m, (8,), batch=4, mode="train")
    by = {l.path: l for l in r.layers}
    # forward addmm: 4x8x16 = 512 MACs -> 1024 + 64 bias adds
    assert by["0"].flops == 1088
    # backward of layer 0: its input needs no gradient, so only grad_weight (16x4 @ 4x8 = 512 MACs)
    # and grad_bias (a sum over 4x16 = 64 elements)
    assert by["0"].bwd_macs == 512 and by["0"].bwd_flops == 1024 + 64
    # layer 2: grad_input (4x4 @ 4x16 = 256 MACs) + grad_weight (4x4 @ 4x16 = 256) + grad_bias (16 adds)
    assert by["2"].bwd_macs == 512 and by["2"].bwd_flops == 1024 + 16
    assert by["1"].bwd_flops == 64  # threshold_backward: one select per element
    # saved for backward: linear 0 its input (4x8 fp32 = 128 B); relu its output (4x16 = 256 B),
    # which linear 2 also saves (the same storage counts once)
    assert by["0"].saved_bytes == 128 and by["1"].saved_bytes == 256 and by["2"].saved_bytes == 0


def test_training_mode_meta_matches_real_totals():
    for name in ["resnet18", "vit_b_16"]:
        res = None if name == "vit_b_16" else 64
        a = effkit.trace(name, resolution=res, mode="train")
        b = effkit.trace(name, resolution=res, mode="train", device="meta")
        assert a.totals == b.totals
        assert not [l for l in a.layers if l.path == "(autograd)"]
        assert a.totals.bwd_flops > 1.8 * a.totals.flops  # backward costs about twice the forward


def test_macs_equal_fvcore_on_conv_linear_matmul_models():
    class Mix(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 3, stride=2, bias=False)
            self.c2 = nn.Conv2d(8, 16, 3, groups=4, bias=False)
            self.fc = nn.Linear(16 * 5 * 5, 32)
            self.proj = nn.Linear(32, 32, bias=False)

        def forward(self, x):
            x = self.c2(self.c1(x)).flatten(1)
            h = self.fc(x).unsqueeze(-1)  # (N, 32, 1)
            return self.proj(torch.matmul(h, h.transpose(1, 2)))  # (N, 32, 32) @ proj

    r = effkit.trace(Mix(), (3, 15, 15), batch=2, counter="fvcore")
    df = r.to_frame()
    assert (df["macs"] == df["fvcore_flops"]).all()
    assert r.totals.macs == r.fvcore.flops[""]
    assert (df["acts"] == df["fvcore_acts"]).all()


def test_forward_error_names_layer_and_op():
    bad = nn.Sequential(nn.Linear(4, 4), nn.Linear(5, 2))
    with pytest.raises(ModelRunError, match=r"layer '1' failed at op aten\.(addmm|mm)"):
        effkit.trace(bad, (4,))


def test_bad_arguments():
    with pytest.raises(UserInputError, match="batch must be a positive integer, got 0"):
        effkit.trace("resnet18", batch=0)
    with pytest.raises(UserInputError, match="resolution must be a positive integer, got -3"):
        effkit.trace("resnet18", resolution=-3)
    with pytest.raises(UserInputError, match="unknown precision 'fp8'; choose one of: fp32, tf32, fp16, bf16, bf16-mixed, fp16-mixed"):
        effkit.trace("resnet18", dtype="fp8")
    with pytest.raises(UserInputError, match="unknown device 'tpu'"):
        effkit.trace("resnet18", device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserInputError, match="CUDA is not available"):
            effkit.trace("resnet18", device="cuda")
    with pytest.raises(UserInputError, match="fvcore needs real tensors"):
        effkit.trace("resnet18", device="meta", counter="fvcore")


def test_dtype_the_device_cannot_run():
    class Inv(nn.Module):
        def forward(self, x):
            return torch.linalg.inv(x)

    with pytest.raises(UserInputError, match=r"precision fp16 cannot run on cpu: .*linalg.*use --precision fp32 or --device meta"):
        effkit.trace(Inv(), (3, 3), dtype="fp16")
    # meta tensors apply the same dtype checks (and then cannot suggest meta)
    with pytest.raises(UserInputError, match=r"precision fp16 cannot run on meta: .*use --precision fp32$"):
        effkit.trace(Inv(), (3, 3), dtype="fp16", device="meta")


def test_half_precision_bytes():
    r16 = effkit.trace(nn.Linear(8, 8), (8,), dtype="bf16", device="meta")
    r32 = effkit.trace(nn.Linear(8, 8), (8,))
    assert r16.totals.macs == r32.totals.macs and r16.totals.bytes_read * 2 == r32.totals.bytes_read


def test_to_frame_columns_and_json():
    r = effkit.trace(Net(), (3, 8, 8))
    df = r.to_frame()
    for col in ["path", "module_type", "output_shape", "params", "macs", "flops", "acts", "activation_bytes",
                "bytes_read", "bytes_written", "intensity_flop_per_byte"]:
        assert col in df.columns
    d = r.to_dict()
    assert {"macs", "flops", "params", "acts", "activation_bytes", "bytes_read", "bytes_written"} <= set(d["totals"])
    assert d["totals"]["flops"] == df["flops"].sum() and "conventions" in d
