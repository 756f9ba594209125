"""One test per formula, each against a hand count written in its comment.

The ops are run for real under the recorder, so each test also checks that the aten op
the formula is keyed by is the one PyTorch dispatches.
"""
import pytest
import torch
import torch.nn.functional as F

from effkit.trace import formulas
from effkit.trace.formulas import FORMULAS, Cost, formula
from helpers import one, records

f32 = 4  # bytes per fp32 element


def test_conv2d_with_bias():
    x, w, b = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3), torch.randn(4)
    r = one(lambda x: F.conv2d(x, w, b, padding=1), x)
    # out 2x4x8x8 = 512 elements, each a dot product of 3*3*3 = 27 -> 13824 MACs
    assert r.macs == 512 * 27 == 13824
    assert r.flops == 2 * 13824 + 512  # + one bias add per output
    assert r.acts == 512
    # bytes: x 384 + w 108 + b 4 elements read, 512 written
    assert r.bytes_read == (384 + 108 + 4) * f32 and r.bytes_written == 512 * f32


def test_conv2d_grouped_strided_no_bias():
    x, w = torch.randn(1, 8, 9, 9), torch.randn(8, 2, 3, 3)
    r = one(lambda x: F.conv2d(x, w, stride=2, groups=4), x)
    # out 1x8x4x4 = 128; per output (8/4 in-channels) * 3*3 = 18 -> 2304 MACs, no bias
    assert (r.macs, r.flops, r.acts) == (2304, 4608, 128)


def test_depthwise_conv():
    x, w = torch.randn(1, 16, 10, 10), torch.randn(16, 1, 7, 7)
    r = one(lambda x: F.conv2d(x, w, padding=3, groups=16), x)
    # 16*10*10 = 1600 outputs x 49 taps = 78400 MACs
    assert r.macs == 78400


def test_conv_transpose():
    x, w = torch.randn(1, 4, 5, 5), torch.randn(4, 6, 2, 2)
    r = one(lambda x: F.conv_transpose2d(x, w, stride=2), x)
    # each of 4*5*5 = 100 input elements is scattered through 6*2*2 = 24 weights: 2400 MACs
    assert r.macs == 2400 and r.acts == 6 * 10 * 10


def test_conv_backward():
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    conv = torch.nn.Conv2d(3, 5, 3)
    rs = [r for r in records(conv, x, train=True) if r.op.startswith("aten.convolution_backward")]
    assert len(rs) == 1
    # forward MACs: out 2x5x4x4 = 160 outputs x 27 = 4320; grad_input + grad_weight = 2 x 4320
    assert rs[0].macs == 8640
    assert rs[0].flops == 2 * 8640 + 160  # + grad_bias: one add per grad_out element


def test_linear_addmm():
    x, w, b = torch.randn(4, 8), torch.randn(16, 8), torch.randn(16)
    r = one(lambda x: F.linear(x, w, b), x, op="addmm")
    # m=4, k=8, n=16: 512 MACs; + 4*16 = 64 bias adds
    assert (r.macs, r.flops, r.acts) == (512, 1024 + 64, 64)


def test_mm_and_bmm_and_baddbmm():
    a, b = torch.randn(3, 5), torch.randn(5, 7)
    assert one(torch.mm, a, b).macs == 3 * 5 * 7  # 105
    a, b = torch.randn(2, 3, 5), torch.randn(2, 5, 7)
    r = one(torch.bmm, a, b)
    assert (r.macs, r.flops, r.acts) == (210, 420, 42)  # 2*3*5*7; out 2*3*7
    c = torch.randn(2, 3, 7)
    assert one(lambda c: torch.baddbmm(c, a, b), c).flops == 420 + 42  # + one add per output


def test_mv_and_dot():
    assert one(torch.mv, torch.randn(4, 6), torch.randn(6)).macs == 24  # 4 rows of 6
    assert one(torch.dot, torch.randn(9), torch.randn(9)).flops == 18  # 9 MACs


def test_matmul_3d_and_einsum_reach_products():
    a, b = torch.randn(2, 3, 4), torch.randn(4, 5)
    macs = sum(r.macs for r in records(torch.matmul, a, b))
    assert macs == 2 * 3 * 4 * 5  # 120
    x, y = torch.randn(2, 3, 4), torch.randn(2, 4, 6)
    assert sum(r.macs for r in records(lambda x, y: torch.einsum("bij,bjk->bik", x, y), x, y)) == 2 * 3 * 4 * 6


def test_sdpa_fused():
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 8)  # B=2, H=3, L=S=5, E=Ev=8
    rs = [r for r in records(F.scaled_dot_product_attention, q, k, v) if r.macs]
    assert len(rs) == 1 and "scaled_dot_product" in rs[0].op
    # QK^T: 6 heads x 5 x 5 x 8 = 1200; PV: 6 x 5 x 5 x 8 = 1200 -> 2400 MACs
    assert rs[0].macs == 2400
    # + per score (150 scores): 1 scale + 5 softmax = 900
    assert rs[0].flops == 4800 + 900
    assert rs[0].acts == 150 + 6 * 5 * 8  # scores + output
    # fused: reads q, k, v (720 elements), writes the output (240) and its logsumexp (30)
    assert rs[0].bytes_read == 720 * f32 and rs[0].bytes_written == (240 + 30) * f32


def test_sdpa_math_path_has_the_same_macs():
    # Ev != E: the CPU kernel falls back to bmm + softmax; the products are the same MACs
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 4)
    rs = records(F.scaled_dot_product_attention, q, k, v)
    assert sum(r.macs for r in rs) == 6 * 25 * (8 + 4)  # 1800
    assert sum(r.acts for r in rs) == 150 + 6 * 5 * 4


def test_native_mha_counts_like_linears_plus_sdpa():
    # nn.MultiheadAttention in eval/no_grad takes one fused op; effkit's ViT attention uses
    # linear + SDPA + linear with the same parameters. The counts must agree.
    from effkit.models.vit import SelfAttention

    mha = torch.nn.MultiheadAttention(16, 2, batch_first=True).eval()
    x = torch.randn(3, 5, 16)  # B=3, L=5, E=16, 2 heads of 8
    fused = [r for r in records(lambda x: mha(x, x, x, need_weights=False)[0], x) if r.macs]
    assert [r.op for r in fused] == ["aten._native_multi_head_attention.default"]
    ours = [r for r in records(SelfAttention(16, 2).eval(), x) if r.macs]
    # hand count: projections 4 x (15 tokens x 16 x 16) = 15360; products 3 x 5 x 5 x 2 x 16 = 2400
    assert fused[0].macs == sum(r.macs for r in ours) == 15360 + 2400
    assert fused[0].flops == sum(r.flops for r in ours)
    assert fused[0].acts == sum(r.acts for r in ours)


def test_sdpa_backward_formula():
    # pure function of shapes: 6 heads, L=S=5, E=8, Ev=4: 150 scores x (3*8 + 2*4) = 4800 MACs
    c = formulas.sdpa_backward((2, 3, 5, 4), (2, 3, 5, 8), (2, 3, 5, 8), (2, 3, 5, 4), out=None)
    assert c.macs == 4800 and c.flops == 9600 + 8 * 150


@pytest.mark.parametrize("fn,per_elem", [
    (torch.add, 1), (torch.mul, 1), (torch.relu, 1), (torch.sigmoid, 4), (F.silu, 5), (F.hardswish, 4),
    (F.hardsigmoid, 3), (torch.tanh, 1), (lambda x: F.leaky_relu(x, 0.1), 2), (F.relu6, 1),
])
def test_pointwise(fn, per_elem):
    x = torch.randn(3, 7)
    rs = [r for r in records(lambda x: fn(x, x) if fn in (torch.add, torch.mul) else fn(x), x) if r.flops]
    assert sum(r.flops for r in rs) == per_elem * 21  # 21 output elements


def test_gelu_both_forms():
    x = torch.randn(10)
    assert one(F.gelu, x).flops == 5 * 10  # 0.5*x*(1+erf(x/sqrt2)): 5 per element
    assert one(lambda x: F.gelu(x, approximate="tanh"), x).flops == 9 * 10


def test_gelu_and_silu_backward():
    x = torch.randn(6, requires_grad=True)
    g = [r for r in records(F.gelu, x, train=True) if "gelu_backward" in r.op][0]
    assert g.flops == 10 * 6
    s = [r for r in records(F.silu, x, train=True) if "silu_backward" in r.op][0]
    assert s.flops == 9 * 6


def test_reductions():
    x = torch.randn(4, 5)
    assert one(torch.sum, x).flops == 20  # one add per input element
    assert one(lambda x: x.mean(dim=1), x).flops == 20 + 4  # + one divide per output (4 rows)
    assert one(lambda x: x.var(dim=1), x).flops == 80  # 4 per element
    assert one(lambda x: torch.linalg.vector_norm(x), x).flops == 40  # square + add
    assert one(lambda x: torch.logsumexp(x, 1), x).flops == 4 * 20 + 4


def test_softmax_and_backward():
    x = torch.randn(2, 6, requires_grad=True)
    rs = records(lambda x: torch.softmax(x, -1), x, train=True)
    fwd = [r for r in rs if r.phase == "forward" and r.flops]
    bwd = [r for r in rs if "softmax_backward" in r.op]
    assert fwd[0].flops == 5 * 12  # max, subtract, exp, sum, divide
    assert bwd[0].flops == 4 * 12


def test_batch_norm_eval_and_train():
    x = torch.randn(2, 3, 4, 4)  # 96 elements
    bn = torch.nn.BatchNorm2d(3).eval()
    assert sum(r.flops for r in records(bn, x)) == 4 * 96  # (x - mean) * rstd * w + b
    bn.train()
    rs = [r for r in records(bn, x) if "batch_norm" in r.op]
    assert rs[0].flops == 8 * 96  # + statistics: mean 1, variance 3 per element


def test_layer_norm_and_group_norm():
    x = torch.randn(2, 5, 8)  # 80 elements
    assert one(torch.nn.LayerNorm(8), x).flops == 8 * 80  # stats 4 + affine normalize 4
    assert one(lambda x: F.layer_norm(x, (8,)), x).flops == 6 * 80  # no affine: 2 fewer
    x = torch.randn(2, 4, 3, 3)  # 72
    assert one(torch.nn.GroupNorm(2, 4), x, op="group_norm").flops == 8 * 72


def test_norm_backward():
    x = torch.randn(2, 5, 8, requires_grad=True)
    r = [r for r in records(torch.nn.LayerNorm(8), x, train=True) if "layer_norm_backward" in r.op][0]
    assert r.flops == 8 * 80


def test_pooling():
    x = torch.randn(1, 2, 8, 8)
    r = one(lambda x: F.max_pool2d(x, 3, 2, 1), x)
    assert r.flops == 2 * 4 * 4 * 9  # 32 outputs x 3x3 compares
    assert one(lambda x: F.avg_pool2d(x, 2), x).flops == 2 * 4 * 4 * (4 + 1)  # 4 adds + divide
    assert one(lambda x: F.adaptive_avg_pool2d(x, 2), x).flops == 128 + 8  # every input + divide per output
    assert one(lambda x: F.adaptive_max_pool2d(x, 2), x, op="adaptive_max").flops == 128


def test_pooling_backward():
    x = torch.randn(1, 2, 8, 8, requires_grad=True)
    mp = [r for r in records(lambda x: F.max_pool2d(x, 2), x, train=True) if "backward" in r.op][0]
    assert mp.flops == 2 * 4 * 4  # one scatter per output gradient
    ap = [r for r in records(lambda x: F.adaptive_avg_pool2d(x, 2), x, train=True) if "adaptive_avg_pool2d_backward" in r.op]
    assert ap[0].flops == 128  # one divided output gradient per input element (2x8x8)


def test_upsample_bilinear():
    x = torch.randn(1, 1, 2, 2)
    r = one(lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"), x)
    assert r.flops == 11 * 16


def test_bytes_rules():
    # broadcast bias: a stride-0 expanded tensor is read at its real size
    x, b = torch.randn(4, 8), torch.randn(1, 8)
    r = one(lambda x: x + b.expand(4, 8), x)
    assert r.bytes_read == (32 + 8) * f32
    # x * x reads x once
    assert one(lambda x: x * x, x).bytes_read == 32 * f32
    # copy_ writes its destination without reading it
    dst = torch.empty(4, 8)
    assert one(lambda x: dst.copy_(x), x).bytes_read == 32 * f32
    # embedding reads only the gathered rows and the indices
    table, idx = torch.randn(1000, 16), torch.tensor([1, 5, 7])
    r = one(lambda i: F.embedding(i, table), idx)
    assert r.bytes_read == 3 * 16 * f32 + 3 * 8 and r.bytes_written == 3 * 16 * f32
    # casts cost bytes but no FLOPs
    r = one(lambda x: x.to(torch.float16), x)
    assert r.flops == 0 and r.bytes_read == 32 * 4 and r.bytes_written == 32 * 2


def test_views_are_free():
    x = torch.randn(2, 3, 4)
    assert records(lambda x: x.view(6, 4).transpose(0, 1).unsqueeze(0)[0], x) == []


def test_registry_refuses_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        formula("mm")(lambda *a, out: Cost())
    assert torch.ops.aten.mm in FORMULAS
