"""Analysis on synthetic inputs, every number derived by hand in the comments."""
import json

import pytest
import torch
import torch.nn as nn

import effkit
from effkit.analysis import (Block, LayerCost, ModelAnalysis, Roof, analyse_layers, blocks_for, fusion_what_if, op_kind,
                             residual_blocks, roof_from_spec)
from effkit.errors import UserInputError
from effkit.report.headline import headline

# P = 100 FLOP/s, B = 10 B/s: ridge at 10 FLOP/B
ROOF = Roof("toy", "fp32", 100.0, 10.0, "hand-made", l2_bytes=None)
COSTS = [
    LayerCost("a", "Conv2d", "dense conv", 1000, 50),  # 1000/100 = 10 s vs 50/10 = 5 s -> 10 s, compute-bound
    LayerCost("b", "BatchNorm2d", "norm", 100, 200),  # 1 s vs 20 s -> 20 s, memory-bound
    LayerCost("c", "ReLU", "elementwise", 0, 30),  # 0 vs 3 s -> 3 s, memory-bound
]
MEASURED = {"a": (12.5, 4), "b": (25.0, 2), "c": (2.5, 1)}  # c beats its roofline: flagged


def model(measured=MEASURED, latency=50.0, fusion=None):
    layers = analyse_layers(COSTS, ROOF, measured)
    kernels = sum(m[0] for m in measured.values()) if measured else None
    return ModelAnalysis("toy", 1, "fp32", "toy device", ROOF, tuple(layers), 1100, 550, 10, 5, latency if measured else None,
                         kernels, fusion)


def test_roofline_per_layer():
    a, b, c = analyse_layers(COSTS, ROOF, MEASURED)
    assert (a.roofline_s, a.bound) == (10.0, "compute")
    assert (b.roofline_s, b.bound) == (20.0, "memory")
    assert (c.roofline_s, c.bound) == (3.0, "memory")
    assert a.intensity == 20.0 and ROOF.ridge == 10.0
    assert a.efficiency == 0.8  # 10 / 12.5
    assert a.achieved_flops_per_s == 80.0  # 1000 / 12.5
    assert b.achieved_bytes_per_s == 8.0  # 200 / 25
    assert a.lost_s == 2.5 and b.lost_s == 5.0


def test_gap_ladder():
    m = model()
    assert m.ideal_s == 11.0  # 1100 FLOPs / 100
    assert m.waterline_s == 33.0  # 10 + 20 + 3
    assert m.memory_gap == 3.0  # 33 / 11
    assert m.kernels_s == 40.0  # 12.5 + 25 + 2.5
    assert m.kernel_gap == pytest.approx(40 / 33)
    assert m.overhead_gap == 1.25  # 50 / 40
    assert m.efficiency == 0.22  # 1100 / (50 x 100)
    assert m.ideal_s <= m.waterline_s <= m.kernels_s <= m.latency_s


def test_faster_than_roofline_is_flagged():
    m = model()
    assert [l.path for l in m.flagged] == ["c"]
    assert "1 layer(s) measured faster than their DRAM roofline time; 1 even allowing for cache reuse" in " ".join(headline(m))
    assert not model(measured={"a": (12.5, 1), "b": (25.0, 1), "c": (3.0, 1)}).flagged  # equal is not faster


def test_cache_allowance_explains_or_not():
    from effkit.report.run_dir import flag_rows

    # 40 B moved, 30 of them read, 2 calls; cache 10 B: up to min(30, 2 x 10) = 20 B from cache
    roof = Roof("toy", "fp32", 100.0, 10.0, "hand-made", l2_bytes=10)
    (l,) = analyse_layers([LayerCost("x", "ReLU", "elementwise", 0, 40, bytes_read=30, calls=2)], roof, {"x": (2.5, 2)})
    assert l.roofline_s == 4.0 and l.cached_roofline_s(roof) == 2.0  # (40 - 20) / 10
    m = ModelAnalysis("t", 1, "fp32", "d", roof, (l,), 0, 0, 0, 0, 3.0, 2.5, None)
    (f,) = flag_rows(m)
    assert f["explained_by_cache"] and f["cached_roofline_ms"] == 2000.0 and "cache reuse" in f["reason"]
    assert "all within what reading their input from the cache" in headline(m)[-1]
    (l,) = analyse_layers([LayerCost("x", "ReLU", "elementwise", 0, 40, bytes_read=30, calls=2)], roof, {"x": (1.5, 2)})
    (f,) = flag_rows(ModelAnalysis("t", 1, "fp32", "d", roof, (l,), 0, 0, 0, 0, 3.0, 1.5, None))
    assert not f["explained_by_cache"] and "a count or a ceiling is wrong" in f["reason"]


def test_headline_shares():
    m = model()
    h = headline(m)
    # measured time 40 s: memory-bound b + c = 27.5 s = 69 %; norm (b) alone 25 / 40 = 62 %
    assert "69 % of measured kernel time is in memory-bound layers; norm layers alone are 62 %." in h
    assert h[1].startswith("Gap ladder: ideal 11000.000 ms → waterline 33000.000 ms (×3.00")


def test_counts_only_analysis_uses_roofline_time():
    m = model(measured=None)
    assert m.latency_s is None and m.kernels_s is None and m.efficiency is None
    # roofline time 33 s: memory-bound 23 s = 70 %; norm 20 s = 61 %
    assert "70 % of roofline time is in memory-bound layers; norm layers alone are 61 %." in headline(m)


def test_fusion_what_if_on_a_hand_built_block():
    layers = analyse_layers(COSTS, ROOF)
    # a and b fused: 1100 FLOPs, 60 bytes in + out + weights -> max(11, 6) = 11 s; c stays 3 s
    f = fusion_what_if(layers, [Block("blk", ("a", "b"), 60)], ROOF)
    assert f.waterline_s == 33.0 and f.fused_waterline_s == 14.0
    assert f.speedup == pytest.approx(33 / 14)
    assert f.curve_s == (0.0, 11.0, 14.0)  # the fused block counts where its last layer runs


def test_fusion_bytes_from_a_traced_residual_block():
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)

        def forward(self, x):
            return self.conv(x) + x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Res()

        def forward(self, x):
            return self.block(x)

    tr = effkit.trace(Net(), (4, 8, 8))
    assert residual_blocks(tr) == ["block"]
    (b,) = blocks_for(tr, ["block"])
    # input 1x4x8x8 = 256, output 256, weights 4x4x3x3 = 144 elements; fp32: (256 + 256 + 144) x 4 = 2624 bytes
    assert b.fused_bytes == 2624 and set(b.members) == {"block", "block.conv"}
    a = effkit.analysis.analyse(tr, ROOF)
    # unfused conv: 256 outputs x 36 MACs = 18432 FLOPs (184.32 s) vs (256 + 144 + 256) x 4 = 2624 B (262.4 s) -> 262.4 s
    # the block's add: 256 FLOPs (2.56 s) vs (2 x 256 + 256) x 4 = 3072 B (307.2 s) -> 307.2 s; waterline 569.6 s
    assert a.waterline_s == pytest.approx(569.6)
    # fused: 18688 FLOPs (186.88 s) vs 2624 B (262.4 s) -> 262.4 s
    assert a.fusion.fused_waterline_s == pytest.approx(262.4)


@pytest.mark.parametrize("op,shapes,kind", [
    ("aten.convolution.default", ((1, 8, 4, 4), (16, 8, 3, 3)), "dense conv"),
    ("aten.convolution.default", ((1, 8, 4, 4), (16, 8, 1, 1)), "pointwise conv"),
    ("aten.convolution.default", ((1, 8, 4, 4), (8, 1, 3, 3)), "depthwise conv"),
    ("aten.convolution.default", ((1, 8, 4, 4), (8, 2, 3, 3)), "grouped conv"),
    ("aten.addmm.default", ((16,), (4, 8), (8, 16)), "linear"),
    ("aten._scaled_dot_product_flash_attention_for_cpu.default", ((1, 2, 4, 8),) * 3, "attention"),
    ("aten.native_layer_norm.default", ((1, 4, 8),), "norm"),
    ("aten.max_pool2d_with_indices.default", ((1, 4, 8, 8),), "pooling"),
    ("aten.add.Tensor", ((1, 4), (1, 4)), "elementwise"),
])
def test_layer_kinds(op, shapes, kind):
    assert op_kind(op, shapes) == kind


def test_roofs_from_datasheet_and_file(tmp_path):
    r = roof_from_spec("h100", "bf16")
    assert r.peak_flops == 989.5e12 and r.bandwidth == 3350e9 and "datasheet" in r.name
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"name": "lab box", "peak_flops": {"bf16": 2e14}, "bandwidth_bytes_per_s": 1e12}))
    r = roof_from_spec(str(p), "bf16")
    assert (r.peak_flops, r.bandwidth, r.ridge) == (2e14, 1e12, 200.0)
    with pytest.raises(UserInputError, match="unknown ceilings 'h900'; give a ceilings JSON file or one of: h200_sxm"):
        roof_from_spec("h900", "bf16")
    with pytest.raises(UserInputError, match="T4 has no bf16 rate"):
        roof_from_spec("t4", "bf16")


def test_analysis_round_trips_through_json():
    m = model(fusion=fusion_what_if(analyse_layers(COSTS, ROOF, MEASURED), [Block("blk", ("a", "b"), 60)], ROOF))
    back = ModelAnalysis.from_dict(json.loads(json.dumps(m.to_dict())))
    assert back == m
