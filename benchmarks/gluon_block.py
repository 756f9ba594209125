"""A whole ConvFirst block in Gluon: run 38d's persistent warp-specialised chain with the grouped conv in front (issue 19).

Run 38d took the expansion chain alone (1x1 expand, SiLU, 1x1 project, residual) past 50 % of its fused roofline in
Gluon (gluon_ws_chain.py, persist_epi: a loader warp streams the weights by TMA into a ring, two consumer warpgroups
each run 64 pixels through the chunks on wgmma, a coalesced epilogue). The product's blocks (effkit.kernels, `tl`)
stay at 14-27 % of theirs. This script asks whether that design carries to the whole block:

    y1 = grouped 3x3 conv (group width 8) of x + b1;  out = x + b3 + SiLU(y1·W2ᵀ + b2)·W3ᵀ      (BatchNorms folded)

`_block_kernel` is `_ws_persist_kernel` with each consumer computing its 64 pixels' y1 itself, on the CUDA cores, in
place of the TMA load of x (`_gconv_sub`: a thread holds 4 pixels x one group's 8 outputs; each pair of input channels
one 32-bit load, the taps a loop with the next tap's input in flight, fp32 FMAs), then y1 + b1 in bf16 into the
consumer's shared x tile, fenced for the wgmmas. No MAC is spent outside the groups. The residual is x from global
memory (16-byte pieces, as persist_epi's). Both consumers take the two halves of a 128-pixel tile and read one weight
ring. Modes pfw (the next tap's weights loaded a tap ahead
too) and noload_stamped (an ablation: no input loads, wrong outputs, timed unchecked).
`_block_tc_kernel` (modes tc, tc_stamped; widths up to 128) runs the grouped conv on the tensor cores instead
(`_block_body_tc`: each 16-channel slice nine wgmmas against block-diagonal [16, 16] tiles, 144·C MACs a pixel).
On the H100 (runs 40-42, benchmarks/README.md) the CUDA-core conv was 62-73 % of a consumer's time, bound by its own
FMAs: 31 % of the block's roofline at 256 channels (the fastest block there), 8-25 % below.
Later modes (runs 43-50): tct stages the conv's input by TMA for the tensor-core conv, tci runs the next tile's conv
steps inside this tile's chain. Modes cw and cwu (`_block_cw_kernel`, widths up to 128) move the conv back to the CUDA
cores in a third warpgroup of its own, which fills a ring of y1 buffers while both consumers run the chain (cwu: the
taps unrolled); run 53 (H100): correct, but 21 % at 128 channels and 13 % at 64, the chain waiting on a conv
warpgroup of one warp a scheduler that runs at about a quarter of its estimated rate (benchmarks/README.md).

Widths: powers of two as they are (64, 128, 256: the chain's widths); the zoo's 3·2^k widths (48, 96, 192) padded to
the next power of two in shared memory and registers only (weights zero-padded once; x, the output and the residual
read and written at the real width with masks), which costs the padded share of the MACs (1.33x). Beside each: the
product's `tl` kernel of the same block (`fuse_blocks`) and torch.compile of the unfused block, same process, same
weights. Check: max |out − fp32 reference| / max |reference| ≤ kernels_gpu.TOL (2e-2), as every block kernel.
Roofline: kernels_gpu.block_cost (grouped conv + expand + project MACs; x, out, folded weights once) over the card's
ceilings (--ceilings).

    python3 benchmarks/gluon_block.py --out $OUT --ceilings FILE [--widths 64,128,256,48,96,192] [--modes tc,tc_stamped,pfw]
    python3 benchmarks/gluon_block.py --compile-only [--widths ...]          (sm_90 compile here, no GPU)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy
from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, mbarrier, warpgroup_mma, warpgroup_mma_wait

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from gluon_chain import _silu, swizzle  # noqa: E402
from gluon_ws_chain import _clock, _loader_persist, _stamps_end, _stamps_start, _tma_load, persist_stamp_summary  # noqa: E402

# Triton 3.6 (the device's) names the CTA barrier thread_barrier; 3.9 (here) barrier
_barrier = getattr(gl, "thread_barrier", None) or gl.barrier
# and its cp.async async_copy_global_to_shared; 3.9 async_load (the old name raises there)
_async_load = getattr(async_copy, "async_load", None) or async_copy.async_copy_global_to_shared
# a compile-time helper's decorator: gluon's where it has one, else triton's own, which has moved between releases
# (triton.constexpr_function, triton.language's, triton.runtime.jit's since 2025-08): the first found
_constexpr_function = next(f for f in (getattr(gluon, "constexpr_function", None), getattr(triton, "constexpr_function", None),
                                       getattr(__import__("triton.language", fromlist=["x"]), "constexpr_function", None),
                                       getattr(__import__("triton.runtime.jit", fromlist=["x"]), "constexpr_function", None)) if f)

BLOCK_P = 64  # a warpgroup's wgmma M
MAPS = {48: 56, 64: 56, 96: 28, 128: 28, 192: 14, 256: 14}  # the map side at that width in convfirst_net (224², batch 64)


def padded(c: int) -> int:
    return 1 << (c - 1).bit_length()


@gluon.jit
def _tap_words(xi, tap, n, h, w, pm, gm, g, H, W, C):
    """The four 32-bit words (input channel pairs 0-1, 2-3, 4-5, 6-7 of each group) of each pixel's neighbour at `tap`
    (0-8, row-major over the 3x3 window), 0 where the neighbour is off the image or the pixel is masked."""
    hh = h + tap // 3 - 1
    ww = w + tap % 3 - 1
    ok = pm & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
    p = xi + ((n * H + hh) * W + ww)[:, None] * (C // 2) + g[None, :] * 4
    m = ok[:, None] & gm
    return (gl.load(p, mask=m, other=0), gl.load(p + 1, mask=m, other=0), gl.load(p + 2, mask=m, other=0),
            gl.load(p + 3, mask=m, other=0))


@gluon.jit
def _pair_fma(acc, v, w_lo, w_hi):
    """acc [SUB, G, 8 out] += the word v's two bf16 input channels (low half first) times their weights w_lo, w_hi
    ([G, 8 out] fp32 each)."""
    lo = (v << 16).to(gl.float32, bitcast=True)
    hi = (v & -65536).to(gl.float32, bitcast=True)
    acc += gl.expand_dims(lo, 2) * gl.expand_dims(w_lo, 0)
    return acc + gl.expand_dims(hi, 2) * gl.expand_dims(w_hi, 0)


@gluon.jit
def _tap_weights(wf_ptr, tap, gco, CP: gl.constexpr):
    """The 8 input channels' weights at `tap` to each group's 8 outputs: 8 [G, 8] fp32 tensors (wf [9, 8 in, CP])."""
    wt = wf_ptr + tap * 8 * CP + gco
    return (gl.load(wt), gl.load(wt + CP), gl.load(wt + 2 * CP), gl.load(wt + 3 * CP), gl.load(wt + 4 * CP), gl.load(wt + 5 * CP),
            gl.load(wt + 6 * CP), gl.load(wt + 7 * CP))


@gluon.jit
def _tap_weights_s(wf_s, b, WL: gl.constexpr):
    """`_tap_weights` from shared memory: rows b to b + 7 of wf_s [., G, 8] fp32 (a tap's 8 input channels), 8 [G, 8]
    tensors in WL."""
    return (wf_s.index(b).load(WL), wf_s.index(b + 1).load(WL), wf_s.index(b + 2).load(WL), wf_s.index(b + 3).load(WL),
            wf_s.index(b + 4).load(WL), wf_s.index(b + 5).load(WL), wf_s.index(b + 6).load(WL), wf_s.index(b + 7).load(WL))


@gluon.jit
def _gconv_sub(x_ptr, wf_ptr, b1_ptr, row0, NPIX, H, W, C, CP: gl.constexpr, R: gl.constexpr, CONV: gl.constexpr = 0, WS: gl.constexpr = False, wf8=None):
    """y1 + b1 of the SUB = 4·(32 // G)·R pixels from row0 (flat NHWC), [SUB, CP] bf16: the grouped 3x3 conv, group
    width 8, in fp32 FMAs on the CUDA cores. A thread holds R pixels x one group's 8 outputs (R·8 fp32 accumulators).
    For each tap and each pair of input channels it loads the pair as one 32-bit word a pixel (bf16 to fp32 is a
    16-bit shift: no conversion instruction) and the two channels' weights for its group's 8 outputs (wf [9, 8 in, CP]
    fp32, 32 bytes each), then 2·R·8 FMAs. The taps are a loop whose next tap's input words are loaded while this
    tap's FMAs run (one tap's latency exposed a sub-tile, not nine). CONV 1: the next tap's weights are loaded a tap
    ahead too (64 more registers a thread); CONV 2 (an ablation, wrong outputs): no input loads at all, to time the
    FMAs and weight loads alone. WS: the weights staged in shared memory, read there each tap instead of from global
    memory (the cw kernel's conv partition): wf_ptr [64, G, 8] fp32 taps 0-7 (row 8·tap + input channel), wf8 [8, G,
    8] tap 8 (an allocation's dimensions are powers of two).
    Channels from C to CP (padding) have zero weights and bias and are not loaded."""
    G: gl.constexpr = CP // 8
    TR: gl.constexpr = 32 // G
    SUB: gl.constexpr = 4 * TR * R
    L3: gl.constexpr = gl.BlockedLayout([R, 1, 8], [TR, G, 1], [4, 1, 1], [2, 1, 0])
    XL: gl.constexpr = gl.SliceLayout(2, L3)  # [SUB, G]: a pixel's input pair of a group
    WL: gl.constexpr = gl.SliceLayout(0, L3)  # [G, 8]: one input channel's weights to a group's 8 outputs
    r = row0 + gl.arange(0, SUB, layout=gl.SliceLayout(1, XL))
    g = gl.arange(0, G, layout=gl.SliceLayout(0, XL))
    gm = (g * 8 < C)[None, :]
    hw = H * W
    n = r // hw
    h = (r % hw) // W
    w = r % W
    pm = r < NPIX
    xi = x_ptr.to(gl.pointer_type(gl.int32), bitcast=True)
    gco = gl.arange(0, G, layout=gl.SliceLayout(1, WL))[:, None] * 8 + gl.arange(0, 8, layout=gl.SliceLayout(0, WL))[None, :]
    acc = gl.zeros([SUB, G, 8], gl.float32, L3)
    x0, x1, x2, x3 = _tap_words(xi, 0, n, h, w, pm, gm, g, H, W, C)
    if CONV == 1:
        u0, u1, u2, u3, u4, u5, u6, u7 = _tap_weights(wf_ptr, 0, gco, CP)
    for tap in range(9):  # a loop, not unrolled: unrolled, every tap's weights were hoisted and spilled (2.4 KB at CP 128)
        if CONV == 2:  # ablation: no input loads (a made-up word from the tap and channel pair), the FMAs and weights as ever
            v0 = gl.zeros_like(x0) + tap
            v1 = v0 + 1
            v2 = v0 + 2
            v3 = v0 + 3
        else:
            v0, v1, v2, v3 = x0, x1, x2, x3
            x0, x1, x2, x3 = _tap_words(xi, tap + 1, n, h, w, pm & (tap < 8), gm, g, H, W, C)  # the next tap's, in flight meanwhile
        if CONV == 1:  # this tap's weights came a tap ahead; the next tap's (tap 0's again after the last) load meanwhile
            w0, w1, w2, w3, w4, w5, w6, w7 = u0, u1, u2, u3, u4, u5, u6, u7
            u0, u1, u2, u3, u4, u5, u6, u7 = _tap_weights(wf_ptr, (tap + 1) % 9, gco, CP)
        elif WS:
            if tap < 8:
                w0, w1, w2, w3, w4, w5, w6, w7 = _tap_weights_s(wf_ptr, tap * 8, WL)
            else:
                w0, w1, w2, w3, w4, w5, w6, w7 = _tap_weights_s(wf8, 0, WL)
        else:
            w0, w1, w2, w3, w4, w5, w6, w7 = _tap_weights(wf_ptr, tap, gco, CP)
        acc = _pair_fma(acc, v0, w0, w1)
        acc = _pair_fma(acc, v1, w2, w3)
        acc = _pair_fma(acc, v2, w4, w5)
        acc = _pair_fma(acc, v3, w6, w7)
    b1 = gl.load(b1_ptr + gco).to(gl.float32)  # b1 padded to CP
    return gl.reshape((acc + gl.expand_dims(b1, 0)).to(gl.bfloat16), [SUB, CP])


@_constexpr_function
def _wgmma_l(n):
    """A warpgroup's wgmma accumulator layout for an n-wide output (m64, in four 16-row pieces)."""
    return gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, n, 16])


@_constexpr_function
def _rows_l(cp):
    """The epilogue's layout over [64, cp]: row-major 16-byte pieces (8 bf16), a warp across whole rows."""
    return gl.BlockedLayout([1, 8], [32 // (cp // 8) if cp < 256 else 1, cp // 8 if cp < 256 else 32], [4, 1], [1, 0])


@gluon.jit
def _stamps_open(out_ptr, NPIX, C, slot, first):
    """A stamped consumer's start (`_stamps_start`) and its three clock totals at zero (int64): st, c_start, conv,
    loops, epilogues."""
    st, c_start = _stamps_start(out_ptr, NPIX, C, slot, first)
    z = c_start - c_start
    return st, c_start, z, z, z


@gluon.jit
def _epilogue(acc, b3_ptr, x_ptr, out_ptr, row0, NPIX, C, acc_l: gl.constexpr, st_l: gl.constexpr):
    """The block's end for a consumer's 64 pixels from row0: bias, bf16, into the row-major layout of 16-byte pieces
    (st_l), plus the residual x (from global memory, the same pieces), stored at the real width C."""
    BLOCK_P: gl.constexpr = acc.shape[0]
    CP: gl.constexpr = acc.shape[1]
    ocol = gl.arange(0, CP, layout=gl.SliceLayout(0, acc_l))
    y = gl.convert_layout((acc + gl.load(b3_ptr + ocol).to(gl.float32)[None, :]).to(gl.bfloat16), st_l)
    srow = row0 + gl.arange(0, BLOCK_P, layout=gl.SliceLayout(1, st_l))
    scol = gl.arange(0, CP, layout=gl.SliceLayout(0, st_l))
    off = srow[:, None] * C + scol[None, :]
    m = (srow < NPIX)[:, None] & (scol < C)[None, :]
    gl.store(out_ptr + off, (y.to(gl.float32) + gl.load(x_ptr + off, mask=m, other=0.0).to(gl.float32)).to(gl.bfloat16), mask=m)


@gluon.jit
def _chunks(a_s, a_base, NA: gl.constexpr, w2_s, w3_s, ready, empty, b2_ptr, HID, k, acc_l: gl.constexpr, e_l: gl.constexpr):
    """One tile's pass through every chunk of the ring (k: chunks taken so far, the ring's position and phase): E =
    y1·W2ᵀ[chunk] (wgmma; y1 the [64, CP] tile a_s, or with NA > 0 the NA [64, 16] tiles a_s[a_base:] against row
    slices of the chunk), P = SiLU(E + b2) in registers, acc += P·W3ᵀ[chunk]; each slot freed once read. Returns the
    [64, CP] fp32 accumulator and k."""
    STAGES: gl.constexpr = w2_s.shape[0]
    CP: gl.constexpr = w2_s.shape[1]
    BLOCK_H: gl.constexpr = w2_s.shape[2]
    BLOCK_P: gl.constexpr = a_s.shape[1] if NA > 0 else a_s.shape[0]
    p_l: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=acc_l, k_width=2)
    hb = gl.arange(0, BLOCK_H, layout=gl.SliceLayout(0, e_l))
    e0 = gl.zeros([BLOCK_P, BLOCK_H], gl.float32, e_l)
    acc = gl.zeros([BLOCK_P, CP], gl.float32, acc_l)
    for i in range(HID // BLOCK_H):
        s = k % STAGES
        b2 = gl.load(b2_ptr + i * BLOCK_H + hb).to(gl.float32)
        mbarrier.wait(ready.index(s), (k // STAGES) & 1)
        if NA > 0:
            w2c = w2_s.index(s)
            e = warpgroup_mma(a_s.index(a_base), w2c.slice(0, 16, dim=0), e0, use_acc=False, is_async=True)
            for jj in gl.static_range(1, NA):
                e = warpgroup_mma(a_s.index(a_base + jj), w2c.slice(16 * jj, 16, dim=0), e, is_async=True)
        else:
            e = warpgroup_mma(a_s, w2_s.index(s), e0, use_acc=False, is_async=True)
        e = warpgroup_mma_wait(0, deps=[e])
        p = gl.convert_layout(_silu(e + b2[None, :]).to(gl.bfloat16), p_l)
        acc = warpgroup_mma(p, w3_s.index(s), acc, is_async=True)
        acc, p = warpgroup_mma_wait(0, deps=[acc, p])
        mbarrier.arrive(empty.index(s))
        k += 1
    return acc, k


@gluon.jit
def _tile_rest(a_s, a_base, NA: gl.constexpr, w2_s, w3_s, ready, empty, b2_ptr, b3_ptr, x_ptr, out_ptr, row0, NPIX, C, HID, k, t, c0,
               conv_cyc, loop_cyc, epi_cyc, acc_l: gl.constexpr, e_l: gl.constexpr, st_l: gl.constexpr, STAMP: gl.constexpr):
    """A consumer's tile after its conv wrote y1 to a_s (`_chunks`' a_s, a_base, NA): the writes fenced and met at a
    barrier before the first wgmma reads them, the chain (`_chunks`), the epilogue. STAMP: the conv's (from c0),
    loops' and epilogue's %clock64 cycles added to the totals. Returns k and the three totals."""
    fence_async_shared()
    _barrier()
    if STAMP:
        c1 = _clock(t)
        conv_cyc += c1 - c0
    acc, k = _chunks(a_s, a_base, NA, w2_s, w3_s, ready, empty, b2_ptr, HID, k, acc_l, e_l)
    if STAMP:
        c2 = _clock(t)
        loop_cyc += c2 - c1
    _epilogue(acc, b3_ptr, x_ptr, out_ptr, row0, NPIX, C, acc_l, st_l)
    if STAMP:
        epi_cyc += _clock(t) - c2
    return k, conv_cyc, loop_cyc, epi_cyc


@gluon.jit
def _block_body(x_t, w2_s, w3_s, ready, empty, x_ptr, wf_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first, ntiles, step,
                tile_rows, row_off, slot, STAMP: gl.constexpr, CONV: gl.constexpr = 0):
    """One consumer warpgroup: for each tile it takes (first, first + step, ... below ntiles; its 64 pixels from row
    tile·tile_rows + row_off), y1 by `_gconv_sub` into its x tile (all of the warpgroup's stores fenced and met at a
    barrier before the first wgmma reads it), then gluon_ws_chain's persist_epi chain and epilogue at the real width C.
    STAMP: %clock64 totals of its convs, chunk loops and epilogues, after the output at `slot` (as persist_epi_stamped:
    clock at start, conv, loops, epilogues, clock at end, %smid, %globaltimer at start and end)."""
    BLOCK_P: gl.constexpr = x_t.shape[0]
    CP: gl.constexpr = x_t.shape[1]
    BLOCK_H: gl.constexpr = w2_s.shape[2]
    RC: gl.constexpr = 4  # conv pixels a thread: SUB = 64, 32, 16 at CP 64, 128, 256 (32 // G threads a warp down the pixels)
    SUB: gl.constexpr = 4 * (32 // (CP // 8)) * RC
    acc_l: gl.constexpr = _wgmma_l(CP)
    e_l: gl.constexpr = _wgmma_l(BLOCK_H)
    st_l: gl.constexpr = _rows_l(CP)
    conv_cyc = 0  # the clock totals (int64 where STAMP)
    loop_cyc = 0
    epi_cyc = 0
    if STAMP:
        st, c_start, conv_cyc, loop_cyc, epi_cyc = _stamps_open(out_ptr, NPIX, C, slot, first)
    t = first
    k = 0
    while t < ntiles:
        row0 = t * tile_rows + row_off
        c0 = 0  # the conv's start (STAMP)
        if STAMP:
            c0 = _clock(t)
        for sub in gl.static_range(BLOCK_P // SUB):
            x_t.slice(sub * SUB, SUB, dim=0).store(_gconv_sub(x_ptr, wf_ptr, b1_ptr, row0 + sub * SUB, NPIX, H, W, C, CP, RC, CONV))
        k, conv_cyc, loop_cyc, epi_cyc = _tile_rest(x_t, 0, 0, w2_s, w3_s, ready, empty, b2_ptr, b3_ptr, x_ptr, out_ptr, row0, NPIX, C,
                                                    HID, k, t, c0, conv_cyc, loop_cyc, epi_cyc, acc_l, e_l, st_l, STAMP)
        t += step
    if STAMP:
        _stamps_end(st, c_start, conv_cyc, loop_cyc, epi_cyc, first)


@gluon.jit
def _consume_block(x_t, w2_s, w3_s, ready, empty, x_ptr, wf_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first, ntiles, step,
                   tile_rows, row_off, slot):
    _block_body(x_t, w2_s, w3_s, ready, empty, x_ptr, wf_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first, ntiles, step,
                tile_rows, row_off, slot, False)


@gluon.jit
def _consume_block_stamped(x_t, w2_s, w3_s, ready, empty, x_ptr, wf_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first, ntiles,
                           step, tile_rows, row_off, slot):
    _block_body(x_t, w2_s, w3_s, ready, empty, x_ptr, wf_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first, ntiles, step,
                tile_rows, row_off, slot, True)


@gluon.jit
def _consume_block_pfw(x_t, w2_s, w3_s, ready, empty, x_ptr, wf_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first, ntiles, step,
                       tile_rows, row_off, slot):
    _block_body(x_t, w2_s, w3_s, ready, empty, x_ptr, wf_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first, ntiles, step,
                tile_rows, row_off, slot, False, 1)


@gluon.jit
def _consume_block_pfw_stamped(x_t, w2_s, w3_s, ready, empty, x_ptr, wf_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first,
                               ntiles, step, tile_rows, row_off, slot):
    _block_body(x_t, w2_s, w3_s, ready, empty, x_ptr, wf_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first, ntiles, step,
                tile_rows, row_off, slot, True, 1)


@gluon.jit
def _consume_block_noload_stamped(x_t, w2_s, w3_s, ready, empty, x_ptr, wf_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first,
                                  ntiles, step, tile_rows, row_off, slot):
    _block_body(x_t, w2_s, w3_s, ready, empty, x_ptr, wf_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first, ntiles, step,
                tile_rows, row_off, slot, True, 2)


@gluon.jit
def _block_kernel(w2_desc, w3_desc, x_ptr, wf_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, CP: gl.constexpr, HID: gl.constexpr,
                  BLOCK_P: gl.constexpr, BLOCK_H: gl.constexpr, STAGES: gl.constexpr, REGS: gl.constexpr, SW_X: gl.constexpr,
                  STAMP: gl.constexpr = False, CONV: gl.constexpr = 0):
    """The ConvFirst block, persistent (one program an SM): two consumer warpgroups (`_block_body`) taking the halves
    of 128-pixel tiles in turn and one loader warp (gluon_ws_chain._loader_persist) streaming both one weight ring.
    W2ᵀ [CP, HID] and W3ᵀ [HID, CP] by TMA descriptors (zero-padded from C to CP); x and out [NPIX, C] bf16. (Runs 40
    and 41 also timed a ring and loader a consumer, at commits f2cfb4f and 1dce986: it never beat the shared ring.)"""
    x_s = gl.allocate_shared_memory(gl.bfloat16, [2, BLOCK_P, CP], gl.NVMMASharedLayout(swizzle_byte_width=SW_X, element_bitwidth=16, rank=2))
    w2_s, w3_s, ready, empty = _ring(w2_desc, w3_desc, CP, BLOCK_H, STAGES)
    pid = gl.program_id(0)
    nprog = gl.num_programs(0)
    nt = gl.cdiv(NPIX, 2 * BLOCK_P)
    c0 = (x_s.index(0), w2_s, w3_s, ready, empty, x_ptr, wf_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, pid, nt, nprog,
          2 * BLOCK_P, 0, 2 * pid)
    c1 = (x_s.index(1), w2_s, w3_s, ready, empty, x_ptr, wf_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, pid, nt, nprog,
          2 * BLOCK_P, BLOCK_P, 2 * pid + 1)
    ld = (w2_s, w3_s, ready, empty, w2_desc, w3_desc, HID, pid, nt, nprog)
    if CONV == 2:
        gl.static_assert(STAMP, "the noload ablation is stamped")
        gl.warp_specialize([(_consume_block_noload_stamped, c0), (_consume_block_noload_stamped, c1), (_loader_persist, ld)], [4, 1],
                           [REGS, 24])
    elif CONV == 1 and STAMP:
        gl.warp_specialize([(_consume_block_pfw_stamped, c0), (_consume_block_pfw_stamped, c1), (_loader_persist, ld)], [4, 1], [REGS, 24])
    elif CONV == 1:
        gl.warp_specialize([(_consume_block_pfw, c0), (_consume_block_pfw, c1), (_loader_persist, ld)], [4, 1], [REGS, 24])
    elif STAMP:
        gl.warp_specialize([(_consume_block_stamped, c0), (_consume_block_stamped, c1), (_loader_persist, ld)], [4, 1], [REGS, 24])
    else:
        gl.warp_specialize([(_consume_block, c0), (_consume_block, c1), (_loader_persist, ld)], [4, 1], [REGS, 24])


@gluon.jit
def _ring(w2_desc, w3_desc, CP: gl.constexpr, BLOCK_H: gl.constexpr, STAGES: gl.constexpr):
    """The weight ring both consumers share: STAGES slots of a W2ᵀ [CP, BLOCK_H] and a W3ᵀ [BLOCK_H, CP] chunk, a
    `ready` barrier a slot (the TMA byte count completes it) and an `empty` one (both consumers arrive)."""
    w2_s = gl.allocate_shared_memory(gl.bfloat16, [STAGES, CP, BLOCK_H], w2_desc.layout)
    w3_s = gl.allocate_shared_memory(gl.bfloat16, [STAGES, BLOCK_H, CP], w3_desc.layout)
    ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for s in gl.static_range(STAGES):
        mbarrier.init(ready.index(s), count=1)
        mbarrier.init(empty.index(s), count=2)
    fence_async_shared()
    return w2_s, w3_s, ready, empty


@gluon.jit
def _tap_a(x_ptr, tap, j, n, h, w, pm, kk, H, W, C):
    """Input channels 16j..16j+15 of each pixel's neighbour at `tap` (0-8), [64, 16] bf16 in the wgmma A operand's
    register layout (kk's parent), 0 off the image, past C, or for masked pixels."""
    hh = h + tap // 3 - 1
    ww = w + tap % 3 - 1
    ok = pm & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
    ch = 16 * j + kk
    return gl.load(x_ptr + ((n * H + hh) * W + ww)[:, None] * C + ch[None, :], mask=ok[:, None] & (ch < C)[None, :], other=0.0)


@gluon.jit
def _slice_taps(x_ptr, j, n, h, w, pm, kk, H, W, C):
    """The nine taps' A operands of channel slice j (`_tap_a`)."""
    return (_tap_a(x_ptr, 0, j, n, h, w, pm, kk, H, W, C), _tap_a(x_ptr, 1, j, n, h, w, pm, kk, H, W, C),
            _tap_a(x_ptr, 2, j, n, h, w, pm, kk, H, W, C), _tap_a(x_ptr, 3, j, n, h, w, pm, kk, H, W, C),
            _tap_a(x_ptr, 4, j, n, h, w, pm, kk, H, W, C), _tap_a(x_ptr, 5, j, n, h, w, pm, kk, H, W, C),
            _tap_a(x_ptr, 6, j, n, h, w, pm, kk, H, W, C), _tap_a(x_ptr, 7, j, n, h, w, pm, kk, H, W, C),
            _tap_a(x_ptr, 8, j, n, h, w, pm, kk, H, W, C))


@gluon.jit
def _stage(buf, x_ptr, row0, u, ok_tile, NPIX, H: gl.constexpr, W: gl.constexpr, C, CA: gl.constexpr, NOMEM: gl.constexpr = False):
    """Issue step u of a tile's staged conv (chunk u // 9 of CH input channels, tap u % 9) as one cp.async group: the
    [64, CH] rows of the 64 pixels' neighbours at the tap, whole 128-byte pixel rows in 16-byte pieces (8 threads a
    row: 4 L1 wavefronts a warp load, where a [64, 16] slice gathered in the wgmma operand's layout takes 8), into
    `buf` (128-byte swizzle, the wgmma's A layout); zeros off the image, past C, past NPIX or where not ok_tile (a
    step past the last tile still commits its empty group, so every step waits on the same count). Triton makes a
    16-byte cp.async .cg (past L1, so the nine taps' overlapping rows each come from L2); CA: 8-byte pieces, which it
    makes .ca (through L1, where the taps' rows can hit). NOMEM (an ablation, wrong outputs): every piece masked, so
    the cp.asyncs zero-fill and read nothing; the instructions, waits and barriers as ever."""
    BLOCK_P: gl.constexpr = buf.shape[0]
    CH: gl.constexpr = buf.shape[1]
    if CA:
        ld_l: gl.constexpr = gl.BlockedLayout([1, 4], [32 // (CH // 4), CH // 4], [4, 1], [1, 0])
    else:
        ld_l: gl.constexpr = gl.BlockedLayout([1, 8], [32 // (CH // 8), CH // 8], [4, 1], [1, 0])
    r = row0 + gl.arange(0, BLOCK_P, layout=gl.SliceLayout(1, ld_l))
    tap = u % 9
    dy = tap // 3 - 1
    dx = tap % 3 - 1
    h = (r % (H * W)) // W + dy
    w = r % W + dx
    ok = ok_tile & (r < NPIX) & (h >= 0) & (h < H) & (w >= 0) & (w < W)
    if NOMEM:
        ok = ok & (r < 0)
    ch = (u // 9) * CH + gl.arange(0, CH, layout=gl.SliceLayout(0, ld_l))
    _async_load(buf, x_ptr + (r + dy * W + dx)[:, None] * C + ch[None, :], mask=ok[:, None] & (ch < C)[None, :])
    async_copy.commit_group()


@gluon.jit
def _y1_store(y_s, i, acc, b1_ptr, c0, bc):
    """y_s[i] = acc + b1[c0:c0 + 16] in bf16 (a [64, 16] slice of y1)."""
    y_s.index(i).store((acc + gl.load(b1_ptr + c0 + bc).to(gl.float32)[None, :]).to(gl.bfloat16))


@gluon.jit
def _conv_staged(tap_s, tbase, wb_s, y_s, ybase, x_ptr, b1_ptr, row0, next_row0, ok_next, s0, NPIX, H: gl.constexpr, W: gl.constexpr, C,
                 cv_l: gl.constexpr, CA: gl.constexpr, NOMEM: gl.constexpr):
    """The grouped conv of a consumer's 64 pixels from row0 on the tensor cores, its input staged in shared memory:
    steps chunk-major (CP/CH chunks of CH = 64 or 128 input channels, the slots' width), tap-minor; each step's [64, CH] neighbour rows come by
    cp.async (`_stage`) into a ring of NB slots (tap_s[tbase:], NB - 1 steps ahead, running on into the next tile's
    first steps at next_row0), and its CH/16 16-channel slices are as many wgmmas m64n16k16 with A from the slot and B
    the slice's block-diagonal [16, 16] weight at the tap. The slices' y1 + b1 go to y_s[ybase + CH/16·chunk ..]. s0: the
    steps this consumer has issued before (the ring's position)."""
    NB: gl.constexpr = tap_s.shape[0] // 2
    BLOCK_P: gl.constexpr = tap_s.shape[1]
    CH: gl.constexpr = tap_s.shape[2]
    NS: gl.constexpr = wb_s.shape[0] // 9
    NQ: gl.constexpr = CH // 16
    NSTEP: gl.constexpr = 9 * (NS // NQ)
    gl.static_assert((NQ == 4) | (NQ == 8), "a chunk is 64 or 128 channels")
    bc = gl.arange(0, 16, layout=gl.SliceLayout(0, cv_l))
    z16 = gl.zeros([BLOCK_P, 16], gl.float32, cv_l)
    for chunk in range(NS // NQ):
        y0 = z16
        y1 = z16
        y2 = z16
        y3 = z16
        y4 = z16
        y5 = z16
        y6 = z16
        y7 = z16
        for tap in gl.static_range(9):
            s = chunk * 9 + tap
            u = s + NB - 1  # the step to issue now: this tile's, or the next tile's first ones
            nxt = u >= NSTEP
            _stage(tap_s.index(tbase + (s0 + u) % NB), x_ptr, gl.where(nxt, next_row0, row0), gl.where(nxt, u - NSTEP, u),
                   (u < NSTEP) | ok_next, NPIX, H, W, C, CA, NOMEM)
            async_copy.wait_group(NB - 1)  # this step's group has landed (this thread's part)
            fence_async_shared()
            _barrier()  # everyone's parts, visible to the wgmmas
            a = tap_s.index(tbase + (s0 + s) % NB)
            q = tap * NS + chunk * NQ
            y0 = warpgroup_mma(a.slice(0, 16, dim=1), wb_s.index(q), y0, is_async=True)
            y1 = warpgroup_mma(a.slice(16, 16, dim=1), wb_s.index(q + 1), y1, is_async=True)
            y2 = warpgroup_mma(a.slice(32, 16, dim=1), wb_s.index(q + 2), y2, is_async=True)
            y3 = warpgroup_mma(a.slice(48, 16, dim=1), wb_s.index(q + 3), y3, is_async=True)
            if NQ == 8:
                y4 = warpgroup_mma(a.slice(64, 16, dim=1), wb_s.index(q + 4), y4, is_async=True)
                y5 = warpgroup_mma(a.slice(80, 16, dim=1), wb_s.index(q + 5), y5, is_async=True)
                y6 = warpgroup_mma(a.slice(96, 16, dim=1), wb_s.index(q + 6), y6, is_async=True)
                y7 = warpgroup_mma(a.slice(112, 16, dim=1), wb_s.index(q + 7), y7, is_async=True)
                y0, y1, y2, y3, y4, y5, y6, y7 = warpgroup_mma_wait(0, deps=[y0, y1, y2, y3, y4, y5, y6, y7])
            else:
                y0, y1, y2, y3 = warpgroup_mma_wait(0, deps=[y0, y1, y2, y3])  # the slot is read: it may be refilled
        j = chunk * NQ
        _y1_store(y_s, ybase + j, y0, b1_ptr, 16 * j, bc)
        _y1_store(y_s, ybase + j + 1, y1, b1_ptr, 16 * j + 16, bc)
        _y1_store(y_s, ybase + j + 2, y2, b1_ptr, 16 * j + 32, bc)
        _y1_store(y_s, ybase + j + 3, y3, b1_ptr, 16 * j + 48, bc)
        if NQ == 8:
            _y1_store(y_s, ybase + j + 4, y4, b1_ptr, 16 * j + 64, bc)
            _y1_store(y_s, ybase + j + 5, y5, b1_ptr, 16 * j + 80, bc)
            _y1_store(y_s, ybase + j + 6, y6, b1_ptr, 16 * j + 96, bc)
            _y1_store(y_s, ybase + j + 7, y7, b1_ptr, 16 * j + 112, bc)
    return s0 + NSTEP


@gluon.jit
def _loader_x(x_s, xbar, x_desc, first, ntiles, step, tile_rows, W, nstep):
    """The tct kernel's second loader warp: for every tile its consumers take, each conv step (chunk u // 9 of 64
    input channels, tap u % 9) as two TMA boxes [64, 64], one a consumer: the rows of its 64 pixels shifted by the
    tap (row0 + dy·W + dx; rows before 0 or past NPIX and channels past C come as zeros), into a ring of NBX slot
    pairs x_s[2s], x_s[2s + 1] (xbar[s] ready, by the byte count; xbar[NBX + s] empty, both consumers arrive)."""
    NBX: gl.constexpr = x_s.shape[0] // 2
    BLOCK_P: gl.constexpr = x_s.shape[1]
    CH: gl.constexpr = x_s.shape[2]
    k = 0  # steps loaded so far: the ring's position and phase
    for t in range(first, ntiles, step):
        for u in range(nstep):
            s = k % NBX
            tap = u % 9
            r = t * tile_rows + (tap // 3 - 1) * W + tap % 3 - 1
            mbarrier.wait(xbar.index(NBX + s), ((k // NBX) & 1) ^ 1)
            mbarrier.expect(xbar.index(s), 2 * BLOCK_P * CH * 2)
            _tma_load(x_desc, [r, (u // 9) * CH], xbar.index(s), x_s.index(2 * s))
            _tma_load(x_desc, [r + BLOCK_P, (u // 9) * CH], xbar.index(s), x_s.index(2 * s + 1))
            k += 1


@gluon.jit
def _tap_ok(h, w, pm, tap: gl.constexpr, H: gl.constexpr, W: gl.constexpr):
    """Whether each pixel's neighbour at `tap` lies on the image (pm: the pixel is real)."""
    dy: gl.constexpr = tap // 3 - 1
    dx: gl.constexpr = tap % 3 - 1
    return (pm & (h + dy >= 0) & (h + dy < H) & (w + dx >= 0) & (w + dx < W))[:, None]


@gluon.jit
def _tap_keep(h, w, pm, tap: gl.constexpr, H: gl.constexpr, W: gl.constexpr, a_l: gl.constexpr):
    """`_tap_ok` as a [64, 16] bf16 bit mask in the A operand's layout: all ones (0xFFFF) where the neighbour is on
    the image, else 0; built once a step and ANDed into its four slices (`_and_keep`)."""
    ones = gl.full([pm.shape[0], 16], -1, gl.int16, a_l)
    return gl.where(_tap_ok(h, w, pm, tap, H, W), ones, gl.zeros_like(ones)).to(gl.bfloat16, bitcast=True)


@gluon.jit
def _and_keep(a, keep):
    """a AND keep, two bf16 a 32-bit register: one and.b32 for each pair where a select of each element (Triton's
    lowering of gl.where on bf16) took a PRMT to unpack, a SEL and a PRMT to pack again."""
    return gl.inline_asm_elementwise("and.b32 $0, $1, $2;", "=r,r,r", [a, keep], dtype=gl.bfloat16, is_pure=True, pack=2)


@gluon.jit
def _conv_tma(x_s, xbar, kx, half, wb_s, y_s, ybase, b1_ptr, row0, NPIX, H: gl.constexpr, W: gl.constexpr, cv_l: gl.constexpr,
              LAG: gl.constexpr, ABL: gl.constexpr = 0):
    """The grouped conv of a consumer's 64 pixels from row0 on the tensor cores, its input brought by TMA
    (`_loader_x`): per step (chunk-major, tap-minor, 64 input channels) the consumer waits for its box x_s[2s + half],
    loads its four 16-channel slices into the wgmma A operand's registers (ldmatrix from the 128-byte swizzle),
    zeroes the rows whose neighbour is off the image there (the box is the flat rows shifted, so a pixel at the left
    edge reads its row's predecessor: masked in registers, no shared-memory write, so no proxy fence or barrier;
    one AND a 32-bit pair, `_and_keep`, since run 48's profile found run 47's select of each element, unpacked and
    packed again, to be most of a step's instructions; the centre tap unmasked), and runs four wgmmas m64n16k16
    against the slices' block-diagonal [16, 16] weights at the tap.
    LAG: the next step's loads and wgmmas are issued before the previous step's wgmmas are waited for (one step in
    flight); else each step is waited for. kx: the steps taken so far (the ring's position); returned advanced.
    ABL (ablations, wrong outputs): 1, no wgmmas (the slices are loaded, masked and summed on the CUDA cores
    instead, so that the loads stay); 2, no loads from the slot (the wgmmas take a made-up operand, still masked);
    the barriers, waits and TMA traffic as ever."""
    NBX: gl.constexpr = x_s.shape[0] // 2
    BLOCK_P: gl.constexpr = x_s.shape[1]
    NS: gl.constexpr = wb_s.shape[0] // 9
    a_l: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=cv_l, k_width=2)
    r = row0 + gl.arange(0, BLOCK_P, layout=gl.SliceLayout(1, a_l))
    h = (r % (H * W)) // W
    w = r % W
    pm = r < NPIX
    bc = gl.arange(0, 16, layout=gl.SliceLayout(0, cv_l))
    z16 = gl.zeros([BLOCK_P, 16], gl.float32, cv_l)
    zero = gl.zeros([BLOCK_P, 16], gl.bfloat16, a_l)
    for chunk in range(NS // 4):
        y0 = z16
        y1 = z16
        y2 = z16
        y3 = z16
        for tap in gl.static_range(9):
            s = kx % NBX
            mbarrier.wait(xbar.index(s), (kx // NBX) & 1)
            box = x_s.index(2 * s + half)
            if ABL == 2:
                made_up = (gl.full([BLOCK_P, 16], 1.0, gl.bfloat16, a_l) + (kx % 7).to(gl.bfloat16))
                a0 = gl.where(_tap_ok(h, w, pm, tap, H, W), made_up, zero)
                a1 = a0
                a2 = a0
                a3 = a0
            elif tap == 4:  # the centre: every neighbour is on the image (rows past NPIX came as zeros)
                a0 = box.slice(0, 16, dim=1).load(a_l)
                a1 = box.slice(16, 16, dim=1).load(a_l)
                a2 = box.slice(32, 16, dim=1).load(a_l)
                a3 = box.slice(48, 16, dim=1).load(a_l)
            else:  # one mask a step, ANDed into each slice's 32-bit pairs
                keep = _tap_keep(h, w, pm, tap, H, W, a_l)
                a0 = _and_keep(box.slice(0, 16, dim=1).load(a_l), keep)
                a1 = _and_keep(box.slice(16, 16, dim=1).load(a_l), keep)
                a2 = _and_keep(box.slice(32, 16, dim=1).load(a_l), keep)
                a3 = _and_keep(box.slice(48, 16, dim=1).load(a_l), keep)
            q = tap * NS + chunk * 4
            if ABL == 1:
                y0 += gl.convert_layout(a0.to(gl.float32), cv_l)
                y1 += gl.convert_layout(a1.to(gl.float32), cv_l)
                y2 += gl.convert_layout(a2.to(gl.float32), cv_l)
                y3 += gl.convert_layout(a3.to(gl.float32), cv_l)
            else:
                y0 = warpgroup_mma(a0, wb_s.index(q), y0, is_async=True)
                y1 = warpgroup_mma(a1, wb_s.index(q + 1), y1, is_async=True)
                y2 = warpgroup_mma(a2, wb_s.index(q + 2), y2, is_async=True)
                y3 = warpgroup_mma(a3, wb_s.index(q + 3), y3, is_async=True)
            # a slot is freed once a wait shows its step's wgmmas done: they took every warp's registers, so all four
            # warps' loads from the slot are over (one thread arrives; an arrive straight after its own loads would
            # not cover the other warps')
            if LAG:
                if tap > 0:  # the previous step's wgmmas done: their operands' registers and slot may be reused
                    y0, y1, y2, y3, p0, p1, p2, p3 = warpgroup_mma_wait(4, deps=[y0, y1, y2, y3, p0, p1, p2, p3])
                    mbarrier.arrive(xbar.index(NBX + (kx - 1) % NBX))
                p0, p1, p2, p3 = a0, a1, a2, a3
            elif ABL == 1:
                _barrier()  # no wgmma to wait for: every warp's loads done
                mbarrier.arrive(xbar.index(NBX + s))
            else:
                y0, y1, y2, y3, a0, a1, a2, a3 = warpgroup_mma_wait(0, deps=[y0, y1, y2, y3, a0, a1, a2, a3])
                mbarrier.arrive(xbar.index(NBX + s))
            kx += 1
        if LAG:
            y0, y1, y2, y3, p0, p1, p2, p3 = warpgroup_mma_wait(0, deps=[y0, y1, y2, y3, p0, p1, p2, p3])
            mbarrier.arrive(xbar.index(NBX + (kx - 1) % NBX))
        j = chunk * 4
        _y1_store(y_s, ybase + j, y0, b1_ptr, 16 * j, bc)
        _y1_store(y_s, ybase + j + 1, y1, b1_ptr, 16 * j + 16, bc)
        _y1_store(y_s, ybase + j + 2, y2, b1_ptr, 16 * j + 32, bc)
        _y1_store(y_s, ybase + j + 3, y3, b1_ptr, 16 * j + 48, bc)
    return kx


@gluon.jit
def _loader_tc(w2_s, w3_s, ready, empty, wb_s, wb_bar, w2_desc, w3_desc, wb_desc, HID, first, ntiles, step):
    """The loader warp of the tensor-core conv: the block-diagonal conv weights once (9·CP/16 [16, 16] tiles by TMA,
    one barrier), then gluon_ws_chain's ring of weight chunks."""
    NT: gl.constexpr = wb_s.shape[0]
    mbarrier.expect(wb_bar, NT * 16 * 16 * 2)
    for q in range(NT):
        _tma_load(wb_desc, [q * 16, 0], wb_bar, wb_s.index(q))
    _loader_persist(w2_s, w3_s, ready, empty, w2_desc, w3_desc, HID, first, ntiles, step)


@gluon.jit
def _conv_gathered(y_s, ybase, wb_s, x_ptr, b1_ptr, row0, NPIX, H, W, C, cv_l: gl.constexpr, NOLOAD: gl.constexpr):
    """Run 43's tensor-core conv of a consumer's 64 pixels from row0: per 16-channel slice, nine wgmmas m64n16k16 with
    A the tap's input slice loaded from global memory straight into the wgmma operand's registers (`_slice_taps`; the
    next slice's nine in flight meanwhile), B the slice's block-diagonal [16, 16] weight; y1 + b1 to y_s[ybase + j].
    NOLOAD (an ablation, wrong outputs): no A loads, a made-up operand; the wgmmas, weights and stores as ever."""
    BLOCK_P: gl.constexpr = y_s.shape[1]
    NS: gl.constexpr = wb_s.shape[0] // 9
    a_l: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=cv_l, k_width=2)
    z16 = gl.zeros([BLOCK_P, 16], gl.float32, cv_l)
    kk = gl.arange(0, 16, layout=gl.SliceLayout(0, a_l))
    bc = gl.arange(0, 16, layout=gl.SliceLayout(0, cv_l))
    hw = H * W
    r = row0 + gl.arange(0, BLOCK_P, layout=gl.SliceLayout(1, a_l))
    n = r // hw
    h = (r % hw) // W
    w = r % W
    pm = r < NPIX
    if NOLOAD:
        a0 = gl.full([BLOCK_P, 16], 1.0, gl.bfloat16, a_l) + kk[None, :].to(gl.bfloat16)
    else:
        a0, a1, a2, a3, a4, a5, a6, a7, a8 = _slice_taps(x_ptr, 0, n, h, w, pm, kk, H, W, C)
    for j in range(NS):
        if NOLOAD:
            v0, v1, v2, v3, v4, v5, v6, v7, v8 = a0, a0, a0, a0, a0, a0, a0, a0, a0
        else:
            v0, v1, v2, v3, v4, v5, v6, v7, v8 = a0, a1, a2, a3, a4, a5, a6, a7, a8
            a0, a1, a2, a3, a4, a5, a6, a7, a8 = _slice_taps(x_ptr, (j + 1) % NS, n, h, w, pm, kk, H, W, C)  # the next slice's
        yc = warpgroup_mma(v0, wb_s.index(j), z16, use_acc=False, is_async=True)
        yc = warpgroup_mma(v1, wb_s.index(NS + j), yc, is_async=True)
        yc = warpgroup_mma(v2, wb_s.index(2 * NS + j), yc, is_async=True)
        yc = warpgroup_mma(v3, wb_s.index(3 * NS + j), yc, is_async=True)
        yc = warpgroup_mma(v4, wb_s.index(4 * NS + j), yc, is_async=True)
        yc = warpgroup_mma(v5, wb_s.index(5 * NS + j), yc, is_async=True)
        yc = warpgroup_mma(v6, wb_s.index(6 * NS + j), yc, is_async=True)
        yc = warpgroup_mma(v7, wb_s.index(7 * NS + j), yc, is_async=True)
        yc = warpgroup_mma(v8, wb_s.index(8 * NS + j), yc, is_async=True)
        yc, v0, v1, v2, v3, v4, v5, v6, v7, v8 = warpgroup_mma_wait(0, deps=[yc, v0, v1, v2, v3, v4, v5, v6, v7, v8])
        _y1_store(y_s, ybase + j, yc, b1_ptr, 16 * j, bc)


@gluon.jit
def _block_body_tc(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H: gl.constexpr,
                   W: gl.constexpr, C, HID, first, ntiles, step, tile_rows, row_off, slot, ybase, tbase, STAMP: gl.constexpr,
                   NOLOAD: gl.constexpr = False, STAGED: gl.constexpr = 0, CA: gl.constexpr = False):
    """One consumer warpgroup with the grouped conv on the tensor cores: the channels in slices of 16 (two groups of
    8), each slice's y1 [64, 16] = Σ over the 9 taps of the tap's input slice (A) · the slice's block-diagonal
    [16, 16] weight (B, in shared memory: half its entries zero, so twice the grouped conv's MACs, 144·C a pixel
    against the chain's 8·C²). The conv is `_conv_gathered` (A gathered from global memory into registers), or with
    STAGED 1 `_conv_staged` (A from whole pixel rows brought by cp.async into the ring tap_s[tbase:]; with NOLOAD, the
    ablation of `_stage`'s NOMEM), or with STAGED 2 (3: LAG; 4, 5: its ablations ABL 1, 2) `_conv_tma` (A from the
    TMA boxes in tap_s, barriers xbar; row_off // 64 the consumer's half). y1 + b1 goes to the consumer's CP/16
    [64, 16] tiles (y_s from ybase), and the expansion is CP/16 wgmmas of K = 16 against row slices of the W2ᵀ chunk. The rest as `_block_body` (chain,
    epilogue at width C, residual from global memory, stamps)."""
    BLOCK_P: gl.constexpr = y_s.shape[1]
    CP: gl.constexpr = w2_s.shape[1]
    BLOCK_H: gl.constexpr = w2_s.shape[2]
    NS: gl.constexpr = CP // 16
    acc_l: gl.constexpr = _wgmma_l(CP)
    e_l: gl.constexpr = _wgmma_l(BLOCK_H)
    cv_l: gl.constexpr = _wgmma_l(16)
    st_l: gl.constexpr = _rows_l(CP)
    conv_cyc = 0  # the clock totals (int64 where STAMP)
    loop_cyc = 0
    epi_cyc = 0
    if STAMP:
        st, c_start, conv_cyc, loop_cyc, epi_cyc = _stamps_open(out_ptr, NPIX, C, slot, first)
    if STAGED == 1:  # the first tile's first steps into the ring before anything waits
        NB: gl.constexpr = tap_s.shape[0] // 2
        for u in gl.static_range(NB - 1):
            _stage(tap_s.index(tbase + u), x_ptr, first * tile_rows + row_off, u, first < ntiles, NPIX, H, W, C, CA, NOLOAD)
        s0 = 0
    kx = 0  # STAGED 2, 3: the TMA ring's steps taken
    mbarrier.wait(wb_bar, 0)
    t = first
    k = 0
    while t < ntiles:
        row0 = t * tile_rows + row_off
        c0 = 0  # the conv's start (STAMP)
        if STAMP:
            c0 = _clock(t)
        if STAGED == 1:
            s0 = _conv_staged(tap_s, tbase, wb_s, y_s, ybase, x_ptr, b1_ptr, row0, row0 + step * tile_rows, t + step < ntiles, s0, NPIX, H, W,
                              C, cv_l, CA, NOLOAD)
        elif STAGED >= 2:
            kx = _conv_tma(tap_s, xbar, kx, row_off // BLOCK_P, wb_s, y_s, ybase, b1_ptr, row0, NPIX, H, W, cv_l, STAGED == 3,
                           STAGED - 3 if STAGED > 3 else 0)
        else:
            _conv_gathered(y_s, ybase, wb_s, x_ptr, b1_ptr, row0, NPIX, H, W, C, cv_l, NOLOAD)
        k, conv_cyc, loop_cyc, epi_cyc = _tile_rest(y_s, ybase, NS, w2_s, w3_s, ready, empty, b2_ptr, b3_ptr, x_ptr, out_ptr, row0, NPIX,
                                                    C, HID, k, t, c0, conv_cyc, loop_cyc, epi_cyc, acc_l, e_l, st_l, STAMP)
        t += step
    if STAMP:
        _stamps_end(st, c_start, conv_cyc, loop_cyc, epi_cyc, first)


@gluon.jit
def _conv_step(x_s, xbar, kx, half, wb_s, y_s, ynext, b1_ptr, u, h, w, pm, y0, y1, y2, y3, H: gl.constexpr, W: gl.constexpr,
               cv_l: gl.constexpr):
    """One step of `_conv_tma` with the step u a runtime value (u // 9 the 64-channel chunk, u % 9 the tap), for the
    tci consumer, which spreads the next tile's conv steps over the current tile's chain chunks: wait for the box,
    load its four slices, mask them (every tap, the centre too: the tap is not known at compile time), four wgmmas
    into y0..y3, wait for them (and for whatever the chain left in flight before them), free the slot; after the
    ninth tap, y0..y3 + b1 go to the next tile's y1 tiles y_s[ynext + 4·chunk:] and start again from zero. Returns
    kx + 1 and y0..y3."""
    NBX: gl.constexpr = x_s.shape[0] // 2
    BLOCK_P: gl.constexpr = x_s.shape[1]
    NS: gl.constexpr = wb_s.shape[0] // 9
    a_l: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=cv_l, k_width=2)
    chunk = u // 9
    tap = u % 9
    dy = tap // 3 - 1
    dx = tap % 3 - 1
    s = kx % NBX
    ones = gl.full([BLOCK_P, 16], -1, gl.int16, a_l)
    ok = (pm & (h + dy >= 0) & (h + dy < H) & (w + dx >= 0) & (w + dx < W))[:, None]
    keep = gl.where(ok, ones, gl.zeros_like(ones)).to(gl.bfloat16, bitcast=True)
    mbarrier.wait(xbar.index(s), (kx // NBX) & 1)
    box = x_s.index(2 * s + half)
    a0 = _and_keep(box.slice(0, 16, dim=1).load(a_l), keep)
    a1 = _and_keep(box.slice(16, 16, dim=1).load(a_l), keep)
    a2 = _and_keep(box.slice(32, 16, dim=1).load(a_l), keep)
    a3 = _and_keep(box.slice(48, 16, dim=1).load(a_l), keep)
    q = tap * NS + chunk * 4
    y0 = warpgroup_mma(a0, wb_s.index(q), y0, is_async=True)
    y1 = warpgroup_mma(a1, wb_s.index(q + 1), y1, is_async=True)
    y2 = warpgroup_mma(a2, wb_s.index(q + 2), y2, is_async=True)
    y3 = warpgroup_mma(a3, wb_s.index(q + 3), y3, is_async=True)
    y0, y1, y2, y3, a0, a1, a2, a3 = warpgroup_mma_wait(0, deps=[y0, y1, y2, y3, a0, a1, a2, a3])
    mbarrier.arrive(xbar.index(NBX + s))  # as `_conv_tma`: the wait shows every warp's loads from the slot over
    if tap == 8:
        bc = gl.arange(0, 16, layout=gl.SliceLayout(0, cv_l))
        j = chunk * 4
        _y1_store(y_s, ynext + j, y0, b1_ptr, 16 * j, bc)
        _y1_store(y_s, ynext + j + 1, y1, b1_ptr, 16 * j + 16, bc)
        _y1_store(y_s, ynext + j + 2, y2, b1_ptr, 16 * j + 32, bc)
        _y1_store(y_s, ynext + j + 3, y3, b1_ptr, 16 * j + 48, bc)
        y0 = gl.zeros_like(y0)
        y1 = gl.zeros_like(y1)
        y2 = gl.zeros_like(y2)
        y3 = gl.zeros_like(y3)
    return kx + 1, y0, y1, y2, y3


@gluon.jit
def _chunks_tci(y_s, ycur, ynext, w2_s, w3_s, ready, empty, b2_ptr, HID, k, x_s, xbar, kx, half, wb_s, b1_ptr, row_n, nsteps, NPIX,
                H: gl.constexpr, W: gl.constexpr, acc_l: gl.constexpr, e_l: gl.constexpr, cv_l: gl.constexpr):
    """`_chunks` over the current tile's y1 (y_s[ycur:], NS [64, 16] tiles) with the next tile's conv (`_conv_step`,
    `nsteps` steps: 0 for none, else 9·CP/64 from row_n) spread over its chunks: in chunk i, steps from
    i·nsteps/NC to (i + 1)·nsteps/NC, half of them issued after the expansion's wgmmas (E = y1·W2ᵀ[chunk]) and
    before E is waited for, half after the projection's (acc += P·W3ᵀ[chunk]) and before it is: the conv's loads,
    masks and address arithmetic run while the chain's wgmmas do (run 48: the chain's time goes mostly to waiting
    for its wgmmas, the conv's to issuing its own instructions). Returns acc, k, kx."""
    STAGES: gl.constexpr = w2_s.shape[0]
    CP: gl.constexpr = w2_s.shape[1]
    BLOCK_H: gl.constexpr = w2_s.shape[2]
    BLOCK_P: gl.constexpr = y_s.shape[1]
    NA: gl.constexpr = CP // 16
    p_l: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=acc_l, k_width=2)
    a_l: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=cv_l, k_width=2)
    r = row_n + gl.arange(0, BLOCK_P, layout=gl.SliceLayout(1, a_l))
    h = (r % (H * W)) // W
    w = r % W
    pm = r < NPIX
    z16 = gl.zeros([BLOCK_P, 16], gl.float32, cv_l)
    y0 = z16
    y1 = z16
    y2 = z16
    y3 = z16
    hb = gl.arange(0, BLOCK_H, layout=gl.SliceLayout(0, e_l))
    e0 = gl.zeros([BLOCK_P, BLOCK_H], gl.float32, e_l)
    acc = gl.zeros([BLOCK_P, CP], gl.float32, acc_l)
    NC = HID // BLOCK_H  # a runtime value in Triton 3.6, whose warp_specialize does not carry HID as a constexpr
    for i in range(NC):
        u0 = i * nsteps // NC
        um = (i * 2 + 1) * nsteps // (NC * 2)
        u1 = (i + 1) * nsteps // NC
        s = k % STAGES
        b2 = gl.load(b2_ptr + i * BLOCK_H + hb).to(gl.float32)
        mbarrier.wait(ready.index(s), (k // STAGES) & 1)
        w2c = w2_s.index(s)
        e = warpgroup_mma(y_s.index(ycur), w2c.slice(0, 16, dim=0), e0, use_acc=False, is_async=True)
        for jj in gl.static_range(1, NA):
            e = warpgroup_mma(y_s.index(ycur + jj), w2c.slice(16 * jj, 16, dim=0), e, is_async=True)
        for u in range(u0, um):
            kx, y0, y1, y2, y3 = _conv_step(x_s, xbar, kx, half, wb_s, y_s, ynext, b1_ptr, u, h, w, pm, y0, y1, y2, y3, H, W, cv_l)
        e = warpgroup_mma_wait(0, deps=[e])
        p = gl.convert_layout(_silu(e + b2[None, :]).to(gl.bfloat16), p_l)
        acc = warpgroup_mma(p, w3_s.index(s), acc, is_async=True)
        for u in range(um, u1):
            kx, y0, y1, y2, y3 = _conv_step(x_s, xbar, kx, half, wb_s, y_s, ynext, b1_ptr, u, h, w, pm, y0, y1, y2, y3, H, W, cv_l)
        acc, p = warpgroup_mma_wait(0, deps=[acc, p])
        mbarrier.arrive(empty.index(s))
        k += 1
    return acc, k, kx


@gluon.jit
def _block_body_tci(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H: gl.constexpr,
                    W: gl.constexpr, C, HID, first, ntiles, step, tile_rows, row_off, slot, ybase, STAMP: gl.constexpr):
    """The tci consumer: `_block_body_tc`'s TMA-fed tensor-core conv (STAGED 2) moved off the critical path. The
    first tile's conv runs alone (`_conv_tma`); after that, each tile's chain runs with the next tile's conv spread
    over its chunks (`_chunks_tci`), y1 double-buffered (the consumer's 2·NS [64, 16] tiles from ybase: the tile's
    and the next one's), then the epilogue. The loader warps are tct's: the conv steps are taken in the same order,
    only earlier. STAMP: conv = the first tile's conv, loops = the chains with the convs inside them, epilogues."""
    BLOCK_P: gl.constexpr = y_s.shape[1]
    CP: gl.constexpr = w2_s.shape[1]
    BLOCK_H: gl.constexpr = w2_s.shape[2]
    NS: gl.constexpr = CP // 16
    NSTEP: gl.constexpr = 9 * (CP // 64)
    acc_l: gl.constexpr = _wgmma_l(CP)
    e_l: gl.constexpr = _wgmma_l(BLOCK_H)
    cv_l: gl.constexpr = _wgmma_l(16)
    st_l: gl.constexpr = _rows_l(CP)
    half = row_off // BLOCK_P
    conv_cyc = 0
    loop_cyc = 0
    epi_cyc = 0
    if STAMP:
        st, c_start, conv_cyc, loop_cyc, epi_cyc = _stamps_open(out_ptr, NPIX, C, slot, first)
    mbarrier.wait(wb_bar, 0)
    kx = 0
    k = 0
    cur = 0  # which of the two y1 buffers holds the tile's y1
    t = first
    if t < ntiles:
        c0 = 0
        if STAMP:
            c0 = _clock(t)
        kx = _conv_tma(tap_s, xbar, kx, half, wb_s, y_s, ybase, b1_ptr, t * tile_rows + row_off, NPIX, H, W, cv_l, False, 0)
        fence_async_shared()
        _barrier()
        if STAMP:
            conv_cyc += _clock(t) - c0
    while t < ntiles:
        row0 = t * tile_rows + row_off
        tn = t + step
        c1 = 0
        if STAMP:
            c1 = _clock(t)
        acc, k, kx = _chunks_tci(y_s, ybase + cur * NS, ybase + (1 - cur) * NS, w2_s, w3_s, ready, empty, b2_ptr, HID, k, tap_s, xbar, kx,
                                 half, wb_s, b1_ptr, tn * tile_rows + row_off, (tn < ntiles).to(gl.int32) * NSTEP, NPIX, H, W, acc_l, e_l, cv_l)
        fence_async_shared()  # the next tile's y1, written by this one's chunks, before the next chain's wgmmas read it
        _barrier()
        if STAMP:
            c2 = _clock(t)
            loop_cyc += c2 - c1
        _epilogue(acc, b3_ptr, x_ptr, out_ptr, row0, NPIX, C, acc_l, st_l)
        if STAMP:
            epi_cyc += _clock(t) - c2
        cur = 1 - cur
        t = tn
    if STAMP:
        _stamps_end(st, c_start, conv_cyc, loop_cyc, epi_cyc, first)


@gluon.jit
def _consume_tci(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H: gl.constexpr,
                 W: gl.constexpr, C: gl.constexpr, HID, first, ntiles, step, tile_rows, row_off, slot, ybase, tbase):
    _block_body_tci(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID,
                    first, ntiles, step, tile_rows, row_off, slot, ybase, False)


@gluon.jit
def _consume_tci_stamped(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX,
                         H: gl.constexpr, W: gl.constexpr, C: gl.constexpr, HID, first, ntiles, step, tile_rows, row_off, slot, ybase, tbase):
    _block_body_tci(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID,
                    first, ntiles, step, tile_rows, row_off, slot, ybase, True)


# the consumers of each tc mode: warp_specialize's argument tuples do not carry constexprs, so the flags are spelt out.
# (Tried again 2026-12-05 with one int constexpr for all the flags, as a kernel parameter too: it arrives as a runtime
# value, so `if STAMP:` became a runtime branch and failed to compile. H, W and C arrive the same way; the PTX has no
# integer division all the same, since LLVM folds the constants once the partitions are inlined into the kernel.)
@gluon.jit
def _consume_tc(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H: gl.constexpr, W: gl.constexpr,
                C: gl.constexpr, HID, first, ntiles, step, tile_rows, row_off, slot, ybase, tbase):
    _block_body_tc(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first,
                   ntiles, step, tile_rows, row_off, slot, ybase, tbase, False)


@gluon.jit
def _consume_tc_stamped(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H: gl.constexpr, W: gl.constexpr,
                        C: gl.constexpr, HID, first, ntiles, step, tile_rows, row_off, slot, ybase, tbase):
    _block_body_tc(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first,
                   ntiles, step, tile_rows, row_off, slot, ybase, tbase, True)


@gluon.jit
def _consume_tc_noload_stamped(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H: gl.constexpr, W: gl.constexpr,
                               C: gl.constexpr, HID, first, ntiles, step, tile_rows, row_off, slot, ybase, tbase):
    _block_body_tc(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first,
                   ntiles, step, tile_rows, row_off, slot, ybase, tbase, True, True)


@gluon.jit
def _consume_tcs(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H: gl.constexpr, W: gl.constexpr,
                 C: gl.constexpr, HID, first, ntiles, step, tile_rows, row_off, slot, ybase, tbase):
    _block_body_tc(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first,
                   ntiles, step, tile_rows, row_off, slot, ybase, tbase, False, False, 1)


@gluon.jit
def _consume_tcs_stamped(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H: gl.constexpr, W: gl.constexpr,
                         C: gl.constexpr, HID, first, ntiles, step, tile_rows, row_off, slot, ybase, tbase):
    _block_body_tc(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first,
                   ntiles, step, tile_rows, row_off, slot, ybase, tbase, True, False, 1)


@gluon.jit
def _consume_tcs_noload_stamped(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H: gl.constexpr,
                                W: gl.constexpr, C: gl.constexpr, HID, first, ntiles, step, tile_rows, row_off, slot, ybase, tbase):
    _block_body_tc(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first,
                   ntiles, step, tile_rows, row_off, slot, ybase, tbase, True, True, 1)


@gluon.jit
def _consume_tcs_ca(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H: gl.constexpr, W: gl.constexpr,
                    C: gl.constexpr, HID, first, ntiles, step, tile_rows, row_off, slot, ybase, tbase):
    _block_body_tc(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first,
                   ntiles, step, tile_rows, row_off, slot, ybase, tbase, False, False, 1, True)


@gluon.jit
def _consume_tcs_ca_stamped(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H: gl.constexpr, W: gl.constexpr,
                            C: gl.constexpr, HID, first, ntiles, step, tile_rows, row_off, slot, ybase, tbase):
    _block_body_tc(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first,
                   ntiles, step, tile_rows, row_off, slot, ybase, tbase, True, False, 1, True)


@gluon.jit
def _consume_tct(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H: gl.constexpr,
                W: gl.constexpr, C: gl.constexpr, HID, first, ntiles, step, tile_rows, row_off, slot, ybase, tbase):
    _block_body_tc(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first,
                   ntiles, step, tile_rows, row_off, slot, ybase, tbase, False, False, 2)


@gluon.jit
def _consume_tct_stamped(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H: gl.constexpr,
                        W: gl.constexpr, C: gl.constexpr, HID, first, ntiles, step, tile_rows, row_off, slot, ybase, tbase):
    _block_body_tc(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first,
                   ntiles, step, tile_rows, row_off, slot, ybase, tbase, True, False, 2)


@gluon.jit
def _consume_tctl(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H: gl.constexpr,
                 W: gl.constexpr, C: gl.constexpr, HID, first, ntiles, step, tile_rows, row_off, slot, ybase, tbase):
    _block_body_tc(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first,
                   ntiles, step, tile_rows, row_off, slot, ybase, tbase, False, False, 3)


@gluon.jit
def _consume_tctl_stamped(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H: gl.constexpr,
                         W: gl.constexpr, C: gl.constexpr, HID, first, ntiles, step, tile_rows, row_off, slot, ybase, tbase):
    _block_body_tc(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first,
                   ntiles, step, tile_rows, row_off, slot, ybase, tbase, True, False, 3)


@gluon.jit
def _consume_tct_nomma_stamped(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX,
                              H: gl.constexpr, W: gl.constexpr, C: gl.constexpr, HID, first, ntiles, step, tile_rows, row_off, slot, ybase, tbase):
    _block_body_tc(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first,
                   ntiles, step, tile_rows, row_off, slot, ybase, tbase, True, False, 4)


@gluon.jit
def _consume_tct_noldm_stamped(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX,
                              H: gl.constexpr, W: gl.constexpr, C: gl.constexpr, HID, first, ntiles, step, tile_rows, row_off, slot, ybase, tbase):
    _block_body_tc(y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, first,
                   ntiles, step, tile_rows, row_off, slot, ybase, tbase, True, False, 5)


@gluon.jit
def _block_tc_kernel(w2_desc, w3_desc, wb_desc, x_desc, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H: gl.constexpr, W: gl.constexpr,
                     C: gl.constexpr, CP: gl.constexpr, HID: gl.constexpr, BLOCK_P: gl.constexpr, BLOCK_H: gl.constexpr, STAGES: gl.constexpr,
                     REGS: gl.constexpr, STAMP: gl.constexpr = False, NOLOAD: gl.constexpr = False, NB: gl.constexpr = 0, CA: gl.constexpr = False,
                     SCH: gl.constexpr = 64, NBX: gl.constexpr = 0, LAG: gl.constexpr = False, ABL: gl.constexpr = 0,
                     ILV: gl.constexpr = False):
    """The ConvFirst block with its grouped conv on the tensor cores (`_block_body_tc`), persistent, the shared ring
    of `_block_kernel`: two consumers taking the halves of 128-pixel tiles, one loader warp (`_loader_tc`), which
    first brings the 9·CP/16 block-diagonal [16, 16] conv weights (wb_desc over [9·CP, 16]: tap-major, then slice)
    into shared memory once for both consumers. NB > 0: the conv's input staged (`_conv_staged`) through a ring of NB
    [64, SCH] slots a consumer. NBX > 0: the conv's input by TMA (x_desc, [64, 64] boxes of x [NPIX, C]) through a
    ring of NBX slot pairs that a second loader warp (`_loader_x`) fills (`_conv_tma`; LAG: one step in flight; ABL:
    its ablations; ILV: the tci consumers, `_block_body_tci`, the next tile's conv inside this tile's chain, y1
    double-buffered). H, W and C are constexprs (one compile a block shape: divisions by constants, and cp.async's
    16-byte pieces need C's divisibility known)."""
    NS: gl.constexpr = CP // 16
    sl16: gl.constexpr = gl.NVMMASharedLayout(swizzle_byte_width=32, element_bitwidth=16, rank=2)
    NY: gl.constexpr = 2 * NS if ILV else NS  # y1 tiles a consumer
    y_s = gl.allocate_shared_memory(gl.bfloat16, [2 * NY, BLOCK_P, 16], sl16)
    wb_s = gl.allocate_shared_memory(gl.bfloat16, [9 * NS, 16, 16], wb_desc.layout)
    wb_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    mbarrier.init(wb_bar, count=1)
    xbar = wb_bar  # unused unless NBX
    if NB > 0:
        tap_s = gl.allocate_shared_memory(gl.bfloat16, [2 * NB, BLOCK_P, SCH],
                                          gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=16, rank=2))
    elif NBX > 0:
        tap_s = gl.allocate_shared_memory(gl.bfloat16, [2 * NBX, BLOCK_P, 64], x_desc.layout)
        xbar = gl.allocate_shared_memory(gl.int64, [2 * NBX, 1], mbarrier.MBarrierLayout())
        for i in gl.static_range(NBX):
            mbarrier.init(xbar.index(i), count=1)
            mbarrier.init(xbar.index(NBX + i), count=2)
    else:
        tap_s = y_s  # unused
    w2_s, w3_s, ready, empty = _ring(w2_desc, w3_desc, CP, BLOCK_H, STAGES)  # its fence covers wb_bar's and xbar's inits too
    pid = gl.program_id(0)
    nprog = gl.num_programs(0)
    nt = gl.cdiv(NPIX, 2 * BLOCK_P)
    c0 = (y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, pid, nt,
          nprog, 2 * BLOCK_P, 0, 2 * pid, 0, 0)
    c1 = (y_s, w2_s, w3_s, ready, empty, wb_s, wb_bar, tap_s, xbar, x_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID, pid, nt,
          nprog, 2 * BLOCK_P, BLOCK_P, 2 * pid + 1, NY, NB)
    ld = (w2_s, w3_s, ready, empty, wb_s, wb_bar, w2_desc, w3_desc, wb_desc, HID, pid, nt, nprog)
    if NBX > 0:
        lx = (tap_s, xbar, x_desc, pid, nt, nprog, 2 * BLOCK_P, W, 9 * (CP // 64))
        if ILV:
            gl.static_assert(not LAG and ABL == 0, "tci: no LAG, no ablations")
            if STAMP:
                gl.warp_specialize([(_consume_tci_stamped, c0), (_consume_tci_stamped, c1), (_loader_tc, ld), (_loader_x, lx)], [4, 1, 1],
                                   [REGS, 24, 24])
            else:
                gl.warp_specialize([(_consume_tci, c0), (_consume_tci, c1), (_loader_tc, ld), (_loader_x, lx)], [4, 1, 1], [REGS, 24, 24])
        elif ABL > 0:  # the ablations (`_conv_tma`'s ABL): 1 without wgmmas, 2 without loads from the slot
            gl.static_assert(STAMP and not LAG, "the tct ablations are stamped")
            if ABL == 1:
                gl.warp_specialize([(_consume_tct_nomma_stamped, c0), (_consume_tct_nomma_stamped, c1), (_loader_tc, ld), (_loader_x, lx)],
                                   [4, 1, 1], [REGS, 24, 24])
            else:
                gl.warp_specialize([(_consume_tct_noldm_stamped, c0), (_consume_tct_noldm_stamped, c1), (_loader_tc, ld), (_loader_x, lx)],
                                   [4, 1, 1], [REGS, 24, 24])
        elif LAG and STAMP:
            gl.warp_specialize([(_consume_tctl_stamped, c0), (_consume_tctl_stamped, c1), (_loader_tc, ld), (_loader_x, lx)], [4, 1, 1],
                               [REGS, 24, 24])
        elif LAG:
            gl.warp_specialize([(_consume_tctl, c0), (_consume_tctl, c1), (_loader_tc, ld), (_loader_x, lx)], [4, 1, 1], [REGS, 24, 24])
        elif STAMP:
            gl.warp_specialize([(_consume_tct_stamped, c0), (_consume_tct_stamped, c1), (_loader_tc, ld), (_loader_x, lx)], [4, 1, 1],
                               [REGS, 24, 24])
        else:
            gl.warp_specialize([(_consume_tct, c0), (_consume_tct, c1), (_loader_tc, ld), (_loader_x, lx)], [4, 1, 1], [REGS, 24, 24])
    elif NB > 0:
        if NOLOAD:
            gl.static_assert(STAMP and not CA, "the staged noload ablation is stamped, 16-byte")
            gl.warp_specialize([(_consume_tcs_noload_stamped, c0), (_consume_tcs_noload_stamped, c1), (_loader_tc, ld)], [4, 1], [REGS, 24])
        elif CA and STAMP:
            gl.warp_specialize([(_consume_tcs_ca_stamped, c0), (_consume_tcs_ca_stamped, c1), (_loader_tc, ld)], [4, 1], [REGS, 24])
        elif CA:
            gl.warp_specialize([(_consume_tcs_ca, c0), (_consume_tcs_ca, c1), (_loader_tc, ld)], [4, 1], [REGS, 24])
        elif STAMP:
            gl.warp_specialize([(_consume_tcs_stamped, c0), (_consume_tcs_stamped, c1), (_loader_tc, ld)], [4, 1], [REGS, 24])
        else:
            gl.warp_specialize([(_consume_tcs, c0), (_consume_tcs, c1), (_loader_tc, ld)], [4, 1], [REGS, 24])
    elif NOLOAD:
        gl.static_assert(STAMP, "the tc noload ablation is stamped")
        gl.warp_specialize([(_consume_tc_noload_stamped, c0), (_consume_tc_noload_stamped, c1), (_loader_tc, ld)], [4, 1], [REGS, 24])
    elif STAMP:
        gl.warp_specialize([(_consume_tc_stamped, c0), (_consume_tc_stamped, c1), (_loader_tc, ld)], [4, 1], [REGS, 24])
    else:
        gl.warp_specialize([(_consume_tc, c0), (_consume_tc, c1), (_loader_tc, ld)], [4, 1], [REGS, 24])


@gluon.jit
def _gconv_sub_u(x_ptr, wf_s, wf8_s, b1_ptr, row0, NPIX, H: gl.constexpr, W: gl.constexpr, C: gl.constexpr, CP: gl.constexpr,
                 R: gl.constexpr):
    """`_gconv_sub` with its weights in shared memory (WS) and the nine taps unrolled (the cw conv partition's mode
    cwu): each pixel's word address and its four edge tests are computed once a sub-tile, so a tap's loads cost an
    add and a mask AND a word where the taps' loop recomputed the neighbour's row, column, bounds and address (run 53's
    SASS of the loop: 256 FFMAs in 455 instructions). The next tap's words load while this tap's FMAs run."""
    G: gl.constexpr = CP // 8
    TR: gl.constexpr = 32 // G
    SUB: gl.constexpr = 4 * TR * R
    L3: gl.constexpr = gl.BlockedLayout([R, 1, 8], [TR, G, 1], [4, 1, 1], [2, 1, 0])
    XL: gl.constexpr = gl.SliceLayout(2, L3)
    WL: gl.constexpr = gl.SliceLayout(0, L3)
    r = row0 + gl.arange(0, SUB, layout=gl.SliceLayout(1, XL))
    g = gl.arange(0, G, layout=gl.SliceLayout(0, XL))
    h = (r % (H * W)) // W
    w = r % W
    pm = (r < NPIX)[:, None] & (g * 8 < C)[None, :]
    up = pm & (h > 0)[:, None]  # the row above is on the image
    dn = pm & (h < H - 1)[:, None]
    lf = (w > 0)[:, None]
    rt = (w < W - 1)[:, None]
    p = x_ptr.to(gl.pointer_type(gl.int32), bitcast=True) + r[:, None] * (C // 2) + g[None, :] * 4
    acc = gl.zeros([SUB, G, 8], gl.float32, L3)
    nx = _tap_words_u(p, up, dn, pm, lf, rt, 0, W, C)
    for tap in gl.static_range(9):
        v0, v1, v2, v3 = nx
        if tap < 8:
            nx = _tap_words_u(p, up, dn, pm, lf, rt, tap + 1, W, C)
        if tap < 8:
            w0, w1, w2, w3, w4, w5, w6, w7 = _tap_weights_s(wf_s, tap * 8, WL)
        else:
            w0, w1, w2, w3, w4, w5, w6, w7 = _tap_weights_s(wf8_s, 0, WL)
        acc = _pair_fma(acc, v0, w0, w1)
        acc = _pair_fma(acc, v1, w2, w3)
        acc = _pair_fma(acc, v2, w4, w5)
        acc = _pair_fma(acc, v3, w6, w7)
    gco = gl.arange(0, G, layout=gl.SliceLayout(1, WL))[:, None] * 8 + gl.arange(0, 8, layout=gl.SliceLayout(0, WL))[None, :]
    b1 = gl.load(b1_ptr + gco).to(gl.float32)
    return gl.reshape((acc + gl.expand_dims(b1, 0)).to(gl.bfloat16), [SUB, CP])


@gluon.jit
def _tap_words_u(p, up, dn, pm, lf, rt, tap: gl.constexpr, W: gl.constexpr, C: gl.constexpr):
    """The four words of each pixel's neighbour at `tap` (a constant) from p (each pixel's words at the centre): the
    row's mask (up, dn or pm: the row above, below or the pixel's own is on the image, and the pixel real) ANDed with
    the column's (lf, rt) where the tap looks left or right."""
    dy: gl.constexpr = tap // 3 - 1
    dx: gl.constexpr = tap % 3 - 1
    off: gl.constexpr = (dy * W + dx) * (C // 2)
    if dy == -1:
        m = up
    elif dy == 1:
        m = dn
    else:
        m = pm
    if dx == -1:
        m = m & lf
    elif dx == 1:
        m = m & rt
    q = p + off
    return (gl.load(q, mask=m, other=0), gl.load(q + 1, mask=m, other=0), gl.load(q + 2, mask=m, other=0), gl.load(q + 3, mask=m, other=0))


@gluon.jit
def _conv_part(y_s, wf_s, wf8_s, yready, yempty, x_ptr, wf_ptr, b1_ptr, NPIX, H: gl.constexpr, W: gl.constexpr, C: gl.constexpr, first, ntiles,
               step, tile_rows, RC: gl.constexpr, U: gl.constexpr = False):
    """The cw kernel's conv partition (one warpgroup): the grouped conv on the CUDA cores (`_gconv_sub`, fp32 FMAs,
    RC pixels a thread), for every tile the program takes, in order, into a ring of NYB y1 buffers, each the tile's
    two [64, CP] halves (y_s[2b], y_s[2b + 1]): it waits until both consumers have freed the buffer (yempty[b]), writes
    y1 + b1 in bf16 a half at a time, fences each half's writes for the wgmmas and signals it (yready[2b + half]), so
    that the first consumer starts on a program's first tile after half of its conv. Its weights are staged once into shared
    memory (wf_s [64, G, 8] fp32 taps 0-7, wf8_s [8, G, 8] tap 8), where L1 is too small to hold them beside this kernel's shared memory (runs 41-42
    read them from global memory every tap). U: the taps unrolled (`_gconv_sub_u`)."""
    NYB: gl.constexpr = yempty.shape[0]
    BLOCK_P: gl.constexpr = y_s.shape[1]
    CP: gl.constexpr = y_s.shape[2]
    G: gl.constexpr = CP // 8
    SUB: gl.constexpr = 4 * (32 // G) * RC
    L3: gl.constexpr = gl.BlockedLayout([RC, 1, 8], [32 // G, G, 1], [4, 1, 1], [2, 1, 0])
    WL: gl.constexpr = gl.SliceLayout(0, L3)
    gco = gl.arange(0, G, layout=gl.SliceLayout(1, WL))[:, None] * 8 + gl.arange(0, 8, layout=gl.SliceLayout(0, WL))[None, :]
    for i in range(64):
        wf_s.index(i).store(gl.load(wf_ptr + i * CP + gco))
    for i in range(8):
        wf8_s.index(i).store(gl.load(wf_ptr + (64 + i) * CP + gco))
    _barrier()  # every warp's part of the weights in before any warp reads them
    j = 0
    t = first
    while t < ntiles:
        b = j % NYB
        mbarrier.wait(yempty.index(b), ((j // NYB) & 1) ^ 1)
        row0 = t * tile_rows
        NSUB: gl.constexpr = BLOCK_P // SUB
        for q in range(2 * NSUB):  # a loop, not unrolled: the unrolled taps' body is ~3,200 instructions
            half = q // NSUB
            sub = q % NSUB
            r0 = row0 + q * SUB
            if U:
                y1 = _gconv_sub_u(x_ptr, wf_s, wf8_s, b1_ptr, r0, NPIX, H, W, C, CP, RC)
            else:
                y1 = _gconv_sub(x_ptr, wf_s, b1_ptr, r0, NPIX, H, W, C, CP, RC, 0, True, wf8_s)
            dst = y_s.index(2 * b + half)
            for pos in gl.static_range(NSUB):  # a slice's start is a constant: one store a place, the one for `sub` taken
                if sub == pos:
                    dst.slice(pos * SUB, SUB, dim=0).store(y1)
            if sub == NSUB - 1:  # the half is done
                fence_async_shared()  # this thread's y1 writes, visible to the async proxy (the consumers' wgmmas)
                _barrier()  # every warp's writes fenced before the one arrive
                mbarrier.arrive(yready.index(2 * b + half))
        j += 1
        t += step


@gluon.jit
def _block_body_cw(y_s, w2_s, w3_s, ready, empty, yready, yempty, x_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, C, HID, first, ntiles, step,
                   tile_rows, half, slot, STAMP: gl.constexpr):
    """A cw consumer: for each tile its program takes, it waits for the conv partition's y1 half (y_s[2b + half],
    yready[2b + half]), runs the chain on it (`_chunks`), frees the buffer (yempty[b], both consumers arrive) and runs the
    epilogue. STAMP: the clock totals with slot 1 the waits for y1 (the conv partition's lateness), then loops and
    epilogues."""
    NYB: gl.constexpr = yempty.shape[0]
    BLOCK_P: gl.constexpr = y_s.shape[1]
    CP: gl.constexpr = y_s.shape[2]
    BLOCK_H: gl.constexpr = w2_s.shape[2]
    acc_l: gl.constexpr = _wgmma_l(CP)
    e_l: gl.constexpr = _wgmma_l(BLOCK_H)
    st_l: gl.constexpr = _rows_l(CP)
    wait_cyc = 0
    loop_cyc = 0
    epi_cyc = 0
    if STAMP:
        st, c_start, wait_cyc, loop_cyc, epi_cyc = _stamps_open(out_ptr, NPIX, C, slot, first)
    j = 0
    k = 0
    t = first
    while t < ntiles:
        b = j % NYB
        c0 = 0
        if STAMP:
            c0 = _clock(t)
        mbarrier.wait(yready.index(2 * b + half), (j // NYB) & 1)
        c1 = 0
        if STAMP:
            c1 = _clock(t)
            wait_cyc += c1 - c0
        acc, k = _chunks(y_s.index(2 * b + half), 0, 0, w2_s, w3_s, ready, empty, b2_ptr, HID, k, acc_l, e_l)
        mbarrier.arrive(yempty.index(b))  # every wgmma that read y1 is waited for in _chunks
        if STAMP:
            c2 = _clock(t)
            loop_cyc += c2 - c1
        _epilogue(acc, b3_ptr, x_ptr, out_ptr, t * tile_rows + half * BLOCK_P, NPIX, C, acc_l, st_l)
        if STAMP:
            epi_cyc += _clock(t) - c2
        j += 1
        t += step
    if STAMP:
        _stamps_end(st, c_start, wait_cyc, loop_cyc, epi_cyc, first)


@gluon.jit
def _consume_cw(y_s, w2_s, w3_s, ready, empty, yready, yempty, x_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, C, HID, first, ntiles, step, tile_rows,
                half, slot):
    _block_body_cw(y_s, w2_s, w3_s, ready, empty, yready, yempty, x_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, C, HID, first, ntiles, step,
                   tile_rows, half, slot, False)


@gluon.jit
def _consume_cw_stamped(y_s, w2_s, w3_s, ready, empty, yready, yempty, x_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, C, HID, first, ntiles, step,
                        tile_rows, half, slot):
    _block_body_cw(y_s, w2_s, w3_s, ready, empty, yready, yempty, x_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, C, HID, first, ntiles, step,
                   tile_rows, half, slot, True)


@gluon.jit
def _conv_part_r2(y_s, wf_s, wf8_s, yready, yempty, x_ptr, wf_ptr, b1_ptr, NPIX, H: gl.constexpr, W: gl.constexpr, C: gl.constexpr, first, ntiles,
                  step, tile_rows):
    _conv_part(y_s, wf_s, wf8_s, yready, yempty, x_ptr, wf_ptr, b1_ptr, NPIX, H, W, C, first, ntiles, step, tile_rows, 2)


@gluon.jit
def _conv_part_r4(y_s, wf_s, wf8_s, yready, yempty, x_ptr, wf_ptr, b1_ptr, NPIX, H: gl.constexpr, W: gl.constexpr, C: gl.constexpr, first, ntiles,
                  step, tile_rows):
    _conv_part(y_s, wf_s, wf8_s, yready, yempty, x_ptr, wf_ptr, b1_ptr, NPIX, H, W, C, first, ntiles, step, tile_rows, 4)


@gluon.jit
def _conv_part_u2(y_s, wf_s, wf8_s, yready, yempty, x_ptr, wf_ptr, b1_ptr, NPIX, H: gl.constexpr, W: gl.constexpr, C: gl.constexpr, first, ntiles,
                  step, tile_rows):
    _conv_part(y_s, wf_s, wf8_s, yready, yempty, x_ptr, wf_ptr, b1_ptr, NPIX, H, W, C, first, ntiles, step, tile_rows, 2, True)


@gluon.jit
def _conv_part_u4(y_s, wf_s, wf8_s, yready, yempty, x_ptr, wf_ptr, b1_ptr, NPIX, H: gl.constexpr, W: gl.constexpr, C: gl.constexpr, first, ntiles,
                  step, tile_rows):
    _conv_part(y_s, wf_s, wf8_s, yready, yempty, x_ptr, wf_ptr, b1_ptr, NPIX, H, W, C, first, ntiles, step, tile_rows, 4, True)


@gluon.jit
def _block_cw_kernel(w2_desc, w3_desc, x_ptr, wf_ptr, b1_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, H: gl.constexpr, W: gl.constexpr,
                     C: gl.constexpr, CP: gl.constexpr, HID: gl.constexpr, BLOCK_P: gl.constexpr, BLOCK_H: gl.constexpr,
                     STAGES: gl.constexpr, REGS: gl.constexpr, CREGS: gl.constexpr, NYB: gl.constexpr, SW_X: gl.constexpr,
                     RC: gl.constexpr = 4, STAMP: gl.constexpr = False, U: gl.constexpr = False):
    """The ConvFirst block with its grouped conv in a warp partition of its own (mode cw): `_block_kernel`'s two
    consumers and loader warp, which run the chain on y1 and stream the weight ring, and a conv warpgroup
    (`_conv_part`, CREGS registers a thread, RC pixels a thread) that computes each tile's y1 on the CUDA cores into a
    ring of NYB buffers ahead of them. The conv's FMAs then run beside the chain's wgmmas, on other units, instead of
    before them (run 42) or on the same tensor cores (runs 43-50: a narrow m64n16k16 wgmma costs the tensor pipe
    1.8-5.4 times a chain FLOP, run 51)."""
    y_s = gl.allocate_shared_memory(gl.bfloat16, [2 * NYB, BLOCK_P, CP], gl.NVMMASharedLayout(swizzle_byte_width=SW_X, element_bitwidth=16, rank=2))
    wf_s = gl.allocate_shared_memory(gl.float32, [64, CP // 8, 8], gl.SwizzledSharedLayout(1, 1, 1, [1, 0]))
    wf8_s = gl.allocate_shared_memory(gl.float32, [8, CP // 8, 8], gl.SwizzledSharedLayout(1, 1, 1, [1, 0]))
    yready = gl.allocate_shared_memory(gl.int64, [2 * NYB, 1], mbarrier.MBarrierLayout())  # a buffer's halves
    yempty = gl.allocate_shared_memory(gl.int64, [NYB, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(NYB):
        mbarrier.init(yready.index(2 * i), count=1)
        mbarrier.init(yready.index(2 * i + 1), count=1)
        mbarrier.init(yempty.index(i), count=2)
    w2_s, w3_s, ready, empty = _ring(w2_desc, w3_desc, CP, BLOCK_H, STAGES)  # its fence covers these inits too
    pid = gl.program_id(0)
    nprog = gl.num_programs(0)
    nt = gl.cdiv(NPIX, 2 * BLOCK_P)
    c0 = (y_s, w2_s, w3_s, ready, empty, yready, yempty, x_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, C, HID, pid, nt, nprog, 2 * BLOCK_P, 0, 2 * pid)
    c1 = (y_s, w2_s, w3_s, ready, empty, yready, yempty, x_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, C, HID, pid, nt, nprog, 2 * BLOCK_P, 1,
          2 * pid + 1)
    ld = (w2_s, w3_s, ready, empty, w2_desc, w3_desc, HID, pid, nt, nprog)
    cv = (y_s, wf_s, wf8_s, yready, yempty, x_ptr, wf_ptr, b1_ptr, NPIX, H, W, C, pid, nt, nprog, 2 * BLOCK_P)
    gl.static_assert((RC == 2) | (RC == 4), "the conv partition holds 2 or 4 pixels a thread")
    # the partitions' functions are spelt out: warp_specialize's argument tuples carry no constexprs (see _consume_tc)
    if STAMP:
        if U and RC == 2:
            gl.warp_specialize([(_consume_cw_stamped, c0), (_consume_cw_stamped, c1), (_loader_persist, ld), (_conv_part_u2, cv)], [4, 1, 4],
                               [REGS, 24, CREGS])
        elif U:
            gl.warp_specialize([(_consume_cw_stamped, c0), (_consume_cw_stamped, c1), (_loader_persist, ld), (_conv_part_u4, cv)], [4, 1, 4],
                               [REGS, 24, CREGS])
        elif RC == 2:
            gl.warp_specialize([(_consume_cw_stamped, c0), (_consume_cw_stamped, c1), (_loader_persist, ld), (_conv_part_r2, cv)], [4, 1, 4],
                               [REGS, 24, CREGS])
        else:
            gl.warp_specialize([(_consume_cw_stamped, c0), (_consume_cw_stamped, c1), (_loader_persist, ld), (_conv_part_r4, cv)], [4, 1, 4],
                               [REGS, 24, CREGS])
    elif U and RC == 2:
        gl.warp_specialize([(_consume_cw, c0), (_consume_cw, c1), (_loader_persist, ld), (_conv_part_u2, cv)], [4, 1, 4], [REGS, 24, CREGS])
    elif U:
        gl.warp_specialize([(_consume_cw, c0), (_consume_cw, c1), (_loader_persist, ld), (_conv_part_u4, cv)], [4, 1, 4], [REGS, 24, CREGS])
    elif RC == 2:
        gl.warp_specialize([(_consume_cw, c0), (_consume_cw, c1), (_loader_persist, ld), (_conv_part_r2, cv)], [4, 1, 4], [REGS, 24, CREGS])
    else:
        gl.warp_specialize([(_consume_cw, c0), (_consume_cw, c1), (_loader_persist, ld), (_conv_part_r4, cv)], [4, 1, 4], [REGS, 24, CREGS])


MODES = ("shared", "shared_stamped", "pfw", "pfw_stamped", "noload_stamped", "tc", "tc_stamped", "tc_noload_stamped", "tcs", "tcs_stamped",
         "tcs_ca", "tcs_ca_stamped", "tcs_noload_stamped", "tct", "tct_stamped", "tctl", "tctl_stamped",
         "tct_nomma_stamped", "tct_noldm_stamped", "tci", "tci_stamped", "cw", "cw_stamped", "cwu", "cwu_stamped")
# pfw: weights a tap ahead (CONV 1); tc: the grouped conv on the tensor cores (_block_tc_kernel); tcs: that conv's input staged by cp.async
# (tcs_ca: in 8-byte pieces, through L1); tct: by TMA boxes a second loader warp brings (tctl: a conv step's wgmmas left in flight);
# tci: tct with the next tile's conv spread over this tile's chain (y1 double-buffered); cw: the conv on the CUDA cores in a warp partition
# of its own, a ring of y1 buffers ahead of the chain (_block_cw_kernel; cwu: its taps unrolled)
ABLATIONS = ("noload_stamped", "tc_noload_stamped", "tcs_noload_stamped", "tct_nomma_stamped", "tct_noldm_stamped")  # wrong outputs by design: timed without the check


def weights(w1, b1, w2, b2, w3, b3) -> dict:
    """The folded block's weights (w1 [C, 8, 3, 3], w2 [HID, C], w3 [C, HID], biases) laid out for `_block_kernel`,
    zero-padded from C to CP = the next power of two: wf [9 taps, 8 in, CP] fp32 with wf[tap, ci, 8g + co] =
    w1[8g + co, ci, tap // 3, tap % 3] (one input channel's weights to a group's 8 outputs contiguous), b1 [CP],
    W2ᵀ [CP, HID], W3ᵀ [HID, CP], b2 [HID], b3 [CP] in w2's dtype; and wb, the tensor-core conv's block-diagonal
    tiles (below)."""
    c, hid = w1.shape[0], w2.shape[0]
    if tuple(w1.shape[1:]) != (8, 3, 3):
        raise ValueError(f"w1 {tuple(w1.shape)}: this kernel takes a 3x3 grouped conv of group width 8")
    cp = padded(c)
    dt, dev = w2.dtype, w2.device
    z = lambda *s: torch.zeros(*s, dtype=dt, device=dev)  # noqa: E731
    wf = torch.zeros(9, 8, cp, dtype=torch.float32, device=dev)
    wf[:, :, :c] = w1.float().permute(2, 3, 1, 0).reshape(9, 8, c)  # [kh, kw, ci, c] -> [tap, ci, c]
    b1p, b3p, w2t, w3t = z(cp), z(cp), z(cp, hid), z(hid, cp)
    b1p[:c], b3p[:c], w2t[:c], w3t[:, :c] = b1, b3, w2.t(), w3.t()
    # the tensor-core conv's block-diagonal [16, 16] tiles: slice j's B[k, n] = w1[16j + n, k - 8·(n // 8)] where k and n
    # are in the same group of 8 (k // 8 == n // 8), else 0; stored tap-major, [9 · CP/16 · 16, 16]
    ns = cp // 16
    wk = torch.zeros(9, cp, 8, dtype=torch.float32, device=dev)  # [tap, out channel, in channel of its group]
    wk[:, :c] = w1.float().permute(2, 3, 0, 1).reshape(9, c, 8)
    wb = torch.zeros(9, ns, 16, 16, dtype=torch.float32, device=dev)
    for half in range(2):  # groups 2j (n, k < 8) and 2j + 1 (n, k >= 8)
        blk = wk.view(9, ns, 2, 8, 8)[:, :, half]  # [tap, j, n within the group, k within the group]
        wb[:, :, 8 * half:8 * half + 8, 8 * half:8 * half + 8] = blk.transpose(-1, -2)  # B[k, n]
    return {"wf": wf.contiguous(), "wb": wb.reshape(9 * cp, 16).to(dt).contiguous(), "b1": b1p, "w2t": w2t.contiguous(), "b2": b2.contiguous(),
            "w3t": w3t.contiguous(), "b3": b3p, "c": c, "cp": cp}


def smem_bytes(cp: int, cfg: dict) -> int:
    """Both x (or y1) tiles, the ring and its barriers, the tc conv's tiles, and one [64, CP] bf16 tile of layout-conversion scratch (the sm_90
    compile here: 180,264 bytes at CP 128, block_h 128, 2 slots, shared ring, where the buffers alone are 163,872)."""
    if cfg["mode"].startswith("cw"):  # the y1 ring (NYB tiles of both halves), one tile of scratch, the conv's fp32 weights, the ring
        return (2 * (2 * cfg["nyb"] + 1) * BLOCK_P * cp + 4 * 72 * cp + 2 * cfg["stages"] * 2 * cp * cfg["block_h"]
                + 8 * (2 * cfg["stages"] + 3 * cfg["nyb"]))
    conv_w = 9 * cp * 16 if cfg["mode"].startswith("tc") else 0  # the tensor-core conv's block-diagonal tiles
    taps = 2 * (cfg.get("nb", 0) * cfg.get("ch", 64) + cfg.get("nbx", 0) * 64) * BLOCK_P  # tcs, tct, tci: the conv's input slots
    y1_next = 2 * BLOCK_P * cp if cfg["mode"].startswith("tci") else 0  # tci: each consumer's second y1 buffer
    return 2 * (3 * BLOCK_P * cp + y1_next + conv_w + taps + cfg["stages"] * 2 * cp * cfg["block_h"]) + 8 * (2 * cfg["stages"] + 1)


def tiles(c: int, modes: tuple) -> list[dict]:
    """64 or 128 hidden channels a chunk (dividing 4C), 2-4 ring slots (tcs: 4 or 2 input slots of 64 channels a
    consumer, or 2 of 128; tct, tci: 4 or 2 slot pairs), where the rings and both x tiles fit 227 KB."""
    cp, out = padded(c), []
    for bh in (128, 64):
        for stages in (2, 3, 4):
            for mode in modes:
                if mode.startswith("cw"):  # 2 or 3 y1 buffers, 4 or 2 conv pixels a thread; up to 128 channels (its fp32 weights)
                    out += [cfg for nyb in (2, 3) for rc in (4, 2) for cfg in [{"block_h": bh, "stages": stages, "mode": mode, "nyb": nyb, "rc": rc}]
                            if cp <= 128 and (4 * c) % bh == 0 and smem_bytes(cp, cfg) <= 232448]
                    continue
                tma = mode.startswith(("tct", "tci"))
                for nb, ch in (((4, 64), (2, 64), (2, 128)) if mode.startswith("tcs") else ((4, 0), (2, 0)) if tma else ((0, 0),)):
                    staged = {"nbx": nb} if tma else {"nb": nb} if nb else {}
                    cfg = {"block_h": bh, "stages": stages, "mode": mode, **staged, **({"ch": ch} if ch == 128 else {})}
                    if ch > cp:
                        continue
                    if (4 * c) % bh == 0 and smem_bytes(cp, cfg) <= 232448:  # tc: up to 128 channels (its conv tiles)
                        out.append(cfg)
    return out


def kernel(cfg: dict):
    return _block_tc_kernel if cfg["mode"].startswith("tc") else _block_cw_kernel if cfg["mode"].startswith("cw") else _block_kernel


def constexprs(c: int, cp: int, hid: int, cfg: dict, side: int) -> dict:
    """The kernel's constexprs; the tc kernels' include the block's shape (C, and H = W = side)."""
    mode = cfg["mode"]
    cx = {"CP": cp, "HID": hid, "BLOCK_P": BLOCK_P, "BLOCK_H": cfg["block_h"], "STAGES": cfg["stages"], "REGS": cfg.get("regs", 232),
          "STAMP": mode.endswith("_stamped")}
    if mode.startswith("tc"):
        return {**cx, "NOLOAD": "noload" in mode, "NB": cfg.get("nb", 0), "CA": mode.startswith("tcs_ca"), "SCH": cfg.get("ch", 64),
                "NBX": cfg.get("nbx", 0), "LAG": mode.startswith("tctl"), "ILV": mode.startswith("tci"), "ABL": {"tct_nomma_stamped": 1, "tct_noldm_stamped": 2}.get(mode, 0),
                "H": side, "W": side, "C": c}
    if mode.startswith("cw"):  # the second consumer REGS, the conv warpgroup CREGS, the first what is left of 512 a thread with the
        # loader's 24 (its warpgroup's share): at 4 pixels a thread 152 and 184 (the sm_90 compile here: the unrolled conv spilled
        # 33 words a sub-tile at 168, none in its loop at 184), at 2 pixels 168 each
        regs, cregs = (152, 184) if cfg["rc"] == 4 else (168, 168)
        return {**cx, "REGS": cfg.get("regs", regs), "CREGS": cfg.get("cregs", cregs), "NYB": cfg["nyb"], "RC": cfg["rc"], "SW_X": swizzle(cp),
                "U": mode.startswith("cwu"),
                "H": side, "W": side, "C": c}
    return {**cx, "SW_X": swizzle(cp), "CONV": 1 if mode.startswith("pfw") else 2 if mode.startswith("noload") else 0}


def descriptors(w2t: torch.Tensor, w3t: torch.Tensor, block_h: int, wb: torch.Tensor | None = None) -> tuple:
    """TMA descriptors of W2ᵀ's and W3ᵀ's chunk tiles (and, given wb, of the conv's [16, 16] tiles)."""
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    cp = w2t.shape[0]
    nv = lambda row: gl.NVMMASharedLayout(swizzle_byte_width=swizzle(row), element_bitwidth=16, rank=2)  # noqa: E731
    out = (TensorDescriptor.from_tensor(w2t, [cp, block_h], nv(block_h)), TensorDescriptor.from_tensor(w3t, [block_h, cp], nv(cp)))
    return out if wb is None else (*out, TensorDescriptor.from_tensor(wb, [16, 16], nv(16)))


def x_descriptor(xf: torch.Tensor):
    """The tct conv's TMA descriptor of x [NPIX, C]: [64, 64] boxes (64 pixels' rows, 64 channels), 128-byte swizzle."""
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    return TensorDescriptor.from_tensor(xf, [BLOCK_P, 64], gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=16, rank=2))


def fused(wt: dict, cfg: dict, h: int, w: int):
    """f(x) for x [N, C, H, W] bf16 channels-last running `_block_kernel` (one program an SM), returning the output in
    the same layout; and the dict whose "k" keeps the last compiled launch (and "summary", stamped modes: the clock
    totals, as gluon_ws_chain.persist_stamp_summary with slot 1 read as the convs)."""
    c, cp, hid = wt["c"], wt["cp"], wt["w2t"].shape[1]
    tc = cfg["mode"].startswith("tc")
    descs = descriptors(wt["w2t"], wt["w3t"], cfg["block_h"], wt["wb"] if tc else None)
    if h != w:
        raise ValueError(f"map {h}x{w}: these kernels are compiled for square maps")
    cx = constexprs(c, cp, hid, cfg, h)
    handle = {}

    def f(x):
        n = x.shape[0]
        npix = n * h * w
        xf = x.permute(0, 2, 3, 1).reshape(npix, c)  # a view for channels-last x
        if xf.data_ptr() != x.data_ptr():
            raise ValueError("x must be channels-last")
        grid = min(triton.cdiv(triton.cdiv(npix, BLOCK_P), 2), torch.cuda.get_device_properties(x.device).multi_processor_count)
        buf = handle["buf"] = torch.empty(npix * c + (4 * 8 * 2 * grid if cx["STAMP"] else 0), dtype=x.dtype, device=x.device)
        conv_w = () if tc else (wt["wf"],)  # the CUDA-core conv's weights (the tc kernel's come by wb's descriptor)
        dims = {"NPIX": npix, **({} if "H" in cx else {"H": h, "W": w, "C": c})}
        x_desc = (x_descriptor(xf),) if tc else ()  # used by tct (the tc kernel takes it in every mode)
        handle["k"] = kernel(cfg)[(grid,)](*descs, *x_desc, xf, *conv_w, wt["b1"], wt["b2"], wt["b3"], buf, **dims, **cx, num_warps=4)
        handle["npix"] = npix
        return buf[:npix * c].view(n, h, w, c).permute(0, 3, 1, 2)
    if cx["STAMP"]:
        first = "y1_wait_total" if cfg["mode"].startswith("cw") else "conv_total"  # cw: a consumer's waits for the conv partition
        handle["summary"] = lambda: persist_stamp_summary(handle["buf"][handle["npix"] * c:].view(torch.int64).view(-1, 8).cpu(), first)
    return f, handle


def compile_only(widths: list[int], modes: tuple) -> None:
    """Compile every tile for sm_90 with the Triton installed here (no GPU): registers, spills, shared memory."""
    from gluon_chain import compile_tile

    for c in widths:
        cp = padded(c)
        w2t, w3t = torch.empty(cp, 4 * c, dtype=torch.bfloat16), torch.empty(4 * c, cp, dtype=torch.bfloat16)
        wb = torch.empty(9 * cp, 16, dtype=torch.bfloat16)
        for cfg in tiles(c, modes):
            descs = dict(zip(("w2_desc", "w3_desc", "wb_desc"), descriptors(w2t, w3t, cfg["block_h"], wb)))
            descs["x_desc"] = x_descriptor(torch.empty(64 * MAPS[c] ** 2, c, dtype=torch.bfloat16))
            counts = (("setmaxnreg", "setmaxnreg"), ("tma", "cp.async.bulk.tensor"), ("cp.async 16 B", "cp.async.cg"), ("cp.async < 16 B", "cp.async.ca"))
            compile_tile(kernel(cfg), f"C={c}", cfg, constexprs(c, cp, 4 * c, cfg, MAPS[c]), 4, "gluon_block",
                         lambda n: descs[n].__mangle__() if n in descs else ("*fp32" if n == "wf_ptr" else None), counts)


def main() -> None:
    import kernels_gpu

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--widths", default="64,128,256,48,96,192")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--modes", default="tc,tc_stamped,pfw", help=f"of {','.join(MODES)}")
    ap.add_argument("--first", type=int, default=0, help="only the first N tiles a width (a smoke run under a short timeout)")
    ap.add_argument("--no-baselines", action="store_true", help="skip the product's tl kernel and torch.compile of the block")
    ap.add_argument("--compile-only", action="store_true", help="sm_90 compiles here, no GPU")
    kernels_gpu.add_ceilings_option(ap)
    a = ap.parse_args()
    widths = [int(w) for w in a.widths.split(",")]
    modes = tuple(a.modes.split(","))
    bad = [m for m in modes if m not in MODES] + [str(c) for c in widths if c not in MAPS]
    if bad:
        ap.error(f"{', '.join(bad)}: modes are {', '.join(MODES)}; widths {', '.join(map(str, MAPS))}")
    if a.compile_only:
        return compile_only(widths, modes)
    if not a.out:
        ap.error("--out is needed to run")

    from effkit.kernels.fold import reference_convfirst
    from effkit.models.convfirst import ConvFirstBlock

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    peak, bw, ceil_src = kernels_gpu.ceilings(a.ceilings, torch.cuda.get_device_name())
    res = {"meta": {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "torch": torch.__version__,
                    "triton": triton.__version__, "device": torch.cuda.get_device_name(), "ceilings": ceil_src, "peak_bf16_flops": peak,
                    "bandwidth_bytes_per_s": bw, "tolerance": kernels_gpu.TOL}, "shapes": []}
    path = out / "gluon_block.json"

    def save():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=1))
        tmp.replace(path)

    for c in widths:
        side = MAPS[c]
        torch.manual_seed(0)
        blk = kernels_gpu.randomise_bn(ConvFirstBlock(c)).eval()
        flops, nbytes = kernels_gpu.block_cost(side, a.batch, blk)
        roof_ms = 1e3 * max(flops / peak, nbytes / bw)
        fz = kernels_gpu.fused_copy(blk).cuda()[0]  # the product's FusedConvFirst (folded in fp32, bf16)
        x = torch.randn(a.batch, c, side, side, device="cuda").to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        ws = [getattr(fz, k) for k in ("w1", "b1", "w2", "b2", "w3", "b3")]
        with torch.no_grad():
            ref = reference_convfirst(x.float(), *(t.float() for t in ws), group_width=8)
        scale = ref.abs().max().item()
        row = {"width": c, "padded": padded(c), "map": side, "npix": a.batch * side * side, "flops": flops, "bytes": nbytes,
               "roofline_ms": roof_ms, "tiles": []}
        res["shapes"].append(row)

        def timed(name, f):
            with torch.no_grad():
                err = (f(x).float() - ref).abs().max().item() / scale
            ms, iqr = kernels_gpu.graph_time_ms(f, x)
            row[name] = {"ms": ms, "iqr_ms": iqr, "of_roofline": roof_ms / ms, "error": err}
            print(f"C={c} {side}² {name}: {ms:.4f} ms (IQR {iqr:.4f}), {100 * roof_ms / ms:.0f} % of the fused roofline "
                  f"{roof_ms:.4f}, err {err:.1e}", flush=True)
        if not a.no_baselines:
            try:
                timed("product_tl", fz)
                blk_b = blk.to(torch.bfloat16).cuda().to(memory_format=torch.channels_last)
                timed("compile", kernels_gpu.compiled(blk_b))
            except Exception as e:  # noqa: BLE001 - the Gluon rows still run
                row["baseline_failed"] = f"{type(e).__name__}: {str(e)[:300]}"
                print(f"C={c} baselines failed: {row['baseline_failed']}", flush=True)
            save()
        wt = weights(*ws)
        for cfg in tiles(c, modes)[:a.first or None]:
            t = dict(cfg)
            try:
                f, handle = fused(wt, cfg, side, side)
                with torch.no_grad():
                    t["error"] = (f(x).float() - ref).abs().max().item() / scale
                k = handle["k"]
                t.update(n_regs=k.n_regs, n_spills=k.n_spills, shared_bytes=getattr(k.metadata, "shared", None))
                if cfg["mode"] in ABLATIONS:
                    t["ablation"] = True  # its output is wrong by design: timed, not checked
                if t["error"] <= kernels_gpu.TOL or t.get("ablation"):
                    ms, iqr = kernels_gpu.graph_time_ms(f, x)
                    t.update(ms=ms, iqr_ms=iqr, of_roofline=roof_ms / ms, tflops=flops / ms / 1e9)
                    if "summary" in handle:
                        t["stamps"] = handle["summary"]()
            except Exception as e:  # noqa: BLE001 - report every tile's fate
                lines = str(e).splitlines() or [""]
                t["failed"] = f"{type(e).__name__}: {next((ln for ln in lines if 'error' in ln.lower()), lines[0])[:300]}"
            row["tiles"].append(t)
            print(f"C={c} {side}² gluon {cfg}: " + (f"{t['ms']:.4f} ms (IQR {t['iqr_ms']:.4f}), {100 * t['of_roofline']:.0f} % of the fused "
                  f"roofline, err {t['error']:.1e}{' (ablation: not checked)' if t.get('ablation') else ''}, {t.get('n_regs')} registers, "
                  f"{t.get('n_spills')} spills" if "ms" in t else
                  f"not timed: {t.get('failed') or 'error %.2e over the tolerance' % t['error']}"), flush=True)
            if t.get("stamps"):
                print("    stamps (µs, median / IQR): " + ", ".join(f"{k} {v['median_us']:.2f} / {v['iqr_us']:.2f}" for k, v in t["stamps"].items()
                      if isinstance(v, dict)) + f"; clock {t['stamps']['clock_ghz']:.2f} GHz, span {t['stamps']['kernel_span_us']:.1f} µs", flush=True)
            save()
        timed_tiles = [t for t in row["tiles"] if "ms" in t and not t["mode"].endswith("_stamped") and not t.get("ablation")]
        if timed_tiles:
            best = min(timed_tiles, key=lambda t: t["ms"])
            row["best"] = best
            print(f"C={c} {side}² best gluon block: {best['ms']:.4f} ms (IQR {best['iqr_ms']:.4f}), {100 * best['of_roofline']:.0f} % of the "
                  f"fused roofline; {best['mode']} block_h {best['block_h']} stages {best['stages']}", flush=True)
        save()
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
