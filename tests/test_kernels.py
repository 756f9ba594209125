"""Block-fused kernels (issue 19): BatchNorm folding by hand, the module swap against the unfused PyTorch model, and the
Triton kernels in Triton's interpreter (TRITON_INTERPRET=1: CPU, fp32, where its tl.dot is right) against the folded
math in PyTorch, on small shapes chosen to exercise every mask (widths that are not powers of two, partial tiles)."""
from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before Triton is imported: its jit decides then whether to interpret

import pytest
import torch
import torch.nn as nn

from effkit.errors import UserInputError
from effkit.kernels import (FusedConvAct, FusedConvFirst, FusedMBConv, block_diagonal_pairs, fold_bn, fuse_blocks, reference_convfirst, reference_mbconv,
                           triton_available)
from effkit.models import build_model
from effkit.models.convfirst import ConvFirstBlock, MBConvBlock


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """BatchNorms with non-trivial statistics, so that folding them is tested (fresh ones are the identity)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = 0.5 + torch.rand(m.num_features, generator=g)
            m.bias.data = 0.1 * torch.randn(m.num_features, generator=g)
            m.running_mean = 0.1 * torch.randn(m.num_features, generator=g)
            m.running_var = 0.5 + torch.rand(m.num_features, generator=g)
    return model.eval()


def _swapped(name: str, batch: int = 2, **fuse_kw):
    """A zoo network at width 0.5 and 32 pixels with non-trivial BatchNorms, swapped by fuse_blocks(**fuse_kw): (the
    model, fuse_blocks' report, its output before the swap, its output after)."""
    model = _randomise_bn(build_model(name, width=0.5, resolution=32).model)
    x = torch.randn(batch, 3, 32, 32)
    with torch.no_grad():
        want = model(x)
        _, report = fuse_blocks(model, **fuse_kw)
        got = model(x)
    return model, report, want, got


def test_fold_bn_by_hand():
    conv, bn = nn.Conv2d(1, 1, 1, bias=True), nn.BatchNorm2d(1, eps=1.0)
    conv.weight.data.fill_(2.0)
    conv.bias.data.fill_(1.0)
    bn.weight.data.fill_(3.0)
    bn.bias.data.fill_(0.5)
    bn.running_mean.fill_(1.0)
    bn.running_var.fill_(3.0)
    w, b = fold_bn(conv, bn)
    # s = 3 / sqrt(3 + 1) = 1.5; W' = 2 x 1.5 = 3; b' = (1 - 1) x 1.5 + 0.5 = 0.5
    assert w.item() == pytest.approx(3.0) and b.item() == pytest.approx(0.5)
    x = torch.randn(1, 1, 4, 4)
    assert torch.allclose(bn.eval()(conv(x)), 3.0 * x + 0.5, atol=1e-6)


@pytest.mark.parametrize("name, fused_type", [("convfirst_net", FusedConvFirst), ("mbconv_net", FusedMBConv)])
def test_fuse_blocks_swaps_the_stride_1_blocks_and_keeps_the_outputs(name, fused_type, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # the folded math in PyTorch here; the kernels are tested below
    model, report, want, got = _swapped(name, strided=False)
    # depths (2, 2, 6, 2): the first block of each stage strides 2 and changes width (a conv on the shortcut): 4 stay
    # unfused, the other 8 are fused
    assert len(report["fused"]) == 8 and len(report["unfused"]) == 4
    assert all(p.endswith(".0") and "stride or a width change" in why for p, why in report["unfused"])
    assert sum(isinstance(m, fused_type) for m in model.modules()) == 8
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4), (got - want).abs().max()


def test_fuse_blocks_fuses_only_what_select_picks(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    _, report, want, got = _swapped("convfirst_net", 1, select=lambda path, blk, kind: blk.body[0][0].in_channels == 96, strided=False)
    # widths 24/48/96/192 at width 0.5, depths (2, 2, 6, 2): the third stage has 5 stride-1 blocks of 96 channels
    assert len(report["fused"]) == 5 and all(p.startswith("stages.2.") for p in report["fused"])
    assert sum("left unfused by select" in why for _, why in report["unfused"]) == 3  # the other stride-1 blocks
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4)


def test_fuse_blocks_fuses_the_strided_convfirst_blocks_by_default(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    model, report, want, got = _swapped("convfirst_net")
    # all 12 blocks; the first of each stage strides 2 and changes width, its 1x1 conv + BN shortcut folded in
    assert len(report["fused"]) == 12 and report["unfused"] == []
    assert [m.stride for m in model.modules() if isinstance(m, FusedConvFirst)].count(2) == 4
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4), (got - want).abs().max()
    # MBConv has no strided kernel: its strided blocks stay unfused
    mb = _randomise_bn(build_model("mbconv_net", width=0.5, resolution=32).model)
    _, report = fuse_blocks(mb)
    assert len(report["fused"]) == 8 and len(report["unfused"]) == 4


def test_fuse_blocks_wants_eval_mode():
    with pytest.raises(UserInputError, match=r"model.eval\(\)"):
        fuse_blocks(build_model("convfirst_net", width=0.25, resolution=32).model)


def test_the_references_are_the_blocks_folded():
    torch.manual_seed(0)
    for block, kind in ((ConvFirstBlock(24), "convfirst"), (MBConvBlock(24), "mbconv")):
        _randomise_bn(block)
        x = torch.randn(2, 24, 6, 5)
        (c1, n1, _), (c2, n2, _), (c3, n3, _) = [(m[0], m[1], None) for m in block.body]
        (w1, b1), (w2, b2), (w3, b3) = fold_bn(c1, n1), fold_bn(c2, n2), fold_bn(c3, n3)
        with torch.no_grad():
            want = block(x)
            got = (reference_convfirst(x, w1, b1, w2[:, :, 0, 0], b2, w3[:, :, 0, 0], b3, 8) if kind == "convfirst"
                   else reference_mbconv(x, w1[:, :, 0, 0], b1, w2, b2, w3[:, :, 0, 0], b3))
        assert torch.allclose(got, want, atol=1e-5), kind
    block = _randomise_bn(ConvFirstBlock(24, 40, stride=2))  # strided, width-changing: a 1x1 conv + BN on the shortcut
    x = torch.randn(2, 24, 7, 6)
    (w1, b1), (w2, b2), (w3, b3), (ws, bs) = [fold_bn(m[0], m[1]) for m in (*block.body, block.shortcut)]
    with torch.no_grad():
        got = reference_convfirst(x, w1, b1, w2[:, :, 0, 0], b2, w3[:, :, 0, 0], b3, 8, stride=2, ws=ws[:, :, 0, 0], bs=bs)
        assert got.shape == (2, 40, 4, 3) and torch.allclose(got, block(x), atol=1e-5)


needs_triton = pytest.mark.skipif(not triton_available(), reason="triton is not installed (pip install effkit[kernels])")


def _params(c: int, expand: int, k: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, scale=0.2: scale * torch.randn(*s, generator=g)  # noqa: E731
    hid = c * expand
    return {"convfirst": (r(c, 8, k, k), r(c, scale=0.1), r(hid, c), r(hid, scale=0.1), r(c, hid, scale=0.1), r(c, scale=0.1)),
            "mbconv": (r(hid, c), r(hid, scale=0.1), r(hid, 1, k, k), r(hid, scale=0.1), r(c, hid, scale=0.1), r(c, scale=0.1))}


def test_the_channel_tile_by_hand():
    from effkit.kernels.layout import block_c_of

    # the width rounded up to a power of two, never below 16 (a tensor-core dot's minimum): the zoo's 48/96/192/384
    assert [block_c_of(c) for c in (1, 8, 16, 17, 48, 96, 192, 384)] == [16, 16, 16, 32, 64, 128, 256, 512]


def test_block_diagonal_pairs_by_hand():
    # C = 24 (three groups of 8), k = 1: chunk 0 holds groups 0 and 1 (channels 0-15), chunk 1 holds group 2 (16-23)
    w1 = 1.0 + torch.arange(24 * 8, dtype=torch.float32).reshape(24, 8, 1, 1)  # w1[c, j] = 8c + j + 1, none zero
    wbd = block_diagonal_pairs(w1, 32)
    assert wbd.shape == (1, 2, 16, 16)
    # output channel 9 (group 1: inputs 8-15) reads input 8 + j with weight w1[9, j] = 9·8 + j + 1, at [chunk 0, i = 8 + j, o = 9]
    assert wbd[0, 0, 8:16, 9].tolist() == [73.0 + j for j in range(8)] and wbd[0, 0, 0:8, 9].abs().sum() == 0
    # output channel 17 (group 2: inputs 16-23) lands in chunk 1 at o = 1, reading i = 0..7; the padded half is zero
    assert wbd[0, 1, 0:8, 1].tolist() == [137.0 + j for j in range(8)] and wbd[0, 1, 8:, :].abs().sum() == 0
    assert (wbd != 0).sum() == 24 * 8  # every weight once, nothing else


@needs_triton
@pytest.mark.parametrize("group_conv", ["pairs", "dense", "fma"])
@pytest.mark.parametrize("c, hw, k, block_p, block_h", [(24, (5, 6), 3, 16, 32), (16, (4, 4), 5, 16, 16), (40, (3, 7), 3, 32, 64)])
def test_the_convfirst_kernel_in_the_interpreter(c, hw, k, block_p, block_h, group_conv, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from effkit.kernels.triton_blocks import convfirst

    w = _params(c, 4, k, seed=c)["convfirst"]
    x = torch.randn(2, c, *hw)
    got = convfirst(x, *w, group_width=8, config={"block_p": block_p, "block_h": block_h, "group_conv": group_conv})
    want = reference_convfirst(x, *w, group_width=8)
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


@needs_triton
@pytest.mark.parametrize("c, c_out, hw, stride, group_conv", [
    (24, 40, (7, 6), 2, "pairs"),  # odd height: the last output row's window hangs over the bottom edge
    (16, 24, (5, 5), 1, "pairs"),  # a width change alone
    (24, 48, (6, 7), 2, "fma"),  # the CUDA-core grouped conv, strided
    (80, 136, (5, 4), 2, "pairs"),  # the shortcut's conv in two chunks of 64 input channels (128-channel tile), the second partly padding
])
def test_the_strided_convfirst_kernel_in_the_interpreter(c, c_out, hw, stride, group_conv, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from effkit.kernels.triton_blocks import convfirst

    g = torch.Generator().manual_seed(c_out)
    r = lambda *s, scale=0.2: scale * torch.randn(*s, generator=g)  # noqa: E731
    hid = 4 * c
    w = (r(c, 8, 3, 3), r(c, scale=0.1), r(hid, c), r(hid, scale=0.1), r(c_out, hid, scale=0.1), r(c_out, scale=0.1))
    ws, bs = r(c_out, c), r(c_out, scale=0.1)
    x = torch.randn(2, c, *hw)
    got = convfirst(x, *w, group_width=8, config={"block_p": 16, "block_h": 32, "group_conv": group_conv}, stride=stride, ws=ws, bs=bs)
    want = reference_convfirst(x, *w, group_width=8, stride=stride, ws=ws, bs=bs)
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    with pytest.raises(ValueError, match="needs the shortcut's conv"):
        convfirst(x, *w, group_width=8, stride=stride)


@needs_triton
def test_a_strided_convfirst_net_runs_its_kernels_in_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    _, _, want, got = _swapped("convfirst_net", 1)
    assert torch.allclose(got, want, rtol=1e-3, atol=1e-3), (got - want).abs().max()


def test_block_diagonal_dense_by_hand():
    from effkit.kernels.layout import block_diagonal_dense

    # C = 24, k = 1, tile 32: output channel o reads inputs 8·(o // 8) ... + 7 with weights w1[o, j] = 8o + j + 1
    w1 = 1.0 + torch.arange(24 * 8, dtype=torch.float32).reshape(24, 8, 1, 1)
    wd = block_diagonal_dense(w1, 32)
    assert wd.shape == (1, 32, 32)
    assert wd[0, 8:16, 9].tolist() == [73.0 + j for j in range(8)]  # channel 9 (group 1): 9·8 + j + 1
    assert wd[0, 16:24, 17].tolist() == [137.0 + j for j in range(8)]  # channel 17 (group 2, second chunk of 16)
    assert (wd != 0).sum() == 24 * 8 and wd[0, :, 24:].abs().sum() == 0  # every weight once; the padded outputs zero
    # as a matrix: x · wd[0] is the grouped 1x1 conv
    x = torch.randn(5, 24)
    want = torch.nn.functional.conv2d(x[:, :, None, None], w1, groups=3)[:, :, 0, 0]
    assert torch.allclose(torch.cat([x, torch.zeros(5, 8)], 1) @ wd[0], torch.cat([want, torch.zeros(5, 8)], 1), atol=1e-3)


def test_channel_parts_by_hand():
    from effkit.kernels.layout import channel_parts

    # two powers of two of at least 16, the smallest sum that holds the width: the zoo's 3·2^k widths exactly
    # (48 = 32 + 16, ..., 384 = 256 + 128; one power-of-two tile would be 64 ... 512), a power of two as two halves
    assert [channel_parts(c) for c in (48, 96, 192, 384)] == [(32, 16), (64, 32), (128, 64), (256, 128)]
    assert [channel_parts(c) for c in (8, 32, 64, 512)] == [(16, 16), (16, 16), (32, 32), (256, 256)]
    # 40: 32 + 16 = 48 (not 64 + 16); 80: 64 + 16 = 80 exactly; 100: 64 + 64 = 128 beats 128 + 16 = 144
    assert [channel_parts(c) for c in (40, 80, 100, 136)] == [(32, 16), (64, 16), (64, 64), (128, 16)]
    from effkit.kernels.layout import input_parts

    # the input side: one part at 16 and 32 by default (measured faster at 32), two otherwise; asked for either way
    assert [input_parts(c) for c in (16, 32, 48, 64)] == [(16, 0), (32, 0), (32, 16), (32, 32)]
    assert input_parts(32, False) == (16, 16) and input_parts(64, True) == (64, 0)


def test_block_diagonal_dense_parts_by_hand():
    from effkit.kernels.layout import block_diagonal_dense_parts

    # C = 48 as parts (32, 16), k = 1, w1[c, j] = 8c + j + 1: part a holds channels 0-31 as [32, 32], part b 32-47 as
    # [16, 16], flat: 32² + 16² = 1,280 values (one 64-channel tile would be 4,096)
    w1 = 1.0 + torch.arange(48 * 8, dtype=torch.float32).reshape(48, 8, 1, 1)
    flat = block_diagonal_dense_parts(w1, (32, 16))
    assert flat.shape == (1280,)
    wa, wb = flat[:1024].reshape(32, 32), flat[1024:].reshape(16, 16)
    assert wa[8:16, 9].tolist() == [73.0 + j for j in range(8)]  # channel 9 reads inputs 8-15: 9·8 + j + 1
    # channel 41 (group 5: inputs 40-47) is part b's output 9, reading its inputs 8-15: 41·8 + j + 1 = 329 + j
    assert wb[8:16, 9].tolist() == [329.0 + j for j in range(8)] and wb[0:8, 9].abs().sum() == 0
    assert (flat != 0).sum() == 48 * 8  # every weight once, nothing else
    # three parts of 16: 3 · 16² = 768 values; the third part is channels 32-47, so channel 41 is its output 9 again
    flat3 = block_diagonal_dense_parts(w1, (16, 16, 16))
    assert flat3.shape == (768,) and flat3[512:].reshape(16, 16)[8:16, 9].tolist() == [329.0 + j for j in range(8)]
    # channel 19 (part b's output 3, group 2) reads inputs 16-23, part b's 0-7: w1[19, j] = 19·8 + j + 1 = 153 + j
    assert flat3[256:512].reshape(16, 16)[0:8, 3].tolist() == [153.0 + j for j in range(8)]
    assert (flat3 != 0).sum() == 48 * 8


def test_three_input_parts_by_hand():
    from effkit.kernels.layout import input_parts

    # 192 = 64 + 64 + 64: the dense grouped conv's MACs a pixel and tap 3 · 64² = 12,288 against 128² + 64² = 20,480
    assert input_parts(192, three=True) == (64, 64, 64) and input_parts(48, three=True) == (16, 16, 16)
    assert input_parts(192) == (128, 64)
    for bad in (32, 24, 160):  # 32 is not 3·p; 24 = 3·8 (p below 16); 160 = 3·53.3
        with pytest.raises(ValueError, match=f"three parts need a width of 3·p.*got {bad}"):
            input_parts(bad, three=True)


@needs_triton
@pytest.mark.parametrize("c, c_out, hw, stride, cfg", [
    (24, 24, (5, 6), 1, {"group_conv": "dense"}),
    (40, 40, (3, 7), 1, {"group_conv": "dense", "block_h": 64}),
    (24, 40, (7, 6), 2, {"group_conv": "dense"}),
    (40, 40, (3, 7), 1, {"split_h": 2}),  # 160 expanded channels in chunks of 32: 5 chunks, 3 and 2 a split
    (24, 24, (5, 6), 1, {"split_h": 4, "block_h": 16}),  # 96 in 6 chunks of 16: 2, 2, 2 and 0 (an empty share)
    (24, 40, (7, 6), 2, {"split_h": 3, "group_conv": "dense"}),  # the shortcut's conv in the last split's end
    (48, 48, (4, 5), 1, {"group_conv": "dense"}),  # parts 32 + 16, no padding: the second part's groups at channels 32-47
    (48, 96, (5, 4), 2, {"group_conv": "dense", "split_h": 2}),  # in 32 + 16, out 64 + 32, the shortcut from both input parts
    (96, 96, (3, 3), 1, {"group_conv": "pairs", "block_h": 64}),  # pairs over 6 chunks of 16: 4 in part a, 2 in part b
    (32, 48, (7, 6), 2, {"group_conv": "dense", "one_part": True}),  # one input part of 32 (no second), out 32 + 16, the shortcut
    (32, 48, (7, 6), 2, {"group_conv": "pairs", "one_part": True}),
    (16, 16, (5, 6), 1, {"group_conv": "dense", "one_part": True}),  # 16 channels: one part where channel_parts gives 16 + 16
    # the dense grouped conv with its taps as a pipelined loop: the tap (t // k, t % k) and its edge masks from the loop index
    (48, 48, (4, 5), 1, {"group_conv": "dense_loop"}),
    (24, 40, (7, 6), 2, {"group_conv": "dense_loop", "tap_stages": 3}),  # strided, odd height: windows over the bottom edge
    (32, 48, (7, 6), 2, {"group_conv": "dense_loop", "one_part": True, "tap_stages": 1}),
    # three input parts of 16 (48 = 16 + 16 + 16): the third part's conv at channels 32-47 and its share of the expansion
    (48, 48, (4, 5), 1, {"group_conv": "dense", "three_parts": True}),
    (48, 96, (5, 4), 2, {"group_conv": "dense_loop", "three_parts": True}),  # the shortcut from all three parts
    (48, 48, (3, 4), 1, {"group_conv": "pairs", "three_parts": True, "split_h": 2}),
    (48, 48, (3, 4), 1, {"group_conv": "fma", "three_parts": True}),
    # the first two of three parts joined into one operand of 32 channels for the expansion: channels 0-31 must meet the
    # weight's rows 0-31 in order (a join that interleaved them, 0, 16, 1, 17, ..., would fail here)
    (48, 48, (4, 5), 1, {"group_conv": "dense_loop", "three_parts": True, "join_parts": True}),
    (48, 96, (5, 4), 2, {"group_conv": "dense", "three_parts": True, "join_parts": True, "split_h": 2}),
    # the tap loop's gather as one tensor-descriptor load a tap (stride 1): 16-pixel tiles over 4x5 and 3x7 maps start
    # mid-row and run into the next image, whose rows the wrap mask must zero; at 40 channels the second part's box
    # (channels 32-47) runs past the last channel, which the descriptor reads as zeros
    (48, 48, (4, 5), 1, {"group_conv": "dense_tma"}),
    (40, 40, (3, 7), 1, {"group_conv": "dense_tma", "tap_stages": 3}),
    (48, 48, (5, 3), 1, {"group_conv": "dense_tma", "three_parts": True, "join_parts": True}),
    # the transposed dots (swap_ab): weight tiles [rows, k] of W2 and W3 as they lie, the operands over pixels and the
    # accumulators [channels, pixels], b2 along the rows; unequal parts (in 32 + 8, out 32 + 8 or 64 + 32) so that a part
    # swapped for another, or a tile read as its own transpose, cannot pass
    (40, 40, (3, 7), 1, {"swap_ab": True, "group_conv": "dense"}),
    (24, 40, (7, 6), 2, {"swap_ab": True, "split_h": 3}),  # the split's atomics and the shortcut after the transpose back
    (48, 96, (5, 4), 2, {"swap_ab": True, "group_conv": "dense_loop", "block_h": 64}),
    (32, 48, (7, 6), 2, {"swap_ab": True, "group_conv": "dense", "one_part": True}),  # one input part (CB = 0)
    (48, 48, (4, 5), 1, {"swap_ab": True, "group_conv": "dense", "three_parts": True}),
    (48, 96, (5, 4), 2, {"swap_ab": True, "group_conv": "dense", "three_parts": True, "join_parts": True, "split_h": 2}),
    # the output tile stored by a tensor descriptor (tma_store): 16-pixel tiles over 2 x 4 x 5 = 40 pixels leave a last tile
    # of 8 rows, clipped; at 40 channels the second output part (columns 32-47) runs past the last channel, clipped too;
    # strided with the shortcut, split (the last split stores), and three input parts
    (40, 40, (4, 5), 1, {"tma_store": True, "group_conv": "dense"}),
    (24, 40, (7, 6), 2, {"tma_store": True, "split_h": 3}),
    (48, 48, (5, 3), 1, {"tma_store": True, "group_conv": "dense_loop", "three_parts": True}),
])
def test_the_convfirst_kernel_dense_and_split_h(c, c_out, hw, stride, cfg, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from effkit.kernels.triton_blocks import convfirst

    g = torch.Generator().manual_seed(c + c_out)
    r = lambda *s, scale=0.2: scale * torch.randn(*s, generator=g)  # noqa: E731
    hid = 4 * c
    w = (r(c, 8, 3, 3), r(c, scale=0.1), r(hid, c), r(hid, scale=0.1), r(c_out, hid, scale=0.1), r(c_out, scale=0.1))
    ws, bs = (r(c_out, c), r(c_out, scale=0.1)) if stride > 1 or c_out != c else (None, None)
    x = torch.randn(2, c, *hw)
    got = convfirst(x, *w, group_width=8, config={"block_p": 16, "block_h": 32, **cfg}, stride=stride, ws=ws, bs=bs)
    want = reference_convfirst(x, *w, group_width=8, stride=stride, ws=ws, bs=bs)
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


@needs_triton
def test_the_convfirst_kernel_ablations_compute_what_they_leave(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    import torch.nn.functional as F

    from effkit.kernels.triton_blocks import convfirst

    w1, b1, w2, b2, w3, b3 = w = _params(24, 4, 3, seed=3)["convfirst"]
    x = torch.randn(2, 24, 5, 6)
    cfg = {"block_p": 16, "block_h": 32}
    y1 = F.conv2d(x, w1, b1, padding=1, groups=3)
    # parts=1: the grouped conv alone, then the residual and the projection's bias
    assert torch.allclose(convfirst(x, *w, group_width=8, config={**cfg, "parts": 1}), y1 + x + b3[:, None, None], atol=1e-4)
    # parts=2: the expansion of the input (plus b1) instead of the grouped conv's output
    e = F.silu(F.conv2d(x + b1[:, None, None], w2[:, :, None, None], b2))
    assert torch.allclose(convfirst(x, *w, group_width=8, config={**cfg, "parts": 2}), F.conv2d(e, w3[:, :, None, None], b3) + x, atol=1e-4)
    # parts=0: neither, the input through (plus the biases)
    assert torch.allclose(convfirst(x, *w, group_width=8, config={**cfg, "parts": 0}), 2 * x + (b1 + b3)[:, None, None], atol=1e-5)
    # the older switch group_mma=False still works (the CUDA-core grouped conv)
    assert torch.allclose(convfirst(x, *w, group_width=8, config=cfg, group_mma=False), reference_convfirst(x, *w, group_width=8), atol=1e-4)
    with pytest.raises(ValueError, match="group_conv='winograd' is not one of pairs, dense, fma, dense_loop"):
        convfirst(x, *w, group_width=8, config={"group_conv": "winograd"})
    with pytest.raises(ValueError, match="tap_stages=5 must be 1-4"):
        convfirst(x, *w, group_width=8, config={"group_conv": "dense_loop", "tap_stages": 5})
    with pytest.raises(ValueError, match="split_h=0 must be at least 1"):
        convfirst(x, *w, group_width=8, config={"split_h": 0})
    with pytest.raises(ValueError, match="split_h=2 splits the expanded channels, which parts=1 .an ablation without the expansion. does not have"):
        convfirst(x, *w, group_width=8, config={"split_h": 2, "parts": 1})
    with pytest.raises(ValueError, match="swap_ab transposes the expansion's dots, which parts=0 .an ablation without the expansion. does not have"):
        convfirst(x, *w, group_width=8, config={"swap_ab": True, "parts": 0})
    # a key the kernel does not know is refused, not ignored (split_out, slower everywhere in run 9, is gone)
    with pytest.raises(ValueError, match="unknown config key.s. split_out; the keys are group_conv, group_mma, block_p"):
        convfirst(x, *w, group_width=8, config={"split_out": 2})


@needs_triton
@pytest.mark.parametrize("c, hw, k, block_p, block_h", [(24, (5, 6), 3, 16, 32), (16, (4, 4), 5, 16, 16)])
def test_the_mbconv_kernel_in_the_interpreter(c, hw, k, block_p, block_h, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from effkit.kernels.triton_blocks import mbconv

    w = _params(c, 4, k, seed=c)["mbconv"]
    x = torch.randn(2, c, *hw)
    got = mbconv(x, *w, config={"halo": "recompute", "block_p": block_p, "block_h": block_h})
    want = reference_mbconv(x, *w)
    # the padded border: a pixel whose neighbourhood leaves the image must see zeros of the expanded map, not SiLU(b1)
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


def test_halo_tiles_by_hand():
    from effkit.kernels.layout import halo_tiles

    # 56x56, 3x3, 256 pixels: a 16x16 frame is a 14x14 tile (4 x 4 tiles, 16 x 256 = 4,096 pixels computed); a
    # 30-wide frame holds 8 rows (a 28x6 tile: 2 x 10 tiles, 5,120 pixels), so the square one is taken
    assert halo_tiles(56, 56, 3, 256) == (14, 14, 256)
    # 7x7 with its halo is 9x9 = 81 pixels: one tile, padded to 128 (not 256)
    assert halo_tiles(7, 7, 3, 256) == (7, 7, 128)
    # 7x7 in 64 pixels: a 9-wide frame holds 7 rows (a 7x5 tile, two tiles of 64 = 128 pixels); 8x8 frames (6x6 tiles)
    # would need 2 x 2 tiles (256 pixels)
    assert halo_tiles(7, 7, 3, 64) == (5, 7, 64)
    # 5x6, 3x3, 16 pixels: frames 4x4 (2x2 tiles: 3 x 3 of them = 144 pixels) against 5x3 (1x3 tiles, 5 x 2 = 160)
    assert halo_tiles(5, 6, 3, 16) == (2, 2, 16)
    with pytest.raises(ValueError, match="halo_p=16 is too small for a 5x5 halo: a tile needs at least 25 pixels"):
        halo_tiles(8, 8, 5, 16)


@needs_triton
@pytest.mark.parametrize("c, hw, k, halo_p, block_h, programs_per_sm, extra", [
    (24, (5, 6), 3, 16, 32, 1, {}),  # 2x2 tiles, partial at the bottom and right; one program walks all 18 tiles
    (16, (4, 4), 5, 64, 16, 2, {"reload_x": True}),  # a 5x5 halo of 2 on each side; one tile an image, two programs; x loaded each chunk
    (40, (7, 9), 3, 64, 64, 3, {}),  # width 40 in a 64-channel tile, hidden 160 in chunks of 64 (the last one partial)
    # the neighbours by tl.gather from the chunk itself: partial tiles, a 5x5 halo, three chunks
    (24, (5, 6), 3, 16, 32, 1, {"dw_gather": True}),
    (16, (4, 4), 5, 64, 16, 2, {"dw_gather": True}),
    (40, (7, 9), 3, 64, 64, 3, {"dw_gather": True}),
    # a slot of two halves: hidden 160 in three chunks of 64 writes half 0, 1, 0; 96 in six of 16 (5x5 halo) each half three times
    (40, (7, 9), 3, 64, 64, 3, {"dw_dbuf": True}),
    (24, (4, 4), 5, 64, 16, 2, {"dw_dbuf": True, "reload_x": True}),
    # the next chunk's weights loaded a chunk ahead: three chunks of 64 (the last partial: its prefetch past HID masked),
    # and with the gather
    (40, (7, 9), 3, 64, 64, 3, {"dw_prefetch": True}),
    (24, (5, 6), 3, 16, 32, 1, {"dw_prefetch": True, "dw_gather": True}),
    # the channels as two parts (40 and 36 = 32 + 16 of 48: the second part's last 8 or 12 channels masked; a 5x5 halo),
    # alone, with the prefetch and with the gather
    (40, (7, 9), 3, 64, 64, 3, {"two_parts": True}),
    (36, (4, 4), 5, 64, 16, 2, {"two_parts": True, "dw_prefetch": True, "reload_x": True}),
    (36, (5, 6), 3, 16, 32, 1, {"two_parts": True, "dw_gather": True}),
])
def test_the_staged_mbconv_kernel_in_the_interpreter(c, hw, k, halo_p, block_h, programs_per_sm, extra, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from effkit.kernels.triton_blocks import mbconv

    w = _params(c, 4, k, seed=c)["mbconv"]
    x = torch.randn(2, c, *hw)
    # the prefetch off unless asked (the default turns it on at a 64-channel tile, e.g. width 40)
    got = mbconv(x, *w, config={"halo": "staged", "halo_p": halo_p, "block_h": block_h, "programs_per_sm": programs_per_sm, "dw_prefetch": False, **extra})
    want = reference_mbconv(x, *w)
    # a tile's neighbours across a tile edge come from its own frame, across the image edge they are zeros
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


@needs_triton
@pytest.mark.parametrize("c, hw, extra", [
    (24, (5, 6), {}),  # one 16x16 frame an image, the 14x14 tile mostly off the image; hidden 96 in chunks of 16
    # 16x30: 2 x 3 tiles, so neighbours cross tile edges inside the image (each frame's halo rows and columns are
    # expanded from the input, not taken from the next tile); the input in three chunks of 16 channels (40 of 48: the
    # last chunk masked), the outputs in three programs of 16 (the last masked), hidden 160 in chunks of 64 (the last partial)
    (40, (16, 30), {"block_k": 16, "block_co": 16, "block_h": 64}),
    (24, (30, 16), {"frame_h": 32, "reload_x": True}),  # 32x16 frames (30x14 tiles), the input loaded each chunk
])
def test_the_shift_mbconv_kernel_in_the_interpreter(c, hw, extra, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from effkit.kernels.triton_blocks import mbconv

    w = _params(c, 4, 3, seed=c)["mbconv"]
    x = torch.randn(2, c, *hw)
    got = mbconv(x, *w, config={"halo": "shift", **extra})
    want = reference_mbconv(x, *w)
    # the rows above and below and the columns left and right by shift-matrix dots: a shift the wrong way, or a
    # neighbour taken across a frame's edge, moves the depthwise conv's taps and the outputs far beyond 1e-4
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


@needs_triton
def test_an_mbconv_config_takes_the_kernel_its_keys_belong_to(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from effkit.kernels import triton_blocks
    from effkit.kernels.triton_blocks import _halo_of, mbconv

    # a config naming no halo: the kernel its own keys belong to, else the default for the shape
    assert _halo_of({"dw_gather": True}, "shift") == "staged" and _halo_of({"block_co": 64}, "staged") == "shift"
    assert _halo_of({"block_p": 16}, "shift") == "recompute" and _halo_of({"block_h": 32}, "shift") == "shift"
    assert _halo_of({"halo": "staged", "block_h": 16}, "shift") == "staged"
    # 16 frames of 14x14 at 16 channels take the shift kernel by default; a staged key sends the block to the staged one
    w = _params(16, 4, 3, seed=2)["mbconv"]
    x = torch.randn(16, 16, 14, 14)
    called = []
    real = triton_blocks._mbconv_staged_kernel

    class Spy:
        def __getitem__(self, grid):
            called.append(grid)
            return real[grid]
    monkeypatch.setattr(triton_blocks, "_mbconv_staged_kernel", Spy())
    assert torch.allclose(mbconv(x, *w, config={"halo_p": 64, "programs_per_sm": 1}), reference_mbconv(x, *w), atol=1e-4) and called
    # a key of another kernel than the one named, or keys of two kernels, is refused rather than ignored
    with pytest.raises(ValueError, match="mbconv: dw_gather is not a key of the 'shift' halo kernel, whose own keys are frame_h, block_k"):
        mbconv(x, *w, config={"halo": "shift", "dw_gather": True})
    with pytest.raises(ValueError, match=r"mbconv: halo_p \(staged\), block_co \(shift\) belong to different halo kernels; name one with halo"):
        mbconv(x, *w, config={"halo_p": 64, "block_co": 64})


@needs_triton
def test_the_shift_mbconv_kernel_refuses_what_it_cannot_run():
    from effkit.kernels.triton_blocks import mbconv

    x = torch.randn(1, 16, 8, 8)
    with pytest.raises(ValueError, match="halo='shift' is written for a 3x3 depthwise conv, got 5x5; take halo='staged'"):
        mbconv(x, *_params(16, 4, 5, seed=0)["mbconv"], config={"halo": "shift"})
    w = _params(16, 4, 3, seed=0)["mbconv"]
    with pytest.raises(ValueError, match="frame_h=8 must be a power of two of at least 16"):
        mbconv(x, *w, config={"halo": "shift", "frame_h": 8})
    with pytest.raises(ValueError, match="block_co=24 must be a power of two of at least 16"):
        mbconv(x, *w, config={"halo": "shift", "block_co": 24})
    # a 32x16 frame at 128 output channels: 512 x 128 = 65,536 fp32 values, twice the cap
    with pytest.raises(ValueError, match="a 32x16 frame at 128 output channels is a 65536-value fp32 accumulator.*block_co <= 64"):
        mbconv(x, *w, config={"halo": "shift", "frame_h": 32, "block_co": 128})


@needs_triton
def test_mbconv_refuses_configs_it_cannot_run():
    from effkit.kernels.triton_blocks import mbconv

    w = _params(16, 4, 3, seed=0)["mbconv"]
    with pytest.raises(ValueError, match="mbconv: dw_gather and dw_dbuf exclude each other"):
        mbconv(torch.randn(1, 16, 4, 4), *w, config={"dw_gather": True, "dw_dbuf": True})
    with pytest.raises(ValueError, match="mbconv: num_stages=2 needs dw_gather: with the scratch slot"):
        mbconv(torch.randn(1, 16, 4, 4), *w, config={"num_stages": 2})
    # a misspelt key is an error, not a silent default
    with pytest.raises(ValueError, match="mbconv: unknown config key.s. dw_gater; the keys are halo, halo_p"):
        mbconv(torch.randn(1, 16, 4, 4), *w, config={"dw_gater": True})
    # 16 is one 16-channel tile: two parts (16 + 16) would only pad it
    with pytest.raises(ValueError, match="mbconv: two_parts needs a width .* 16 is held by 16 either way"):
        mbconv(torch.randn(1, 16, 4, 4), *w, config={"two_parts": True})


@needs_triton
def test_mbconv_refuses_a_frame_whose_accumulator_is_too_large():
    from effkit.kernels.triton_blocks import mbconv

    w = _params(300, 4, 3, seed=0)["mbconv"]
    # 7x7 in a 128-pixel frame (9x9 = 81 pixels) at 300 channels (a 512-channel tile): 128 x 512 = 65,536 fp32 values
    with pytest.raises(ValueError, match="a 128-pixel frame at 512 channels of tile is a 65536-value fp32 accumulator, more than 32768.*halo_p <= 64"):
        mbconv(torch.randn(1, 300, 7, 7), *w, config={"halo_p": 128})


@needs_triton
def test_mbconv_refuses_an_unknown_halo_mode():
    from effkit.kernels.triton_blocks import mbconv

    w = _params(16, 4, 3, seed=0)["mbconv"]
    with pytest.raises(ValueError, match="halo='shared' is not one of staged, recompute, shift"):
        mbconv(torch.randn(1, 16, 4, 4), *w, config={"halo": "shared"})


@needs_triton
def test_a_fused_block_runs_its_kernel_in_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    block = _randomise_bn(ConvFirstBlock(16))
    x = torch.randn(1, 16, 4, 4)
    with torch.no_grad():
        want = block(x)
        holder = nn.Sequential(block).eval()
        fuse_blocks(holder)
        got = holder(x)
    assert isinstance(holder[0], FusedConvFirst) and torch.allclose(got, want, atol=1e-4)
    assert got.is_contiguous(memory_format=torch.channels_last)  # the kernel's NHWC output, as an NCHW view


@needs_triton
@pytest.mark.parametrize("group_conv", ["pairs", "fma", "dense"])
def test_a_fused_block_stays_right_after_the_model_goes_channels_last(group_conv, monkeypatch):
    """`model.to(memory_format=torch.channels_last)`, which effkit's runner does for --layout channels_last after fusing,
    re-lays every 4-D buffer; the kernels read their weights by flat offsets, so a re-laid grouped-conv weight gave wrong
    outputs: on the H100, convfirst_net's c384 block (the pairs layout, [k², C/16, 16, 16]) was off by 0.26 of the
    output's scale in bf16 and fp16 (benchmarks/fused_dtype_check.py), and the fma path reads w1 [C, 8, k, k] the same
    way. The buffers must stay row-major (and the output right)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    block = _randomise_bn(ConvFirstBlock(32))
    x = torch.randn(2, 32, 5, 5).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        want = block(x)
        holder = nn.Sequential(block).eval()
        fuse_blocks(holder)
        holder[0].config = {"group_conv": group_conv, "block_p": 16, "block_h": 32}
        holder = holder.to(memory_format=torch.channels_last)
        got = holder(x)
    assert all(b.is_contiguous() for b in holder[0].buffers()), [n for n, b in holder[0].named_buffers() if not b.is_contiguous()]
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


@needs_triton
def test_the_mbconv_and_stem_kernels_keep_row_major_weights_through_channels_last(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    w = _params(16, 4, 3, seed=1)["mbconv"]
    mb = FusedMBConv(*w).to(memory_format=torch.channels_last)
    stem = FusedConvAct(torch.randn(16, 3, 3, 3), torch.randn(16), 2, 1).to(memory_format=torch.channels_last)
    for m in (mb, stem):
        assert all(b.is_contiguous() for b in m.buffers()), [n for n, b in m.named_buffers() if not b.is_contiguous()]


def test_profile_fused_sets_the_what_if_beside_eager_compile_and_fused(tmp_path, monkeypatch):
    """On the CPU the fused modules run the folded math in PyTorch, and the check says it is not a fused kernel."""
    import json as _json

    from typer.testing import CliRunner

    from effkit.cli import app

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    ceil = tmp_path / "ceil.json"
    ceil.write_text(_json.dumps({"name": "test cpu", "peak_flops": {"fp32": 1e11}, "bandwidth_bytes_per_s": 2e10}))
    out = tmp_path / "p"
    r = CliRunner().invoke(app, ["profile", "convfirst_net", "--resolution", "32", "--batch", "1", "--min-time", "0.02", "--fused",
                                 "--ceilings", str(ceil), "--measure", "--channels-last", "--out", str(out)])
    assert r.exit_code == 0, r.output
    (row,) = _json.loads((out / "fusion_check.json").read_text())
    # every ConvFirst block is fused, the 4 strided ones too
    assert row["fused_blocks"] == 12 and row["unfused_blocks"] == 0 and "not a fused kernel" in row["fused_kernel"]
    assert row["fused_stems"] == 1 and "12 blocks and the stem fused" in r.output.replace("\n", " ")
    assert all(row[k] and row[k] > 0 for k in ("eager_ms", "compile_ms", "fused_ms", "fused_compile_ms", "fused_waterline_ms", "waterline_ms"))
    assert row["fused_waterline_ms"] < row["waterline_ms"]  # fusing removes traffic: the predicted waterline drops
    # the fused model's outputs were compared with the unfused model's in fp32, in the layout timed (channels-last): on
    # the CPU the folded math in fp32, so only the folding's rounding differs (a few ulps), and no warning
    assert row["fused_max_rel_diff"] is not None and row["fused_max_rel_diff"] < 1e-4 and row["fused_numerical_note"] == ""
    assert "block-fused outputs against the unfused model's in fp32: max difference" in r.output.replace("\n", " ")
    assert "fusion what-if against reality, batch 1" in r.output
    assert r.output.count("IQR") >= 4  # eager, compile, fused and fused + compile, each with its spread
    assert "block-fused, the rest compiled" in r.output
    # the selective configuration: each distinct block timed alone, fused against compiled. 32 pixels: the stem (16×16),
    # then each stage's strided first block (its own unit: 4) and its stride-1 blocks (one unit a stage: 4) = 9 units over
    # the 12 blocks and the stem
    assert len(row["units"]) == 9 and sum(len(u["paths"]) for u in row["units"]) == 13
    assert row["units"][0]["name"] == "stem 3→32 (3×3, stride 2) at 32×32" and row["units"][0]["paths"] == ["stem"]
    assert all(u[k] > 0 for u in row["units"] for k in ("fused_ms", "fused_iqr_ms", "compile_ms", "compile_iqr_ms"))
    assert row["selective_fused"] == [p for u in row["units"] if u["fused_chosen"] for p in u["paths"]] and row["selective_ms"] > 0
    assert "; selective" in r.output
    notes = _json.loads((out / "run.json").read_text())["notes"]
    assert any("predicted fused waterline" in n for n in notes)
    assert any(n.startswith("fusion check, batch 1, each block shape alone") for n in notes)
    html = (out / "index.html").read_text()  # the check's two tables, and its answer first under "what would make it faster"
    assert 'id="fusion-models"' in html and html.count("stages.2.1, stages.2.2") == 1 and "Measured (fusion check, batch 1)" in html


def test_an_interrupted_fusion_check_keeps_what_it_measured(tmp_path, monkeypatch):
    import json as _json

    import effkit.profiling as profiling
    from effkit.profiling import run_fusion_check

    from helpers import cpu_profile

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    run, ref, config, ceil = cpu_profile(tmp_path)

    def stopped(ref, config, stage, on_unit=None):  # one block timed, then Ctrl-C
        on_unit([{**_units("c48")[0], "fused_chosen": True}])
        raise KeyboardInterrupt

    monkeypatch.setattr(profiling, "selective_units", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_fusion_check(run, ref, config, ceilings=ceil)
    (row,) = _json.loads((tmp_path / "p" / "fusion_check.json").read_text())
    assert row["incomplete"] and all(row[f"{k}_ms"] > 0 for k in ("eager", "compile", "fused", "fused_compile")) and len(row["units"]) == 1
    notes = _json.loads((tmp_path / "p" / "run.json").read_text())["notes"]
    assert any(n.startswith("fusion check interrupted (KeyboardInterrupt) in batch 1") for n in notes)
    assert "1 (incomplete: interrupted)" in (tmp_path / "p" / "index.html").read_text()


def test_the_python_api_profiles_with_the_fusion_check_too(tmp_path, monkeypatch):
    import json as _json

    import effkit

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    ceil = tmp_path / "ceil.json"
    ceil.write_text(_json.dumps({"name": "test cpu", "peak_flops": {"fp32": 1e11}, "bandwidth_bytes_per_s": 2e10}))
    run = effkit.profile("mbconv_net", resolution=32, batch=1, min_time_s=0.02, ceilings=str(ceil), measure=True, out=tmp_path / "p",
                         fused=True, selective=False)
    (row,) = _json.loads((run.folder / "fusion_check.json").read_text())
    assert row["fused_blocks"] == 8 and row["compile_ms"] > 0 and "units" not in row  # selective=False: no per-block timings
    assert any(n.startswith("fusion what-if against reality, batch 1") for n in run.record.notes)
    with pytest.raises(UserInputError, match="resnet18 has no ConvFirst block"):
        effkit.profile("resnet18", fused=True, out=tmp_path / "r")
    assert not (tmp_path / "r").exists()  # refused before anything was measured or written


def test_fused_refuses_a_model_with_nothing_to_fuse():
    from typer.testing import CliRunner

    from effkit.cli import app

    r = CliRunner().invoke(app, ["profile", "resnet18", "--fused"])
    assert r.exit_code == 2 and "resnet18 has no ConvFirst block, nor stride-1, equal-width MBConv block, to fuse" in r.stderr
    r = CliRunner().invoke(app, ["bench", "resnet18", "--fused"])
    assert r.exit_code == 2 and "no ConvFirst block, nor stride-1, equal-width MBConv block" in r.stderr


def test_fused_on_cuda_needs_16_bit_weights_and_says_which_precisions_give_them():
    # the kernels run in the weights' dtype, their tiles sized for bf16/fp16: at fp32, or fp32 weights under autocast, they
    # are refused with the precisions that work, before anything runs; on the CPU the folded math runs in PyTorch at any dtype
    from typer.testing import CliRunner

    from effkit.cli import app
    from effkit.config import RunConfig

    for precision in ("fp32", "tf32", "bf16-mixed", "fp16-mixed"):
        with pytest.raises(UserInputError, match=f"give --precision fp16 or bf16, not {precision}$"):
            RunConfig(device="cuda", precision=precision, fused=True)
        assert RunConfig(device="cuda", precision=precision).precision == precision  # unfused: any precision
    assert RunConfig(device="cuda", precision="bf16", fused=True).fused and RunConfig(device="cuda:1", precision="fp16", fused=True).fused
    assert RunConfig(device="cpu", precision="fp32", fused=True).fused
    with pytest.raises(UserInputError, match="not fp32$"):
        RunConfig(device="cuda:0", fused=True)
    # the profile command checks it before it measures anything, so no CUDA is needed to be told
    r = CliRunner().invoke(app, ["profile", "convfirst_net", "--device", "cuda", "--fused"])
    assert r.exit_code == 2 and "built for 16-bit weights: give --precision fp16 or bf16, not fp32" in r.stderr
    assert "Traceback" not in r.output + r.stderr


def test_fuse_blocks_only_fuses_the_paths_it_is_given():
    # mbconv_net at width 0.5: stages of 2, 2, 6, 2 blocks, each stage's first strided (an MBConv kernel has no stride)
    model, report, want, got = _swapped("mbconv_net", only={"stem", "stages.0.1"})
    assert report["fused"] == ["stages.0.1"] and report["stems"] == ["stem"]
    left = dict(report["unfused"])
    assert left["stages.2.3"] == "a mbconv block not among the blocks asked for (only)"
    assert left["stages.0.0"].startswith("a stride or a width change")
    assert len(left) == 12 - 1  # every residual block is named, fused or not
    assert sum(isinstance(m, (FusedMBConv, FusedConvAct)) for m in model.modules()) == 2
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


def test_fuse_blocks_refuses_a_path_it_would_not_fuse_before_swapping_anything():
    model = _randomise_bn(build_model("mbconv_net", width=0.5, resolution=32).model)
    with pytest.raises(UserInputError, match=r"fused blocks stages.0.0, stages.9.9: not a block or stem that fuse_blocks fuses in this "
                                             r"model; those are: stem, stages.0.1, stages.1.1, stages.2.1, "):
        fuse_blocks(model, only=["stages.1.1", "stages.0.0", "stages.9.9"])  # stages.0.0 strides: no MBConv kernel for it
    assert not any(isinstance(m, (FusedMBConv, FusedConvAct)) for m in model.modules())


def test_fusion_units_group_the_blocks_by_structure_and_input_shape():
    from effkit.kernels import fusion_units

    model = build_model("mbconv_net", resolution=32).model.eval()
    units = fusion_units(model, [torch.randn(1, 3, 32, 32)])
    # 32 pixels: the stem strides 2 (16×16), each stage's first block 2 more: 8, 4, 2, 1 pixels in stages 0-3. Widths 48,
    # 96, 192, 384, expanded 4x; depths 2, 2, 6, 2, so the stride-1 blocks are 1, 1, 5 and 1, the five of stage 2 one unit
    assert [(u["name"], u["paths"], u["input_shape"]) for u in units] == [
        ("stem 3→32 (3×3, stride 2) at 32×32", ["stem"], (3, 32, 32)),
        ("mbconv 48→48 (192 wide, 3×3) at 8×8", ["stages.0.1"], (48, 8, 8)),
        ("mbconv 96→96 (384 wide, 3×3) at 4×4", ["stages.1.1"], (96, 4, 4)),
        ("mbconv 192→192 (768 wide, 3×3) at 2×2", [f"stages.2.{i}" for i in range(1, 6)], (192, 2, 2)),
        ("mbconv 384→384 (1536 wide, 3×3) at 1×1", ["stages.3.1"], (384, 1, 1))]
    assert units[3]["module"] is model.stages[2][1]  # the first of its kind stands for the unit, unfused
    assert not any(isinstance(m, (FusedMBConv, FusedConvAct)) for m in model.modules())  # looking swaps nothing


def test_fused_only_needs_fused_and_a_path():
    from effkit.config import RunConfig

    with pytest.raises(UserInputError, match="--fused-only stem picks blocks to fuse: it needs --fused"):
        RunConfig(fused_only=("stem",))
    with pytest.raises(UserInputError, match="--fused-only names no block"):
        RunConfig(fused=True, fused_only=())
    c = RunConfig(fused=True, fused_only=["stem", "stages.0.1"])
    assert c.fused_only == ("stem", "stages.0.1") and RunConfig.from_dict(c.to_dict()) == c
    assert c.key() != RunConfig(fused=True).key() and "block-fused (2 chosen)" in c.describe()
    from effkit.report.record import RunRecord
    from effkit.report.run_dir import provenance

    # a report names the blocks that were fused, not only how many
    assert provenance(RunRecord("profile", c, (), None, "complete", (), {}))["fused_only"] == "stem, stages.0.1"
    assert "fused_only" not in provenance(RunRecord("profile", RunConfig(fused=True), (), None, "complete", (), {}))


def test_bench_fused_only_measures_the_chosen_blocks_and_refuses_others(monkeypatch):
    from typer.testing import CliRunner

    from effkit.cli import app

    # the choosing is under test, not the kernels (tested in the interpreter above): the fused modules run the folded
    # math in PyTorch here (in the interpreter, this one bench took 180 s of the suite)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    base = ["bench", "mbconv_net", "--resolution", "32", "--min-time", "0.01", "--no-layers", "--fused"]
    r = CliRunner().invoke(app, base + ["--fused-only", "stages.0.0,stem"])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1
    assert "fused blocks stages.0.0: not a block or stem that fuse_blocks fuses in this model; those are: stem, stages.0.1" in r.stderr
    r = CliRunner().invoke(app, ["bench", "mbconv_net", "--fused-only", "stem"])
    assert r.exit_code == 2 and "--fused-only stem picks blocks to fuse: it needs --fused" in r.stderr
    r = CliRunner().invoke(app, base + ["--fused-only", "stem, stages.2.3"])
    assert r.exit_code == 0, r.output


def test_the_profile_prints_the_bench_command_of_its_selective_configuration(monkeypatch):
    from typer.testing import CliRunner

    from effkit.cli import _bench_command, app
    from effkit.config import RunConfig

    config = RunConfig(device="cuda:0", precision="bf16", batches=(1, 64), layout="channels_last", cuda_graph=True)
    line = _bench_command("mbconv_net", config, 64, ["stem", "stages.0.1"], None, 160)
    assert line == ("effkit bench mbconv_net --device cuda:0 --precision bf16 --batch 64 --resolution 160 --channels-last --cuda-graph "
                    "--no-layers --fused --compile --fused-only stem,stages.0.1")
    # the same command, on this machine's CPU, runs (the fused blocks as the folded math in PyTorch: no interpreter)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    cpu = _bench_command("mbconv_net", RunConfig(), 1, ["stem", "stages.0.1"], None, 32).split()[1:] + ["--min-time", "0.01"]
    r = CliRunner().invoke(app, cpu)
    assert r.exit_code == 0, r.output


def _units(*won):
    """Two unit rows as selective_units writes them: c48 (2 blocks) and c192 (1 block), `won` the fused ones."""
    return [{"name": "mbconv 48→48", "kind": "mbconv", "paths": ["s.0.1", "s.0.2"], "fused_ms": 0.2162, "fused_iqr_ms": 0.001,
             "compile_ms": 0.2924, "compile_iqr_ms": 0.001, "fused_chosen": "c48" in won},
            {"name": "mbconv 192→192", "kind": "mbconv", "paths": ["s.2.1"], "fused_ms": 0.1449, "fused_iqr_ms": 0.001,
             "compile_ms": 0.0885, "compile_iqr_ms": 0.001, "fused_chosen": "c192" in won}]


def test_selective_fuses_the_winners_and_compiles_the_rest(monkeypatch):
    from types import SimpleNamespace

    import effkit.profiling as profiling
    import effkit.run.runner as runner
    from effkit.config import RunConfig

    asked = []

    def fake_run(ref, config):
        asked.append(config)
        return SimpleNamespace(points=[SimpleNamespace(latency_s=1.790e-3, timing=SimpleNamespace(iqr_s=0.004e-3))])

    monkeypatch.setattr(runner, "run", fake_run)
    base = RunConfig(batches=(1, 64), fused=False)
    row = {"compile_ms": 1.984, "compile_iqr_ms": 0.003, "fused_compile_ms": 2.425, "fused_compile_iqr_ms": 0.007}
    monkeypatch.setattr(profiling, "selective_units", lambda ref, config, stage, on_unit=None: _units("c48"))
    out = profiling._selective("ref", base, 64, row, lambda s: None)
    (c,) = asked
    assert c.fused and c.compile and c.fused_only == ("s.0.1", "s.0.2") and c.batches == (64,)
    assert out["selective_fused"] == ["s.0.1", "s.0.2"] and out["selective_ms"] == pytest.approx(1.790) and out["selective_same_as"] is None
    # every unit won: that is the fused model with the rest compiled; none won: torch.compile's. Neither is timed again
    monkeypatch.setattr(profiling, "selective_units", lambda ref, config, stage, on_unit=None: _units("c48", "c192"))
    assert profiling._selective("ref", base, 64, row, lambda s: None)["selective_ms"] == 2.425
    monkeypatch.setattr(profiling, "selective_units", lambda ref, config, stage, on_unit=None: _units())
    none = profiling._selective("ref", base, 64, row, lambda s: None)
    assert none["selective_same_as"] == "compile" and none["selective_ms"] == 1.984 and none["selective_fused"] == [] and len(asked) == 1


def test_a_fused_block_is_chosen_only_where_it_wins_by_more_than_the_spread():
    from effkit.profiling import fused_wins

    # the H200, batch 1 (run 34b): the stem fused 0.0284 ms (IQR 0.0015) against compiled 0.0299 (IQR 0.0142): 0.0015 apart,
    # less than the larger IQR, a tie; c48 at batch 64, 0.2226 (IQR 0.0017) against 0.2926 (IQR 0.0013): 0.0700 apart, fused
    assert not fused_wins({"fused_ms": 0.0284, "fused_iqr_ms": 0.0015, "compile_ms": 0.0299, "compile_iqr_ms": 0.0142})
    assert fused_wins({"fused_ms": 0.2226, "fused_iqr_ms": 0.0017, "compile_ms": 0.2926, "compile_iqr_ms": 0.0013})
    assert not fused_wins({"fused_ms": 0.1464, "fused_iqr_ms": 0.0004, "compile_ms": 0.0885, "compile_iqr_ms": 0.0006})
    assert not fused_wins({"fused_ms": None, "compile_ms": 0.0885})  # a point that did not run (out of memory) is never chosen


def test_the_fusion_note_gives_the_selective_configuration_and_its_blocks():
    from effkit.profiling import fusion_note, fusion_units_note

    row = {"batch": 64, "fused_blocks": 8, "unfused_blocks": 4, "fused_stems": 1, "fused_kernel": "Triton, one kernel per fused block",
           "fused_waterline_ms": 0.816, "fused_ms": 2.691, "fused_iqr_ms": 0.008, "compile_ms": 1.984, "compile_iqr_ms": 0.003,
           "eager_ms": 2.659, "eager_iqr_ms": 0.004, "fused_over_fused_waterline": None, "problem": None,
           "units": _units("c48"), "selective_fused": ["s.0.1", "s.0.2"], "selective_same_as": None, "selective_ms": 1.790,
           "selective_iqr_ms": 0.004}
    # run 33f on the H200: 1.984 / 1.790 = 1.108 → "1.11x faster"
    assert ("; selective (the 1 of 2 block shapes that ran faster fused than compiled alone fused, 2 modules, the rest compiled) "
            "1.790 ms (IQR 0.004 ms) (1.11x faster than torch.compile)") in fusion_note(row)
    note = fusion_units_note(row)
    assert note.startswith("fusion check, batch 64, each block shape alone")
    assert "mbconv 48→48 ×2: fused 0.2162 ms (IQR 0.0010) against compiled 0.2924 ms (IQR 0.0010), fused" in note
    assert "mbconv 192→192: fused 0.1449 ms (IQR 0.0010) against compiled 0.0885 ms (IQR 0.0010), left to compile" in note
    # the blocks' wins need not carry over: 2.100 against 1.984 (IQRs 0.004, 0.003) is slower beyond the spread
    assert ("1 module, the rest compiled) 2.100 ms (IQR 0.004 ms) (1.06x slower than torch.compile): the blocks' wins alone did not "
            "carry over to the model, so torch.compile stays the faster configuration") in fusion_note(
        {**row, "selective_ms": 2.100, "selective_fused": ["s.0.1"]})
    tie = {**row, "units": [{**_units()[0], "fused_ms": 0.2920}]}  # 0.0004 faster than compile, IQRs 0.001
    assert "mbconv 48→48 ×2: fused 0.2920 ms (IQR 0.0010) against compiled 0.2924 ms (IQR 0.0010), a tie within the spread" in fusion_units_note(tie)
    assert "(IQR 0.0004 ms)" in fusion_note({**row, "compile_iqr_ms": 0.0004})  # a spread below 0.001 ms keeps a digit more
    none = {**row, "units": _units(), "selective_fused": [], "selective_same_as": "compile", "selective_ms": 1.984}
    assert "selective: none of the 2 block shapes ran faster fused than compiled alone, so torch.compile is the recommendation" in fusion_note(none)
    assert "selective" not in fusion_note({k: v for k, v in row.items() if k != "units"})


def _check_rows():
    """fusion_check.json's row for mbconv_net at batch 64 on the H200 (run 34c), rounded, with two of its five units."""
    return [{"batch": 64, "eager_ms": 2.634, "eager_iqr_ms": 0.005, "compile_ms": 2.023, "compile_iqr_ms": 0.003, "fused_ms": 2.673,
             "fused_iqr_ms": 0.011, "fused_compile_ms": 2.406, "fused_compile_iqr_ms": 0.010, "fused_waterline_ms": 0.816,
             "selective_ms": 1.785, "selective_iqr_ms": 0.005, "selective_same_as": None, "selective_fused": ["stages.0.1"],
             "units": [{"name": "mbconv 48→48 (192 wide, 3×3) at 56×56", "paths": ["stages.0.1"], "fused_ms": 0.2232, "fused_iqr_ms": 0.0017,
                        "compile_ms": 0.2992, "compile_iqr_ms": 0.0009, "fused_chosen": True},
                       {"name": "mbconv 192→192 (768 wide, 3×3) at 14×14", "paths": ["stages.2.1", "stages.2.2"], "fused_ms": 0.1468,
                        "fused_iqr_ms": 0.0005, "compile_ms": 0.0872, "compile_iqr_ms": 0.0005, "fused_chosen": False}]}]


def test_the_report_tables_of_the_fusion_check():
    from effkit.report.fusion import fusion_sentences, model_table, unit_table

    (m,) = model_table(_check_rows())
    # 2.023 / 1.785 = 1.133 → "1.13x faster"
    assert m["selective (ms)"] == "1.785 (IQR 0.005)" and m["selective vs compile"] == "1.13x faster" and m["eager (ms)"] == "2.634 (IQR 0.005)"
    a, b = unit_table(_check_rows())
    # 0.2992 / 0.2232 = 1.3405 → "1.34"; 0.0872 / 0.1468 = 0.594 → "0.59"
    assert (a["compiled / fused"], a["decision"], a["fused kernel (ms)"], a["IQR (ms)"]) == ("1.34", "fused", "0.2232", "0.0017")
    assert (b["compiled / fused"], b["decision"], b["modules"]) == ("0.59", "compile", "stages.2.1, stages.2.2")
    (say,) = fusion_sentences(_check_rows())
    assert say == ("Measured (fusion check, batch 64): fusing the 1 of 2 block shapes whose kernel beat torch.compile alone (mbconv 48→48 "
                   "(192 wide, 3×3) at 56×56) and compiling the rest ran 1.785 (IQR 0.005) ms, 1.13x faster than torch.compile's 2.023 ms.")
    (row,) = _check_rows()
    # slower than compile beyond both IQRs (2.100 against 2.023, IQRs 0.005, 0.003): the wins did not carry over; slower
    # within them (2.026: 0.003 apart) is not evidence of that, and the note says nothing of it either
    lost = fusion_sentences([{**row, "selective_ms": 2.100}])[0]
    assert lost.endswith("1.04x slower than torch.compile's 2.023 ms: the blocks' wins did not carry over, so compile stays the faster.")
    close = fusion_sentences([{**row, "selective_ms": 2.026}])[0]
    assert close.endswith("1.00x slower than torch.compile's 2.023 ms.")
    none = {**row, "selective_same_as": "compile", "selective_ms": 2.023, "selective_iqr_ms": 0.003, "selective_fused": [],
            "units": [{**u, "fused_chosen": False} for u in row["units"]]}
    assert model_table([none])[0]["selective vs compile"] == "–" and "(= torch.compile: no block won)" in model_table([none])[0]["selective (ms)"]
    assert fusion_sentences([none])[0].startswith("Measured (fusion check, batch 64): none of the 2 fusable block shapes ran faster")
    old = {k: v for k, v in row.items() if not k.startswith("selective") and k != "units"}  # a check from before run 34
    assert model_table([old])[0]["selective (ms)"] == "not checked" and unit_table([old]) == []
    assert fusion_sentences([old]) == ["Measured (fusion check, batch 64): the block-fused model ran 2.406 ms, 1.19x slower than torch.compile (2.023 ms)."]


def test_the_fusion_check_shows_the_fused_outputs_difference_and_warns_when_it_is_large():
    from effkit.analysis.advice import numerical_warning
    from effkit.report.fusion import fusion_note, fusion_sentences, model_table

    (row,) = _check_rows()
    fine = {**row, "fused_waterline_ms": 0.816, "fused_blocks": 8, "unfused_blocks": 0, "fused_kernel": "Triton", "fused_max_rel_diff": 9.1e-4,
            "fused_numerical_note": ""}
    assert model_table([fine])[0]["block-fused vs fp32 (max rel. diff)"] == "9.1e-04"
    assert "max difference 9.1e-04 of the outputs' largest magnitude (batch 64" in fusion_note(fine) and "⚠" not in fusion_note(fine)
    assert "⚠" not in fusion_sentences([fine])[0]
    # run 51's c384 block, re-laid by the channels-last conversion, was off by 0.26 of its output's scale: warned everywhere
    note = numerical_warning("bf16", 3.0, 0.26, fused=True)
    bad = {**fine, "fused_max_rel_diff": 0.26, "fused_numerical_note": note}
    assert model_table([bad])[0]["block-fused vs fp32 (max rel. diff)"] == "2.6e-01 ⚠"
    assert f"⚠ {note}" in fusion_note(bad) and "by 26 % of their scale" in note
    assert "⚠ But numerical warning: the block-fused model's outputs differ" in fusion_sentences([bad])[0]
    # a comparison that could not run says why; a row saved before the comparison existed shows none
    failed = {**fine, "fused_max_rel_diff": None, "fused_numerical_note": "outputs not compared: RuntimeError: x"}
    assert "⚠ outputs not compared: RuntimeError: x" in fusion_note(failed) and model_table([failed])[0]["block-fused vs fp32 (max rel. diff)"] == "–"
    assert "block-fused outputs" not in fusion_note({k: v for k, v in fine.items() if not k.startswith("fused_max") and k != "fused_numerical_note"})


def test_fuse_blocks_wants_a_module():
    with pytest.raises(UserInputError, match="fuse_blocks needs an nn.Module, got a str"):
        fuse_blocks("convfirst_net")


# the stem: a dense k×k conv on few input channels → BN → activation, as one im2col kernel


def test_im2col_weight_by_hand():
    from effkit.kernels.layout import im2col_weight

    w = torch.arange(2 * 3 * 3 * 3, dtype=torch.float32).reshape(2, 3, 3, 3)  # w[o, c, dy, dx] = 27·o + 9·c + 3·dy + dx
    m = im2col_weight(w)
    # 3 · 3² = 27 rows padded to 32, 2 outputs padded to 16; row (dy·3 + dx)·3 + c
    assert m.shape == (32, 16)
    assert m[(1 * 3 + 2) * 3 + 1, 0] == 9 * 1 + 3 * 1 + 2  # o 0, c 1, dy 1, dx 2: 14
    assert m[(2 * 3 + 0) * 3 + 2, 1] == 27 + 18 + 6  # o 1, c 2, dy 2, dx 0: 51
    assert m[0, 1] == 27 and m[26, 0] == 26  # the first and last taps
    assert m[27:].abs().sum() == 0 and m[:, 2:].abs().sum() == 0


def _stem(c_in, c_out, k, stride, act):
    from effkit.models.layers import Conv2dNormActivation

    return _randomise_bn(nn.Sequential(Conv2dNormActivation(c_in, c_out, k, stride, activation_layer=act)))


@needs_triton
@pytest.mark.parametrize("c_in, c_out, k, stride, act, channels_last, block_p", [
    (3, 32, 3, 2, nn.SiLU, True, 16),  # the zoo's stem; 7 x 6 output pixels: a partial last tile
    (3, 24, 3, 1, nn.ReLU, False, 32),  # NCHW input, 24 outputs of a 32-wide tile
    (4, 16, 3, 2, None, True, 64),  # no activation, 36 columns of a 64-wide tile
    (1, 40, 5, 2, nn.SiLU, False, 16),  # 5x5, one input channel, 25 columns
])
def test_the_stem_kernel_in_the_interpreter(c_in, c_out, k, stride, act, channels_last, block_p, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    model = _stem(c_in, c_out, k, stride, act)
    x = torch.randn(2, c_in, 13, 11)
    x = x.to(memory_format=torch.channels_last) if channels_last else x
    with torch.no_grad():
        want = model(x)  # the unfused conv → BN → act in PyTorch
        _, report = fuse_blocks(model)
        model[0].config = {"block_p": block_p}
        got = model(x)
    assert report["stems"] == ["0"] and isinstance(model[0], FusedConvAct)
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-4)
    assert got.is_contiguous(memory_format=torch.channels_last)


def test_fuse_blocks_swaps_the_stem_and_nothing_else_like_it(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    model, report, want, got = _swapped("convfirst_net")
    assert report["stems"] == ["stem"] and isinstance(model.stem, FusedConvAct) and model.stem.act == "silu"
    assert sum(isinstance(m, FusedConvAct) for m in model.modules()) == 1
    assert torch.allclose(got, want, atol=1e-4)
    kept = _randomise_bn(build_model("convfirst_net", width=0.5, resolution=32).model)
    _, report = fuse_blocks(kept, stem=False)
    assert report["stems"] == [] and not isinstance(kept.stem, FusedConvAct)
    # not stems: a 3x3 conv on 8 channels (72 columns > 64), a 1x1 conv, a grouped conv, and a conv → BN → SiLU inside
    # a residual block (the block's business)
    wide, one, grouped = _stem(8, 16, 3, 1, nn.SiLU), _stem(3, 16, 1, 1, nn.SiLU), _stem(4, 8, 3, 1, nn.SiLU)
    grouped[0][0].groups = 2
    for m in (wide, one, grouped):
        assert fuse_blocks(m)[1]["stems"] == []

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.shortcut = _stem(3, 3, 3, 1, nn.SiLU), None

    assert fuse_blocks(nn.Sequential(Block()).eval())[1]["stems"] == []


@needs_triton
def test_the_stem_kernel_refuses_bad_config():
    from effkit.kernels.triton_blocks import conv_act

    w = torch.randn(8, 3, 3, 3)
    from effkit.kernels.layout import im2col_weight

    with pytest.raises(ValueError, match="unknown config key\\(s\\) block_h; the keys are block_p, num_warps, num_stages, fast_silu, packed_silu"):
        conv_act(torch.randn(1, 3, 8, 8), w, im2col_weight(w), torch.zeros(8), 1, 1, config={"block_h": 32})
    with pytest.raises(ValueError, match="act='gelu' is not one of none, silu, relu"):
        conv_act(torch.randn(1, 3, 8, 8), w, im2col_weight(w), torch.zeros(8), 1, 1, act="gelu")


@needs_triton
def test_three_parts_are_refused_beside_an_ablation_or_one_part():
    from effkit.kernels.triton_blocks import convfirst

    def weights(c):
        return torch.randn(c, 8, 3, 3), torch.zeros(c), torch.randn(4 * c, c), torch.zeros(4 * c), torch.randn(c, 4 * c), torch.zeros(c)

    # an ablation on a width that three parts fit; one_part on a width that one part fits (64: a power of two)
    for c, cfg in ((48, {"three_parts": True, "parts": 1}), (64, {"three_parts": True, "one_part": True})):
        with pytest.raises(ValueError, match="convfirst: three_parts needs the whole block \\(parts=3\\) and not one_part"):
            convfirst(torch.randn(1, c, 4, 4), *weights(c), group_width=8, config=cfg)


@needs_triton
def test_the_tma_gather_and_store_want_stride_1_and_16_byte_rows():
    from effkit.kernels.triton_blocks import convfirst

    def weights(c, c_out, gw):
        return torch.randn(c, gw, 3, 3), torch.zeros(c), torch.randn(4 * c, c), torch.zeros(4 * c), torch.randn(c_out, 4 * c), torch.zeros(c_out)

    with pytest.raises(ValueError, match="group_conv='dense_tma' needs stride 1 .* got stride 2"):
        convfirst(torch.randn(1, 24, 4, 4), *weights(24, 40, 8), group_width=8, stride=2, ws=torch.randn(40, 24), bs=torch.zeros(40),
                  config={"group_conv": "dense_tma"})
    # 6 channels of 4 bytes: 24-byte rows, which a tensor descriptor cannot stride over
    with pytest.raises(ValueError, match="needs rows of a multiple of 16 bytes; 6 channels of 4 bytes are 24"):
        convfirst(torch.randn(1, 6, 4, 4), *weights(6, 6, 2), group_width=2, config={"group_conv": "dense_tma"})
    # the output stored by a descriptor (tma_store): 24 to 34 channels, 136-byte output rows
    with pytest.raises(ValueError, match="tma_store needs output rows of a multiple of 16 bytes; 34 channels of 4 bytes are 136"):
        convfirst(torch.randn(1, 24, 4, 4), *weights(24, 34, 8), group_width=8, stride=2, ws=torch.randn(34, 24), bs=torch.zeros(34),
                  config={"tma_store": True})


@needs_triton
def test_join_parts_wants_three_parts():
    from effkit.kernels.triton_blocks import convfirst

    c = 40  # not 3·2^k: two parts (32, 16), nothing to join
    w = torch.randn(c, 8, 3, 3), torch.zeros(c), torch.randn(4 * c, c), torch.zeros(4 * c), torch.randn(c, 4 * c), torch.zeros(c)
    with pytest.raises(ValueError, match=r"convfirst: join_parts needs three input parts .* this launch takes 2: \(32, 16\)"):
        convfirst(torch.randn(1, c, 4, 4), *w, group_width=8, config={"join_parts": True})


@needs_triton
def test_one_part_wants_a_power_of_two_width():
    from effkit.kernels.triton_blocks import convfirst

    w = (torch.randn(48, 8, 3, 3), torch.zeros(48), torch.randn(192, 48), torch.zeros(192), torch.randn(48, 192), torch.zeros(48))
    with pytest.raises(ValueError, match="one_part needs a power-of-two input width of at least 16 \\(got 48\\)"):
        convfirst(torch.randn(1, 48, 4, 4), *w, group_width=8, config={"one_part": True})


@needs_triton
def test_a_fused_block_takes_its_channel_parts_from_its_config(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    block = _randomise_bn(ConvFirstBlock(32, 48, stride=2))
    x = torch.randn(1, 32, 6, 5)
    with torch.no_grad():
        want = block(x)
        holder = nn.Sequential(block).eval()
        fuse_blocks(holder)
        got = holder(x)  # by default one part of 32
        holder[0].config = {"group_conv": "dense", "one_part": False, "block_p": 16}
        two = holder(x)  # two parts of 16, asked for
    # the module's dense weight as one part of 32 (9 taps of 32 x 32), the one made for the config as two of 16
    assert holder[0].w1dense.numel() == 9 * 32 * 32 and holder[0]._w1dense_other.numel() == 9 * 2 * 16 * 16
    assert torch.allclose(got, want, atol=1e-4) and torch.allclose(two, want, atol=1e-4)


@needs_triton
def test_a_fused_block_with_three_parts_makes_their_weight(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    block = _randomise_bn(ConvFirstBlock(48, 48))
    x = torch.randn(1, 48, 4, 5)
    with torch.no_grad():
        want = block(x)
        holder = nn.Sequential(block).eval()
        fuse_blocks(holder)
        holder[0].config = {"group_conv": "dense_loop", "three_parts": True, "block_p": 16}
        got = holder(x)
    # the module's own dense weight for 32 + 16 (9 · (32² + 16²)); the one made for the config for 16 + 16 + 16 (9 · 3 · 16²)
    assert holder[0].w1dense.numel() == 9 * 1280 and holder[0]._w1dense_other.numel() == 9 * 768
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    with pytest.raises(ValueError, match="three parts need a width of 3·p.*got 32"):
        from effkit.kernels.triton_blocks import convfirst
        w = (torch.randn(32, 8, 3, 3), torch.zeros(32), torch.randn(128, 32), torch.zeros(128), torch.randn(32, 128), torch.zeros(32))
        convfirst(torch.randn(1, 32, 4, 4), *w, group_width=8, config={"three_parts": True})


@needs_triton
def test_which_silu_a_launch_gets():
    from types import SimpleNamespace

    from effkit.kernels.triton_blocks import _fast_silu

    cuda, cpu = SimpleNamespace(is_cuda=True), SimpleNamespace(is_cuda=False)
    assert _fast_silu(cuda, {}) == 1  # the fp32 tanh form by default on CUDA
    assert _fast_silu(cuda, {"packed_silu": True}, packed=True) == 2  # bf16x2 where asked for and the kernel takes it
    # a kernel that needs fp32 (MBConv's depthwise conv), or an fp16 or fp32 run (convfirst passes packed only for bf16
    # weights), keeps the fp32 form
    assert _fast_silu(cuda, {"packed_silu": True}) == 1
    assert _fast_silu(cuda, {"packed_silu": True, "fast_silu": False}, packed=True) == 0  # the exact form wins
    assert _fast_silu(cpu, {"packed_silu": True}, packed=True) == 0  # the interpreter cannot run inline PTX


@needs_triton
def test_an_fp32_block_never_takes_the_bf16_silu(monkeypatch):
    # the ≤ 64-channel default asks for the bf16x2 SiLU; a block whose weights are not bf16 must not get it (its SiLU
    # would be rounded to bf16): the launcher passes packed only for bf16 weights
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from effkit.kernels import triton_blocks

    assert triton_blocks.default_config("convfirst", 48, 192)["packed_silu"] is True
    seen = []
    real = triton_blocks._fast_silu
    monkeypatch.setattr(triton_blocks, "_fast_silu", lambda x, cfg, packed=False: seen.append(packed) or real(x, cfg, packed))
    w = _params(48, 4, 3, seed=1)["convfirst"]
    x = torch.randn(1, 48, 3, 3)
    got = triton_blocks.convfirst(x, *w, group_width=8)
    assert seen == [False] and torch.allclose(got, reference_convfirst(x, *w, group_width=8), atol=1e-4)


@needs_triton
def test_a_strided_block_gets_its_own_default_tiles(monkeypatch):
    # run 24: the tap loop beat the unrolled taps at c96 (stride 1) but not at c48>96/s2 (stride 2), both 128-channel
    # tiles: the launcher must pass the block's stride to default_config, or c48>96/s2 would take the loop
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from effkit.kernels import triton_blocks

    assert triton_blocks.default_config("convfirst", 96, 384)["group_conv"] == "dense_loop"
    assert triton_blocks.default_config("convfirst", 96, 192, stride=2)["group_conv"] == "dense"
    seen = []
    real = triton_blocks.default_config
    monkeypatch.setattr(triton_blocks, "default_config", lambda *a, **k: seen.append(k.get("stride", 1)) or real(*a, **k))
    g = torch.Generator().manual_seed(5)
    w = tuple(0.2 * torch.randn(*s, generator=g) for s in ((48, 8, 3, 3), (48,), (192, 48), (192,), (96, 192), (96,)))
    ws, bs = 0.2 * torch.randn(96, 48, generator=g), torch.zeros(96)
    x = torch.randn(1, 48, 5, 4, generator=g)
    got = triton_blocks.convfirst(x, *w, group_width=8, stride=2, ws=ws, bs=bs, config={"block_p": 16})
    assert seen == [2] and torch.allclose(got, reference_convfirst(x, *w, group_width=8, stride=2, ws=ws, bs=bs), atol=1e-4)


@needs_triton
def test_the_hidden_loop_stages_follow_the_measured_shapes(monkeypatch):
    # run 29c (H200, batch 64): three stages of the hidden loop won at c192 on three parts (0.0350 against 0.0366 ms) and
    # lost at c96>192/s2 (stride 2, two parts: 0.0251 against 0.0238); a 256-channel tile on two parts was not measured
    # with three, and at 192 on two parts the tap loop alone took 196 KB of shared memory
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from effkit.kernels import triton_blocks

    assert triton_blocks.default_config("convfirst", 192, 768, stride=1, c_in=192)["num_stages"] == 3
    assert triton_blocks.default_config("convfirst", 192, 768, stride=2, c_in=96)["num_stages"] == 2
    assert triton_blocks.default_config("convfirst", 256, 1024, stride=1, c_in=256)["num_stages"] == 2


@needs_triton
def test_c96_takes_the_64_pixel_tile_only_where_measured(monkeypatch):
    # run 35 (H200, batch 64, ms): c96 on three parts at stride 1, 64 pixels on 4 warps 0.0448 against 128 on 8 warps
    # 0.0478; the same tile lost at c48>96/s2 (stride 2: 0.0387 against 0.0331) and was not measured on one or two parts
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from effkit.kernels import triton_blocks

    c96 = triton_blocks.default_config("convfirst", 96, 384, stride=1, c_in=96)
    assert (c96["block_p"], c96["num_warps"], c96["block_h"], c96["three_parts"]) == (64, 4, 32, True)
    assert triton_blocks.default_config("convfirst", 96, 384, stride=2, c_in=48)["block_p"] == 128
    assert triton_blocks.default_config("convfirst", 128, 512, stride=1, c_in=128)["block_p"] == 128  # one part: not measured


@needs_triton
def test_the_expanded_channels_split_only_where_measured_faster():
    from effkit.kernels.triton_blocks import auto_split_h

    # run 30h (H200, 132 SMs, batch 1): c384 at 7² is 49 pixels, 2 tiles of 32; hidden 1536 in chunks of 64 = 24: split
    # 8 ways (0.0345 against 0.0694 ms); c192 at 14² (196 pixels, 2 tiles of 128), hidden 768 = 12 chunks: not (0.0355
    # against 0.0338; c192>384/s2, also 12 chunks, gained 8 % and is left unsplit with it)
    assert auto_split_h(tiles=2, chunks=24, sms=132) == 8
    assert auto_split_h(tiles=2, chunks=12, sms=132) == 1
    # batch 64: c384 has 3,136 pixels, 98 tiles of 32: 4 x 98 > 132, no split; 33 tiles is the last that splits
    assert auto_split_h(tiles=98, chunks=24, sms=132) == 1
    assert auto_split_h(tiles=33, chunks=24, sms=132) == 8 and auto_split_h(tiles=34, chunks=24, sms=132) == 1
    # the interpreter counts one SM: nothing splits there unless the config asks
    assert auto_split_h(tiles=1, chunks=96, sms=1) == 1


@needs_triton
def test_the_mbconv_depthwise_ways_follow_the_measured_shapes():
    # run 30c (H200, batch 64): the prefetch won at c48 (a 64-channel tile: 0.3563 against 0.3676 ms), the gather with
    # two pipeline stages at c192 (256: 0.2578 against 0.3000); neither at c96 (128) or c384 (512). The pipeliner may run
    # more than one stage only without the slot: it would move a read of the slot above the barrier after its write
    from effkit.kernels import triton_blocks

    cfg = {c: triton_blocks.default_config("mbconv", c, 4 * c) for c in (48, 96, 192, 384)}
    assert [bool(cfg[c].get("dw_prefetch")) for c in (48, 96, 192, 384)] == [True, False, False, False]
    assert [bool(cfg[c].get("dw_gather")) for c in (48, 96, 192, 384)] == [False, False, True, False]
    assert all(cfg[c]["num_stages"] == 1 for c in (48, 96, 384)) and cfg[192]["num_stages"] == 2


@needs_triton
def test_the_mbconv_halo_follows_the_measured_shapes():
    # run 33b (H200, batch 64): the shift kernel won at c48 (56²), c96 (28²) and c192 (14²); at c384 (7², 49 pixels in a
    # 16x16 frame) it lost 3x (run 33), and it is written for 3x3 only
    from effkit.kernels.triton_blocks import default_config, default_halo

    assert [default_halo(c, 3, 64, hw, hw) for c, hw in ((48, 56), (96, 28), (192, 14), (384, 7))] == ["shift"] * 3 + ["staged"]
    assert default_halo(48, 5, 64, 56, 56) == "staged" and default_halo(48, 3, 64, 56, 13) == "staged" and default_halo(300, 3, 64, 56, 56) == "staged"
    # batch 1 (run 33c): c48 at 56² has 4 x 4 frames, 16 programs (won); c96 at 28² 2 x 2 = 4 and c192 at 14² one frame
    # times two channel groups of 128 = 2 (both lost to the staged kernel); c192 at batch 8: 16
    assert [default_halo(c, 3, 1, hw, hw) for c, hw in ((48, 56), (96, 28), (192, 14))] == ["shift", "staged", "staged"]
    assert default_halo(192, 3, 8, 14, 14) == "shift" and default_halo(192, 3, 7, 14, 14) == "staged"
    assert [default_config("mbconv", c, 4 * c, halo="shift")["block_h"] for c in (48, 96, 192)] == [32, 16, 32]


@needs_triton
def test_mbconv_takes_the_default_halo_unless_the_config_names_one(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from effkit.kernels import triton_blocks

    w = _params(16, 4, 3, seed=1)["mbconv"]
    x = torch.randn(16, 16, 14, 14)  # 16 frames: the shift kernel's default from SHIFT_MIN_PROGRAMS on
    for config, kernel in ((None, "_mbconv_shift_kernel"), ({"halo": "staged"}, "_mbconv_staged_kernel")):
        called = []
        real = getattr(triton_blocks, kernel)

        class Spy:
            def __getitem__(self, grid):
                called.append(kernel)
                return real[grid]
        monkeypatch.setattr(triton_blocks, kernel, Spy())
        got = triton_blocks.mbconv(x, *w, config=config)
        assert called == [kernel] and torch.allclose(got, reference_mbconv(x, *w), atol=1e-4)


def test_which_blocks_take_three_parts_by_default():
    from effkit.kernels.layout import default_three_parts, kernel_input_parts

    # run 25 (H200, batch 64): three parts won at c96, c192 and c192>384/s2, and lost or tied at c48, c48>96/s2, c96>192/s2
    # (c_in, the wider side, stride)
    assert default_three_parts(96, 96, 1) and default_three_parts(192, 192, 1) and default_three_parts(192, 384, 2)
    assert not any(default_three_parts(*a) for a in ((48, 48, 1), (48, 96, 2), (96, 192, 2), (384, 384, 1), (32, 48, 2), (80, 80, 1)))
    assert kernel_input_parts(192, 192, 1, None) == (64, 64, 64)
    assert kernel_input_parts(192, 192, 1, {"three_parts": False}) == (128, 64)
    assert kernel_input_parts(192, 192, 1, {"parts": 1}) == (128, 64)  # an ablation holds the output's two parts
    assert kernel_input_parts(32, 48, 2, None) == (32, 0) and kernel_input_parts(48, 48, 1, {"three_parts": True}) == (16, 16, 16)


@needs_triton
def test_a_block_with_three_default_parts_lays_out_its_weight_for_them(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    import torch.nn.functional as F

    from effkit.kernels.triton_blocks import convfirst

    block = _randomise_bn(ConvFirstBlock(96, 96))
    x = torch.randn(1, 96, 3, 4)
    with torch.no_grad():
        want = block(x)
        holder = nn.Sequential(block).eval()
        fuse_blocks(holder)
        got = holder(x)
    m = holder[0]
    # 96 = 32 + 32 + 32 by default: 9 taps of 3 · 32² = 27,648 weights (two parts, 64 + 32, would be 9 · 5,120 = 46,080)
    assert m.w1dense.numel() == 27648 and m._w1dense_other is None
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    # the ablation of the expansion runs on two parts (the default's three yield): the grouped conv + b1, the residual, b3
    y1 = F.conv2d(x, m.w1, m.b1, padding=1, groups=12)
    assert torch.allclose(convfirst(x, m.w1, m.b1, m.w2, m.b2, m.w3, m.b3, group_width=8, config={"parts": 1, "block_p": 16}),
                          y1 + x + m.b3[:, None, None], atol=1e-4)


def test_the_fusion_note_says_how_the_fused_model_compares_with_compile():
    from effkit.profiling import fusion_note

    row = {"batch": 64, "fused_blocks": 12, "unfused_blocks": 0, "fused_stems": 1, "fused_kernel": "Triton, one kernel per fused block",
           "fused_waterline_ms": 0.130, "fused_ms": 0.637, "fused_iqr_ms": 0.003, "compile_ms": 1.320, "compile_iqr_ms": 0.003,
           "eager_ms": 1.786, "eager_iqr_ms": 0.004, "fused_over_fused_waterline": 0.637 / 0.130, "problem": None}
    # run 26 on the H200: 0.637 / 0.130 = 4.90 the prediction; 1.320 / 0.637 = 2.072 → "2.07x faster"
    assert "block-fused 0.637 ms (IQR 0.003 ms) (x4.90 the prediction, 2.07x faster than torch.compile)" in fusion_note(row)
    # batch 1 (run 27): 0.353 fused against 0.232 compiled, 0.353 / 0.232 = 1.522 → "1.52x slower"
    slow = {**row, "fused_ms": 0.353, "compile_ms": 0.232, "fused_over_fused_waterline": None}
    assert "block-fused 0.353 ms (IQR 0.003 ms) (1.52x slower than torch.compile)" in fusion_note(slow)


@needs_triton
def test_every_kernel_compiles_for_the_h200():
    """The interpreter runs the kernels' logic but compiles nothing: a kernel can pass there and fail Triton's compile
    (a helper whose constexpr branches returned different shapes did). benchmarks/compile_sm90.py --smoke compiles one
    launch of each kernel and of each ConvFirst way for sm_90 on the CPU, in a process without TRITON_INTERPRET (this
    one's Triton interprets); it exits 1 if any fails or asks for more shared memory than the H200 has (232,448 B)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"  # Triton 3.9's default, said aloud (it warns otherwise)
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "compile_sm90.py"), "--smoke"], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    rows = {line[:30].strip(): line[30:].split() for line in r.stdout.splitlines()[1:]}
    assert set(rows) == {"convfirst c48", "convfirst c96 join_parts", "convfirst c48 dense_tma", "convfirst c48>96/s2 split_h",
                         "convfirst c384 swap_ab", "mbconv c48 staged", "mbconv c48 dw_gather", "mbconv c48 recompute", "mbconv c192 shift",
                         "stem 3>32/s2"}
    # the shift kernel's expansion and projection on wgmma, its row and column shifts (batched dots) on mma.sync
    assert int(rows["mbconv c192 shift"][3]) > 0 and int(rows["mbconv c192 shift"][4]) > 0
    # swap_ab exists to put the 32-pixel tiles' expansion on wgmma (the default c384 tile has none: mma.sync alone)
    assert int(rows["convfirst c384 swap_ab"][3]) > 0


@needs_triton
def test_the_chain_ceiling_kernel_computes_the_chain(load_bench):
    """benchmarks/mlp_ceiling.py bounds the blocks' fused-roofline share by its own kernel of the expansion chain alone
    (run 35): a bound only if that kernel computes the chain. Its output against the chain written here, at chunks that
    split the hidden width in four, over a partial pixel tile, and its SAME_CHUNK ablation must differ (it reads other weights)."""
    import torch.nn.functional as F

    mlp_ceiling = load_bench("mlp_ceiling")

    d = mlp_ceiling.make(20, 16, "cpu", torch.float32, seed=3)  # 20 pixels: the second 16-pixel tile is partial
    want = d["x"] + F.silu(d["x"] @ d["W2"].T + d["b2"]) @ d["W3"].T + d["b3"]
    f, _ = mlp_ceiling.fused(d, {"block_p": 16, "block_h": 16, "warps": 4, "stages": 1}, fast=False)
    assert torch.allclose(f(d["x"]), want, atol=1e-4)
    g, _ = mlp_ceiling.fused(d, {"block_p": 16, "block_h": 16, "warps": 4, "stages": 1}, fast=False, same_chunk=True)
    assert (g(d["x"]) - want).abs().max() > 1e-2
    # C = 64 at 56² and batch 64 (200,704 pixels): 2 · 200,704 · 8 · 64² = 13,153,337,344 FLOPs; bytes 2 · (2 · 200,704 · 64
    # + 8 · 64² + 5 · 64) = 51,446,400 (x and out, W2 and W3, the biases b2 (4C) and b3 (C))
    assert mlp_ceiling.cost(64 * 56 * 56, 64) == (13_153_337_344, 51_446_400)


@needs_triton
def test_the_automatic_split_keeps_the_tile_it_was_measured_with():
    # since run 31 c384 takes 128 expanded channels a chunk (12 of its 1536) at batch 64; at batch 1 (2 tiles of 32
    # pixels for 132 SMs) the launch splits 8 ways as run 30h measured, at 64 a chunk (24 chunks, 3 a split), three stages
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import compile_sm90  # catches a launch without running it (the H200's 132 SMs)

    from effkit.kernels import triton_blocks

    r = lambda *s: torch.randn(*s)  # noqa: E731
    w = (r(384, 8, 3, 3), r(384), r(1536, 384), r(1536), r(384, 1536), r(384))

    def launch(batch, config=None):
        x = r(batch, 384, 7, 7)
        return compile_sm90.catch_launch(lambda: triton_blocks.convfirst(x, *w, group_width=8, config=config))

    _, _, kw, grid = launch(64)
    assert (kw["BLOCK_H"], kw["num_stages"], grid) == (128, 2, (98, 1))  # 64·49 = 3,136 pixels in 32s: 98 tiles
    _, _, kw, grid = launch(1)
    assert (kw["BLOCK_H"], kw["num_stages"], grid) == (64, 3, (2, 8))
    _, _, kw, grid = launch(1, {"block_h": 128})  # a chunk the caller names is kept
    assert (kw["BLOCK_H"], grid) == (128, (2, 8))
    _, _, kw, grid = launch(1, {"num_stages": 2})  # and so are the stages the caller names
    assert (kw["BLOCK_H"], kw["num_stages"], grid) == (64, 2, (2, 8))
