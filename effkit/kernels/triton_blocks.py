"""One Triton kernel per residual block, channels-last (NHWC), inference.

Each program takes a tile of pixels and keeps everything between the block's input and its output on chip (registers;
for the staged MBConv kernel, its expanded halo also in an L2-resident scratch slot, below): only the input (with its
k×k neighbourhood), the output and the weights cross DRAM, the weights from L2.

ConvFirst: the grouped k×k conv (group width GW) at the narrow width C is computed first, [BLOCK_P, C] in registers;
then, BLOCK_H expanded channels at a time, e = SiLU(y1 · W2ᵀ + b2) ([BLOCK_P, BLOCK_H]) is projected straight into the
output accumulator (acc += e · W3ᵀ): the expanded activations never leave the chip. Triton's tensors have power-of-two
shapes, so the channels are held as two parts (`layout.channel_parts`: 48 = 32 + 16, 96 = 64 + 32, ...), each its own
tensor, and every dot over channels is two dots: no MAC, register or weight load is spent on padding (one
power-of-two tile padded the zoo's 3·2^k widths by a third). The grouped conv runs one of three ways
(config["group_conv"]), part by part (a group never straddles the two):
- "pairs", on the tensor cores: the channels in chunks of 16 (two groups of 8), each tap one batched dot
  [P/16, BLOCK_P, 16] · [P/16, 16, 16] against a block-diagonal weight (`block_diagonal_pairs`: half its entries are
  zeros, so twice the grouped conv's MACs, but at tensor-core rate and with one coalesced load of the input per tap);
- "dense", on the tensor cores: each tap one 2-D dot [BLOCK_P, P] · [P, P] against the part's whole block-diagonal
  weight (`block_diagonal_dense_parts`: P / GW times the MACs, no batched dot and no reshuffle; for narrow blocks);
- "fma", on the CUDA cores: for each tap and each of the GW inputs of a channel's group, a gathered load of the input
  times a per-channel weight (k²·GW loads of the input tile, fp32 FMAs);
- "dense_loop": the dense way's math with the k² taps as a loop (not unrolled), which the compiler pipelines
  (config["tap_stages"] deep): each tap's gathered input and weight are copied asynchronously into shared memory while
  the earlier taps' dots run;
- "dense_tma" (stride 1): the same loop, each tap's input one tensor-descriptor load of consecutive rows (the tap's
  shift), the rows whose neighbour is off the image zeroed after (run 30 on the H200: 24-39 % slower than
  "dense_loop" at c48, c96 and c192, so not a default).
config["three_parts"] holds a 3·2^k input width as three equal parts (192 = 64 + 64 + 64), so that the dense grouped
conv's MACs are 3·p² a pixel and tap instead of (2p)² + p² (the expansion then takes three dots instead of two).
Wide blocks have few pixel tiles (49 programs of 64 pixels at 384 channels, 7², batch 64): config["split_h"] shares a
tile's expanded channels out among that many programs, whose partial outputs are summed in an fp32 buffer; the last to
finish ends the block. SiLU takes the hardware's tanh on CUDA (`_silu`), in bf16x2 on bf16 tiles up to 64 channels.

MBConv: its depthwise conv runs at the expanded width, so each output pixel needs the expanded activations of its k×k
neighbourhood (the halo). Three kernels handle it (config["halo"]; the default is `default_halo`'s):
- "shift" (3x3; the default at 56², 28² and 14² where the launch has 16 programs or more): a program takes a 16 x 16 frame (a 14 x 14 tile and its one-pixel
  halo) and for each chunk of BLOCK_H expanded channels expands the whole frame, then moves the chunk on the tensor
  cores: the rows above and below are 0/1 shift-matrix dots [16, 16] · [16, 16·BLOCK_H] (exact: one product a value),
  the depthwise weights combine the three rows column by column in fp32 (U_b = Σ_a wd[a, b]·row_a), and the left and
  right columns' sums are moved sideways by batched [16, 16] shift dots on U_b rounded to bf16 (one rounding more than
  PyTorch's). No scratch, no barrier of ours; the frame's halo is expanded too (256 / 196 = 1.3x), and a wide block's
  output channels are shared out among programs (block_co), each expanding the frame again;
- "staged": a program takes a spatial tile; for each chunk of BLOCK_H expanded channels it expands the tile's
  frame (the tile and its k // 2 halo, halo_p pixels at most, see `layout.halo_tiles`) once, writes it to its own
  scratch slot, and the depthwise conv reads the k² shifted neighbours back from the slot. Triton has no explicit
  shared memory, so the slot is global memory: one slot per persistent program (two programs an SM), a few MB in all,
  rewritten tile after tile, so it lives in L2 and, but for evictions, never reaches DRAM. The cost: the frame's halo
  is expanded and projected too ((tile + k − 1)² / tile² of the work, 1.3x for 14×14 tiles), and two barriers a chunk.
- "recompute": a program takes BLOCK_P pixels and, for each of the k² offsets, loads the shifted input pixels and
  expands them again (k² times the expand's MACs; no scratch).
Both pad the expanded map with zeros after the SiLU, as the depthwise conv pads it.

Products run in the weights' dtype (bf16 on the GPU), accumulate in fp32. Triton's interpreter (TRITON_INTERPRET=1) runs
these on the CPU in fp32, which is how the tests check their logic.

A launch's tiles (BLOCK_P pixels, BLOCK_H expanded channels, num_warps) come from `config=` or the defaults below;
`last_launch` keeps the compiled kernel's register count, spills, shared memory and tensor-core instructions for the benchmark.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from effkit.kernels.layout import (block_c_of, block_diagonal_dense_parts, block_diagonal_pairs, channel_parts, default_three_parts, halo_tiles,
                                   kernel_input_parts)


@triton.jit
def _pixel_tile(NPIX, H, W, C, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """This program's pixels (flat over N, H, W) and channels, their masks, and each pixel's n, h, w."""
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    c = tl.arange(0, BLOCK_C)
    return p, p < NPIX, p // (H * W), (p % (H * W)) // W, p % W, c, c < C


@triton.jit
def _tap(n, h, w, pm, H, W, C, DY, DX, K: tl.constexpr):
    """For the k×k tap (DY, DX: constants in the unrolled taps, from the loop's index in `_grouped_conv_loop`): which
    pixels' shifted neighbour is inside the image, and that neighbour's offset in NHWC."""
    hh = h + DY - K // 2
    ww = w + DX - K // 2
    return pm & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W), ((n * H + hh) * W + ww) * C


@triton.jit
def _store_out(acc, b3_ptr, out_ptr, p, pm, c, cm, C):
    """The projection's bias added and the output tile stored (NHWC, C channels)."""
    acc += tl.load(b3_ptr + c, mask=cm, other=0.0).to(tl.float32)[None, :]
    tl.store(out_ptr + (p * C)[:, None] + c[None, :], acc.to(out_ptr.dtype.element_ty), mask=pm[:, None] & cm[None, :])


@triton.jit
def _project_out(acc, x_ptr, b3_ptr, out_ptr, p, pm, c, cm, C):
    """The block's end: the identity residual and the projection's bias added, the output tile stored."""
    acc += tl.load(x_ptr + (p * C)[:, None] + c[None, :], mask=pm[:, None] & cm[None, :], other=0.0).to(tl.float32)
    _store_out(acc, b3_ptr, out_ptr, p, pm, c, cm, C)


@triton.jit
def _silu(x, FAST: tl.constexpr):
    """SiLU of an fp32 tensor. FAST (CUDA only: inline PTX, which Triton's interpreter cannot run):
    1: x·σ(x) = x·(1 + tanh(x/2))/2 in fp32 with the hardware's tanh.approx.f32, one special-function (MUFU) instruction
      an element (max relative error about 2^-11, below the bf16 rounding the result gets next) where
      σ(x) = 1/(1 + exp(−x)) takes an exp and a division;
    2 (packed, sm_90): the same in bf16x2 on x rounded to bf16, two elements an instruction (tanh.approx.bf16x2,
      fma.rn.bf16x2, mul.rn.bf16x2): half the MUFU instructions, whose throughput (16 an SM a clock) is a few µs of a
      block's time at batch 64; returns bf16, which the projection's dot takes anyway (error: a few bf16 roundings);
    0: the exact form in fp32."""
    if FAST == 2:
        return tl.inline_asm_elementwise(
            "{ .reg .b32 c, h, t; mov.b32 c, 0x3F003F00; mul.rn.bf16x2 h, $1, c; tanh.approx.bf16x2 t, h; "
            "fma.rn.bf16x2 t, t, c, c; mul.rn.bf16x2 $0, $1, t; }",
            "=r,r", [x.to(tl.bfloat16)], dtype=tl.bfloat16, is_pure=True, pack=2)
    elif FAST:
        t = tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=f,f", [x * 0.5], dtype=tl.float32, is_pure=True, pack=1)
        return x * (0.5 + 0.5 * t)
    else:
        return x * tl.sigmoid(x)


@triton.jit
def _grouped_conv_part(x_ptr, wg_ptr, n, h, w, pm, H, W, C, C0: tl.constexpr, P: tl.constexpr, WOFF: tl.constexpr, NCHUNK: tl.constexpr,
                       MODE: tl.constexpr, K: tl.constexpr, GW: tl.constexpr, BLOCK_P: tl.constexpr):
    """The grouped k×k conv for one channel part (channels C0 .. C0+P−1; a group never straddles two parts), [BLOCK_P, P]
    in fp32, one of three ways (MODE):
    2 (dense): one 2-D dot a tap, [BLOCK_P, P] · [P, P], against the part's dense block-diagonal weight at wg_ptr + WOFF
      (`block_diagonal_dense_parts`: P / GW times the grouped conv's MACs, no batched dot, no reshuffle);
    1 (pairs): one batched dot a tap, [P/16, BLOCK_P, 16] · [P/16, 16, 16], against the block-diagonal chunks of 16
      channels (`block_diagonal_pairs`, NCHUNK chunks in all: twice the MACs at GW = 8), then reshuffled to [BLOCK_P, P];
    0 (fma): on the CUDA cores, k²·GW gathered loads of the input times a per-channel weight (wg_ptr is w1 itself)."""
    c = C0 + tl.arange(0, P)
    cm = c < C
    if MODE == 1:
        G: tl.constexpr = P // 16
        q = C0 // 16 + tl.arange(0, G)
        i = tl.arange(0, 16)
        chan = q[:, None, None] * 16 + i[None, None, :]  # [G, 1, 16]: input channel q·16 + i
        y3 = tl.zeros((G, BLOCK_P, 16), dtype=tl.float32)
    else:
        y1 = tl.zeros((BLOCK_P, P), dtype=tl.float32)
        grp = (c // GW) * GW
        cl = tl.arange(0, P)  # the channel within the part
    for dy in tl.static_range(K):
        for dx in tl.static_range(K):
            ok, base = _tap(n, h, w, pm, H, W, C, dy, dx, K)
            if MODE == 1:
                xs = tl.load(x_ptr + base[None, :, None] + chan, mask=ok[None, :, None] & (chan < C), other=0.0)
                wt = tl.load(wg_ptr + (((dy * K + dx) * NCHUNK + q[:, None, None]) * 16 + i[None, :, None]) * 16 + i[None, None, :])
                y3 += tl.dot(xs.to(wg_ptr.dtype.element_ty), wt)
            elif MODE == 2:
                xs = tl.load(x_ptr + base[:, None] + c[None, :], mask=ok[:, None] & cm[None, :], other=0.0)
                wt = tl.load(wg_ptr + WOFF + ((dy * K + dx) * P + cl[:, None]) * P + cl[None, :])
                y1 += tl.dot(xs.to(wg_ptr.dtype.element_ty), wt)
            else:
                for j in tl.static_range(GW):
                    xv = tl.load(x_ptr + base[:, None] + (grp + j)[None, :], mask=ok[:, None] & cm[None, :], other=0.0).to(tl.float32)
                    wv = tl.load(wg_ptr + ((c * GW + j) * K + dy) * K + dx, mask=cm, other=0.0).to(tl.float32)
                    y1 += xv * wv[None, :]
    if MODE == 1:
        y1 = tl.reshape(tl.permute(y3, (1, 0, 2)), (BLOCK_P, P))  # channel q·16 + o
    return y1


@triton.jit
def _grouped_conv_loop(x_ptr, wg_ptr, n, h, w, pm, H, W, C, NPIX, C0: tl.constexpr, P: tl.constexpr, WOFF: tl.constexpr, K: tl.constexpr,
                       BLOCK_P: tl.constexpr, STAGES: tl.constexpr, TMA: tl.constexpr):
    """The dense grouped conv (MODE 2's math) with the k² taps as a loop rather than unrolled: the compiler pipelines
    the loop (STAGES deep), so each tap's gathered [BLOCK_P, P] input and [P, P] weight are copied asynchronously into
    shared memory while earlier taps' dots run, where the unrolled taps load to registers and wait.
    TMA (stride 1 only): at stride 1 a tap's inputs for the tile's BLOCK_P consecutive pixels are BLOCK_P consecutive
    rows of the [NPIX, C] input, shifted by (dy − k//2)·W + (dx − k//2): one tensor-descriptor load of a [BLOCK_P, P] box
    (rows outside [0, NPIX) read as zeros), then the rows whose neighbour is outside the image (wrapped into the next
    row or image) zeroed, instead of a pointer and a mask computed for every element of the gather."""
    c = C0 + tl.arange(0, P)
    cm = c < C
    cl = tl.arange(0, P)
    y1 = tl.zeros((BLOCK_P, P), dtype=tl.float32)
    if TMA:
        desc = tl.make_tensor_descriptor(x_ptr, shape=[NPIX, C], strides=[C, 1], block_shape=[BLOCK_P, P])
        p0 = tl.program_id(0) * BLOCK_P
    for t in tl.range(0, K * K, num_stages=STAGES):
        ok, base = _tap(n, h, w, pm, H, W, C, t // K, t % K, K)
        if TMA:
            xs = desc.load([p0 + (t // K - K // 2) * W + (t % K - K // 2), C0])
            xs = tl.where(ok[:, None], xs, 0.0)
        else:
            xs = tl.load(x_ptr + base[:, None] + c[None, :], mask=ok[:, None] & cm[None, :], other=0.0)
        wt = tl.load(wg_ptr + WOFF + (t * P + cl[:, None]) * P + cl[None, :])
        y1 += tl.dot(xs.to(wg_ptr.dtype.element_ty), wt)
    return y1


@triton.jit
def _first_part(x_ptr, wg_ptr, b1_ptr, n, h, w, pm, H, W, C, NPIX, C0: tl.constexpr, P: tl.constexpr, WOFF: tl.constexpr, NCHUNK: tl.constexpr,
                MODE: tl.constexpr, K: tl.constexpr, GW: tl.constexpr, BLOCK_P: tl.constexpr, PARTS: tl.constexpr):
    """A channel part of the block's first stage, y1 = grouped conv + b1, [BLOCK_P, P] in fp32 (PARTS bit 1 off: the
    input's centre pixel instead of the conv)."""
    c = C0 + tl.arange(0, P)
    cm = c < C
    if PARTS % 2 == 0:
        y1 = tl.load(x_ptr + (((n * H + h) * W + w) * C)[:, None] + c[None, :], mask=pm[:, None] & cm[None, :], other=0.0).to(tl.float32)
    elif MODE >= 10:  # "dense_loop" (MODE 10 + stages) and "dense_tma" (20 + stages): the dense grouped conv as a loop over taps
        y1 = _grouped_conv_loop(x_ptr, wg_ptr, n, h, w, pm, H, W, C, NPIX, C0, P, WOFF, K, BLOCK_P, MODE % 10, MODE >= 20)
    else:
        y1 = _grouped_conv_part(x_ptr, wg_ptr, n, h, w, pm, H, W, C, C0, P, WOFF, NCHUNK, MODE, K, GW, BLOCK_P)
    return y1 + tl.load(b1_ptr + c, mask=cm, other=0.0).to(tl.float32)[None, :]


@triton.jit
def _shortcut_part(acc, x_ptr, ws_ptr, centre, pm, co, com, C, C0: tl.constexpr, P: tl.constexpr, SC_K: tl.constexpr):
    """acc += the shortcut's 1x1 conv from input channels C0 .. C0+P−1 into the output channels co, SC_K input channels
    a dot (a whole [256, 512] weight tile once took 280 KB of shared memory, more than the H200's 227 KB)."""
    for c0 in tl.static_range(C0, C0 + P, SC_K):
        ck = c0 + tl.arange(0, SC_K)
        ckm = ck < C
        xc = tl.load(x_ptr + centre[:, None] + ck[None, :], mask=pm[:, None] & ckm[None, :], other=0.0)
        wst = tl.load(ws_ptr + co[None, :] * C + ck[:, None], mask=ckm[:, None] & com[None, :], other=0.0)  # [SC_K, len(co)]
        acc = tl.dot(xc.to(ws_ptr.dtype.element_ty), wst, acc)
    return acc


@triton.jit
def _store_part(acc, b3_ptr, out_ptr, p, pm, co, com, CO, NPIX, CO0: tl.constexpr, WIDTH: tl.constexpr, BLOCK_P: tl.constexpr,
                TMA_STORE: tl.constexpr):
    """`_store_out` for the output part of WIDTH channels from CO0; TMA_STORE (config["tma_store"]): the tile stored by a
    tensor descriptor instead (one TMA copy from shared memory: the program's BLOCK_P pixels are consecutive rows of the
    [NPIX, CO] output, and the copy clips the rows past NPIX and the columns past CO itself)."""
    if TMA_STORE:
        acc += tl.load(b3_ptr + co, mask=com, other=0.0).to(tl.float32)[None, :]
        desc = tl.make_tensor_descriptor(out_ptr, shape=[NPIX, CO], strides=[CO, 1], block_shape=[BLOCK_P, WIDTH])
        desc.store([tl.program_id(0) * BLOCK_P, CO0], acc.to(out_ptr.dtype.element_ty))
    else:
        _store_out(acc, b3_ptr, out_ptr, p, pm, co, com, CO)


@triton.jit
def _convfirst_end(acc, x_ptr, ws_ptr, bs_ptr, b3_ptr, out_ptr, n, h, w, p, pm, co, com, H, W, C, CO, SHORTCUT: tl.constexpr,
                   CA: tl.constexpr, CB: tl.constexpr, SC_A: tl.constexpr, SC_B: tl.constexpr, CC: tl.constexpr, NPIX, CO0: tl.constexpr,
                   WIDTH: tl.constexpr, BLOCK_P: tl.constexpr, TMA_STORE: tl.constexpr):
    """The block's end for one part of the output channels (co: WIDTH of them from CO0): the residual (the input, or
    SHORTCUT: the strided 1x1 conv of the input at each window's centre, from both input parts), the projection's bias,
    the tile stored (`_store_part`)."""
    if SHORTCUT:
        centre = ((n * H + h) * W + w) * C
        acc = _shortcut_part(acc, x_ptr, ws_ptr, centre, pm, co, com, C, 0, CA, SC_A)
        acc = _shortcut_part(acc, x_ptr, ws_ptr, centre, pm, co, com, C, CA, CB, SC_B)
        if CC > 0:
            acc = _shortcut_part(acc, x_ptr, ws_ptr, centre, pm, co, com, C, CA + CB, CC, SC_B)
        acc += tl.load(bs_ptr + co, mask=com, other=0.0).to(tl.float32)[None, :]
    else:  # the identity residual (stride 1, equal width: the output's pixels and channels are the input's)
        acc += tl.load(x_ptr + (p * C)[:, None] + co[None, :], mask=pm[:, None] & com[None, :], other=0.0).to(tl.float32)
    _store_part(acc, b3_ptr, out_ptr, p, pm, co, com, CO, NPIX, CO0, WIDTH, BLOCK_P, TMA_STORE)


@triton.jit
def _w_tile(w_ptr, k, km, j, jm, ROW, SWAP: tl.constexpr):
    """A tile of the row-major weight w[j, k] (rows ROW apart: W2 [hidden, C], W3 [C_out, hidden]) as a dot's right
    operand [k, j] (wᵀ), or with SWAP (the transposed dots) as its left operand [j, k]."""
    if SWAP:  # one return: a compile checks every return's type, both branches' (the interpreter does not)
        t = tl.load(w_ptr + j[:, None] * ROW + k[None, :], mask=jm[:, None] & km[None, :], other=0.0)
    else:
        t = tl.load(w_ptr + j[None, :] * ROW + k[:, None], mask=km[:, None] & jm[None, :], other=0.0)
    return t


@triton.jit
def _xdot(a, w, acc, SWAP: tl.constexpr):
    """a · w (+ acc) for a over pixels [BLOCK_P, k] and a weight tile [k, j]; with SWAP both are given transposed
    (aᵀ [k, BLOCK_P], w [j, k]) and this is its transpose, w · aᵀ [j, BLOCK_P]."""
    if SWAP:
        d = tl.dot(w, a, acc)
    else:
        d = tl.dot(a, w, acc)
    return d


@triton.jit
def _convfirst_kernel(x_ptr, wg_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr, ws_ptr, bs_ptr, out_ptr, part_ptr, count_ptr,
                      NPIX, H, W, HO, WO, C, CO, HID,
                      K: tl.constexpr, GW: tl.constexpr, GROUP_CONV: tl.constexpr, BLOCK_P: tl.constexpr, CA: tl.constexpr, CB: tl.constexpr,
                      OA: tl.constexpr, OB: tl.constexpr, BLOCK_H: tl.constexpr, STRIDE: tl.constexpr, SHORTCUT: tl.constexpr,
                      SPLIT_H: tl.constexpr, PARTS: tl.constexpr, SC_A: tl.constexpr, SC_B: tl.constexpr, FAST_SILU: tl.constexpr,
                      CC: tl.constexpr = 0, JOIN_AB: tl.constexpr = False, SWAP: tl.constexpr = False, TMA_STORE: tl.constexpr = False):
    """NPIX output pixels (HO×WO a map) from an H×W input of C channels, CO channels out. The C input channels are two
    parts of CA and CB channels (`layout.channel_parts`), the CO output channels OA and OB: every tensor over channels
    is held as its two parts and every dot over them is two dots, so no channel is computed beyond a+b (the zoo's
    3·2^k widths exactly). The grouped conv strides STRIDE and runs as GROUP_CONV (0 fma, 1 pairs, 2 dense; wg_ptr
    holds the matching weight layout). SHORTCUT: the residual is a 1x1 conv of stride STRIDE (ws [CO, C], bs, folded)
    instead of the input itself, SC_A and SC_B input channels of each part a dot. FAST_SILU: `_silu`'s tanh form.
    CC > 0 (config["three_parts"]): a third input part of CC channels (192 = 64 + 64 + 64), so that the dense grouped conv
    costs a² + b² + c² MACs a pixel and tap instead of (128² + 64²). JOIN_AB (config["join_parts"], three parts only): the
    grouped conv's first two parts joined into one [BLOCK_P, 2·CA] operand after the conv (its MACs unchanged), so that
    the expansion is two chained dots a chunk, not three: Triton waits for each dot's result before the next (an sm_90
    compile of the c192 kernel: wgmma.wait_group 0 and a barrier after each), so a chunk's chain is one round shorter
    (run 30: no faster at c96, 0.0471 against 0.0473 ms, slower at c192, 0.0390 against 0.0357; not a default).
    SWAP (config["swap_ab"]): the expansion's and projection's dots transposed, eᵀ = W2·yᵀ and accᵀ += W3·eᵀ, so that the
    pixels are each dot's N and the channels its M: Hopper's wgmma takes an M of 64 a warp group, so a 32-pixel tile
    (the 512-channel tiles', held to 32 by registers) gets wgmma only this way; the accumulator is transposed back before
    the block's end. Run 31: slower (c384 0.0788 against 0.0701 ms, c192>384/s2 0.0395 against 0.0360, at two stages,
    three not fitting): eᵀ is then the projection's B operand, which wgmma takes from shared memory, so every chunk
    stores it there; not a default.
    Axis 1 splits the expanded channels (SPLIT_H > 1): program (i, s) expands and projects the s-th share of them, adds
    its partial output into the fp32 buffer part_ptr (atomics, zeroed before the launch) and counts itself in
    count_ptr[tile]; the last of a tile's SPLIT_H programs reads the sum back and finishes the block.
    TMA_STORE (config["tma_store"]; not a default until timed): each output part's tile stored by a tensor descriptor (one
    TMA copy through shared memory) instead of every thread's stores, for run 37e's finding that a Gluon chain's
    epilogue in the accumulator's layout took 2.5 of a program's 8.7 us; sm_90 compiles here give the same shared
    memory and registers within 10 at every block shape.
    PARTS (benchmark only; 3 in use) switches parts of the block off to measure what each costs: bit 1 the grouped conv
    (off: the input's centre pixel instead), bit 2 the expansion (off: the grouped conv's result is the block's output)."""
    p, pm, n, ho, wo, _, _ = _pixel_tile(NPIX, HO, WO, C, BLOCK_P, CA)  # the channels come as two parts below
    h = ho * STRIDE  # the centre of each output pixel's k×k window in the input
    w = wo * STRIDE
    NCHUNK: tl.constexpr = (CA + CB + CC) // 16
    ya = _first_part(x_ptr, wg_ptr, b1_ptr, n, h, w, pm, H, W, C, NPIX, 0, CA, 0, NCHUNK, GROUP_CONV, K, GW, BLOCK_P, PARTS)
    if CB > 0:  # CB = 0: the input channels as one part (config["one_part"], a power-of-two width)
        yb = _first_part(x_ptr, wg_ptr, b1_ptr, n, h, w, pm, H, W, C, NPIX, CA, CB, K * K * CA * CA, NCHUNK, GROUP_CONV, K, GW, BLOCK_P, PARTS)
    if CC > 0:
        yc = _first_part(x_ptr, wg_ptr, b1_ptr, n, h, w, pm, H, W, C, NPIX, CA + CB, CC, K * K * (CA * CA + CB * CB), NCHUNK, GROUP_CONV, K, GW,
                         BLOCK_P, PARTS)
    oa = tl.arange(0, OA)
    ob = OA + tl.arange(0, OB)
    oam = oa < CO
    obm = ob < CO
    if PARTS >= 2:
        ca = tl.arange(0, CA)
        cam = ca < C
        ya = ya.to(w2_ptr.dtype.element_ty)
        if CB > 0:
            cb = CA + tl.arange(0, CB)
            cbm = cb < C
            yb = yb.to(w2_ptr.dtype.element_ty)
        if CC > 0:
            c3 = CA + CB + tl.arange(0, CC)
            c3m = c3 < C
            yc = yc.to(w2_ptr.dtype.element_ty)
        if JOIN_AB:  # [BLOCK_P, CA, 2] → [BLOCK_P, 2, CA] → [BLOCK_P, 2·CA]: channels 0 .. CA−1, then CA .. 2·CA−1
            yab = tl.reshape(tl.permute(tl.join(ya, yb), (0, 2, 1)), (BLOCK_P, 2 * CA))
            cab = tl.arange(0, 2 * CA)
        if SWAP:  # every operand over pixels transposed: the pixels are the dots' N, the channels their M
            ya = tl.trans(ya)
            if CB > 0:
                yb = tl.trans(yb)
            if CC > 0:
                yc = tl.trans(yc)
            if JOIN_AB:
                yab = tl.trans(yab)
            acc_a = tl.zeros((OA, BLOCK_P), dtype=tl.float32)
            acc_b = tl.zeros((OB, BLOCK_P), dtype=tl.float32)
        else:
            acc_a = tl.zeros((BLOCK_P, OA), dtype=tl.float32)
            acc_b = tl.zeros((BLOCK_P, OB), dtype=tl.float32)
        share = tl.cdiv(tl.cdiv(HID, BLOCK_H), SPLIT_H) * BLOCK_H  # expanded channels a split, whole chunks
        h_lo = tl.program_id(1) * share
        for h0 in range(h_lo, tl.minimum(h_lo + share, HID), BLOCK_H):
            hi = h0 + tl.arange(0, BLOCK_H)
            hm = hi < HID
            if JOIN_AB:
                e = _xdot(yab, _w_tile(w2_ptr, cab, cab < C, hi, hm, C, SWAP), None, SWAP)  # [2·CA, BLOCK_H] of W2ᵀ
                e = _xdot(yc, _w_tile(w2_ptr, c3, c3m, hi, hm, C, SWAP), e, SWAP)
            else:
                w2a = _w_tile(w2_ptr, ca, cam, hi, hm, C, SWAP)  # [CA, BLOCK_H] of W2ᵀ (SWAP: [BLOCK_H, CA] of W2)
                if CB > 0:
                    w2b = _w_tile(w2_ptr, cb, cbm, hi, hm, C, SWAP)
                    e = _xdot(yb, w2b, _xdot(ya, w2a, None, SWAP), SWAP)
                    if CC > 0:
                        e = _xdot(yc, _w_tile(w2_ptr, c3, c3m, hi, hm, C, SWAP), e, SWAP)
                else:
                    e = _xdot(ya, w2a, None, SWAP)
            b2 = tl.load(b2_ptr + hi, mask=hm, other=0.0).to(tl.float32)
            if SWAP:
                e += b2[:, None]
            else:
                e += b2[None, :]
            e = _silu(e, FAST_SILU).to(w3_ptr.dtype.element_ty)
            w3a = _w_tile(w3_ptr, hi, hm, oa, oam, HID, SWAP)  # [BLOCK_H, OA] of W3ᵀ (SWAP: [OA, BLOCK_H] of W3)
            w3b = _w_tile(w3_ptr, hi, hm, ob, obm, HID, SWAP)
            acc_a = _xdot(e, w3a, acc_a, SWAP)
            acc_b = _xdot(e, w3b, acc_b, SWAP)
        if SWAP:  # back to [BLOCK_P, channels] for the block's end
            acc_a = tl.trans(acc_a)
            acc_b = tl.trans(acc_b)
    else:  # ablation: no expansion (stride 1, equal width: the parts of C are the parts of CO)
        acc_a = ya
        acc_b = yb
    if SPLIT_H > 1:
        offs_a = (p * CO)[:, None] + oa[None, :]
        offs_b = (p * CO)[:, None] + ob[None, :]
        tl.atomic_add(part_ptr + offs_a, acc_a, mask=pm[:, None] & oam[None, :])
        tl.atomic_add(part_ptr + offs_b, acc_b, mask=pm[:, None] & obm[None, :])
        tl.debug_barrier()  # every thread's share added before the tile is counted
        if tl.atomic_add(count_ptr + tl.program_id(0), 1) == SPLIT_H - 1:  # acq_rel: the other splits' additions are visible
            acc_a = tl.load(part_ptr + offs_a, mask=pm[:, None] & oam[None, :], other=0.0, cache_modifier=".cg")
            acc_b = tl.load(part_ptr + offs_b, mask=pm[:, None] & obm[None, :], other=0.0, cache_modifier=".cg")
            _convfirst_end(acc_a, x_ptr, ws_ptr, bs_ptr, b3_ptr, out_ptr, n, h, w, p, pm, oa, oam, H, W, C, CO, SHORTCUT, CA, CB, SC_A, SC_B, CC,
                           NPIX, 0, OA, BLOCK_P, TMA_STORE)
            _convfirst_end(acc_b, x_ptr, ws_ptr, bs_ptr, b3_ptr, out_ptr, n, h, w, p, pm, ob, obm, H, W, C, CO, SHORTCUT, CA, CB, SC_A, SC_B, CC,
                           NPIX, OA, OB, BLOCK_P, TMA_STORE)
    else:
        _convfirst_end(acc_a, x_ptr, ws_ptr, bs_ptr, b3_ptr, out_ptr, n, h, w, p, pm, oa, oam, H, W, C, CO, SHORTCUT, CA, CB, SC_A, SC_B, CC,
                           NPIX, 0, OA, BLOCK_P, TMA_STORE)
        _convfirst_end(acc_b, x_ptr, ws_ptr, bs_ptr, b3_ptr, out_ptr, n, h, w, p, pm, ob, obm, H, W, C, CO, SHORTCUT, CA, CB, SC_A, SC_B, CC,
                           NPIX, OA, OB, BLOCK_P, TMA_STORE)


@triton.jit
def _mbconv_kernel(x_ptr, w1_ptr, b1_ptr, wd_ptr, bd_ptr, w3_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID,
                   K: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr, FAST_SILU: tl.constexpr):
    p, pm, n, h, w, c, cm = _pixel_tile(NPIX, H, W, C, BLOCK_P, BLOCK_C)
    acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    for h0 in range(0, HID, BLOCK_H):
        hi = h0 + tl.arange(0, BLOCK_H)
        hm = hi < HID
        w1t = tl.load(w1_ptr + hi[None, :] * C + c[:, None], mask=cm[:, None] & hm[None, :], other=0.0)  # [BLOCK_C, BLOCK_H]
        b1 = tl.load(b1_ptr + hi, mask=hm, other=0.0).to(tl.float32)
        d = tl.zeros((BLOCK_P, BLOCK_H), dtype=tl.float32)
        for dy in tl.static_range(K):
            for dx in tl.static_range(K):
                ok, base = _tap(n, h, w, pm, H, W, C, dy, dx, K)
                xs = tl.load(x_ptr + base[:, None] + c[None, :], mask=ok[:, None] & cm[None, :], other=0.0)
                e = tl.dot(xs.to(w1_ptr.dtype.element_ty), w1t) + b1[None, :]
                e = _silu(e, FAST_SILU)
                e = tl.where(ok[:, None], e, 0.0)  # the depthwise conv pads the expanded map with zeros
                wd = tl.load(wd_ptr + (hi * K + dy) * K + dx, mask=hm, other=0.0).to(tl.float32)
                d += e * wd[None, :]
        d += tl.load(bd_ptr + hi, mask=hm, other=0.0).to(tl.float32)[None, :]
        d = _silu(d, FAST_SILU)
        w3t = tl.load(w3_ptr + c[None, :] * HID + hi[:, None], mask=hm[:, None] & cm[None, :], other=0.0)  # [BLOCK_H, BLOCK_C]
        acc += tl.dot(d.to(w3_ptr.dtype.element_ty), w3t)
    _project_out(acc, x_ptr, b3_ptr, out_ptr, p, pm, c, cm, C)


@triton.jit
def _mb_x(x_ptr, p, inimg, cx, C, DT: tl.constexpr):
    """A frame's input, channels cx of its pixels p ([HALO_P, len(cx)]; zeros off the image and past C), in DT."""
    return tl.load(x_ptr + (p * C)[:, None] + cx[None, :], mask=inimg[:, None] & (cx < C)[None, :], other=0.0).to(DT)


@triton.jit
def _mb_w1(w1_ptr, hi, cx, C, HID):
    """The expansion's weight [len(cx), BLOCK_H]: input channels cx, expanded channels hi (zeros past C and HID)."""
    return tl.load(w1_ptr + hi[None, :] * C + cx[:, None], mask=(cx < C)[:, None] & (hi < HID)[None, :], other=0.0)


@triton.jit
def _mb_w3(w3_ptr, hi, cx, C, HID):
    """The projection's weight [BLOCK_H, len(cx)]: expanded channels hi, output channels cx (zeros past HID and C)."""
    return tl.load(w3_ptr + cx[None, :] * HID + hi[:, None], mask=(hi < HID)[:, None] & (cx < C)[None, :], other=0.0)


@triton.jit
def _mbconv_staged_kernel(x_ptr, w1_ptr, b1_ptr, wd_ptr, bd_ptr, w3_ptr, b3_ptr, out_ptr, scratch_ptr, N, H, W, C, HID, TH, TW,
                          TILES_H, TILES_W, K: tl.constexpr, HALO_P: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr,
                          RELOAD_X: tl.constexpr, FAST_SILU: tl.constexpr, GATHER: tl.constexpr = False, DBUF: tl.constexpr = False,
                          PREFETCH: tl.constexpr = False, CB: tl.constexpr = 0):
    """MBConv over spatial tiles: each tile's frame (the tile and its halo) is expanded once, BLOCK_H channels at a time,
    into this program's scratch slot; the depthwise conv then reads the k² shifted neighbours from the slot. Programs are
    persistent (one slot each, reused tile after tile), so the scratch stays a few MB and is rewritten in L2. GATHER
    (config["dw_gather"]): no slot; each tap's neighbours are taken from the chunk itself with tl.gather along the
    pixels (Triton lowers it to warp shuffles or shared memory), so the expanded chunk never leaves the SM. DBUF
    (config["dw_dbuf"]): a slot twice the size, the chunks alternating between its halves, so a chunk's write need not
    wait for every thread to have read the previous chunk: one barrier a chunk instead of two. PREFETCH
    (config["dw_prefetch"]): each chunk loads the next chunk's weights into registers right after its expansion, a
    pipeline by hand (the pipeliner is kept off, num_stages 1, so that it moves no read of the slot above its barrier).
    CB > 0 (config["two_parts"]): the channels as two parts, BLOCK_C + CB (`layout.channel_parts`: 48 = 32 + 16, no
    padding to 64), each its own tensor: the expansion two chained dots, the projection two accumulators (run 30f on
    the H200: slower at every width, c48 0.4531 against 0.3589 ms, c384 0.3603 against 0.2767; not a default)."""
    R: tl.constexpr = K // 2
    TWO: tl.constexpr = CB > 0
    DT = w1_ptr.dtype.element_ty
    FW = TW + 2 * R  # frame width: frame pixel i sits at row i // FW, column i % FW
    i = tl.arange(0, HALO_P)
    fy = i // FW
    fx = i % FW
    in_frame = fy < TH + 2 * R
    inner = (fy >= R) & (fy < TH + R) & (fx >= R) & (fx < TW + R)  # the tile proper: the pixels this program writes
    c = tl.arange(0, BLOCK_C)
    cm = c < C
    if TWO:
        cb = BLOCK_C + tl.arange(0, CB)
    j = tl.arange(0, BLOCK_H)
    slot = scratch_ptr + tl.program_id(0) * ((1 + DBUF) * HALO_P * BLOCK_H)
    per_img = TILES_H * TILES_W
    for t in range(tl.program_id(0), N * per_img, tl.num_programs(0)):
        n = t // per_img
        gh = (t % per_img) // TILES_W * TH + fy - R
        gw = (t % per_img) % TILES_W * TW + fx - R
        inimg = in_frame & (gh >= 0) & (gh < H) & (gw >= 0) & (gw < W)
        p = (n * H + gh) * W + gw
        if not RELOAD_X:
            xs = _mb_x(x_ptr, p, inimg, c, C, DT)
            if TWO:
                xb = _mb_x(x_ptr, p, inimg, cb, C, DT)
        acc = tl.zeros((HALO_P, BLOCK_C), dtype=tl.float32)
        if TWO:
            acc_b = tl.zeros((HALO_P, CB), dtype=tl.float32)
        if PREFETCH:  # the first chunk's weights; each chunk then loads the next one's
            w1n = _mb_w1(w1_ptr, j, c, C, HID)
            w3n = _mb_w3(w3_ptr, j, c, C, HID)
            if TWO:
                w1nb = _mb_w1(w1_ptr, j, cb, C, HID)
                w3nb = _mb_w3(w3_ptr, j, cb, C, HID)
        for h0 in range(0, HID, BLOCK_H):
            hi = h0 + j
            hm = hi < HID
            if RELOAD_X:  # the frame's input again each chunk (from L1/L2): fewer registers live across the loop
                xs = _mb_x(x_ptr, p, inimg, c, C, DT)
                if TWO:
                    xb = _mb_x(x_ptr, p, inimg, cb, C, DT)
            if PREFETCH:
                w1t, w3t = w1n, w3n
                if TWO:
                    w1b, w3b = w1nb, w3nb
            else:
                w1t = _mb_w1(w1_ptr, hi, c, C, HID)  # [BLOCK_C, BLOCK_H]
                if TWO:
                    w1b = _mb_w1(w1_ptr, hi, cb, C, HID)  # [CB, BLOCK_H]
            if TWO:
                e = tl.dot(xb, w1b, tl.dot(xs, w1t))
            else:
                e = tl.dot(xs, w1t)
            e += tl.load(b1_ptr + hi, mask=hm, other=0.0).to(tl.float32)[None, :]
            if PREFETCH:  # issued now, so the copies from L2 overlap this chunk's depthwise conv and projection
                w1n = _mb_w1(w1_ptr, hi + BLOCK_H, c, C, HID)
                w3n = _mb_w3(w3_ptr, hi + BLOCK_H, c, C, HID)
                if TWO:
                    w1nb = _mb_w1(w1_ptr, hi + BLOCK_H, cb, C, HID)
                    w3nb = _mb_w3(w3_ptr, hi + BLOCK_H, cb, C, HID)
            e = _silu(e, FAST_SILU)
            e = tl.where(inimg[:, None], e, 0.0)  # the depthwise conv pads the expanded map with zeros
            d = tl.zeros((HALO_P, BLOCK_H), dtype=tl.float32)
            if GATHER:
                eb = e.to(DT)  # rounded as the slot would hold it
                for dy in tl.static_range(K):
                    for dx in tl.static_range(K):
                        nb = tl.where(inner, i + (dy - R) * FW + (dx - R), i)  # inside the frame for every inner pixel
                        es = tl.gather(eb, nb[:, None] + tl.zeros((HALO_P, BLOCK_H), dtype=tl.int32), 0).to(tl.float32)
                        wd = tl.load(wd_ptr + (hi * K + dy) * K + dx, mask=hm, other=0.0).to(tl.float32)
                        d += es * wd[None, :]
            else:
                if DBUF:  # the chunks alternate between the slot's two halves
                    half = slot + ((h0 // BLOCK_H) % 2) * (HALO_P * BLOCK_H)
                else:
                    half = slot
                    tl.debug_barrier()  # every thread has read the previous chunk from the slot
                tl.store(half + i[:, None] * BLOCK_H + j[None, :], e.to(scratch_ptr.dtype.element_ty))
                tl.debug_barrier()  # the whole frame is in the slot before any thread reads its neighbours
                for dy in tl.static_range(K):
                    for dx in tl.static_range(K):
                        nb = i + (dy - R) * FW + (dx - R)  # inside the frame for every inner pixel
                        es = tl.load(half + nb[:, None] * BLOCK_H + j[None, :], mask=inner[:, None], other=0.0).to(tl.float32)
                        wd = tl.load(wd_ptr + (hi * K + dy) * K + dx, mask=hm, other=0.0).to(tl.float32)
                        d += es * wd[None, :]
            d += tl.load(bd_ptr + hi, mask=hm, other=0.0).to(tl.float32)[None, :]
            d = _silu(d, FAST_SILU).to(w3_ptr.dtype.element_ty)
            if not PREFETCH:
                w3t = _mb_w3(w3_ptr, hi, c, C, HID)  # [BLOCK_H, BLOCK_C]
                if TWO:
                    w3b = _mb_w3(w3_ptr, hi, cb, C, HID)  # [BLOCK_H, CB]
            acc = tl.dot(d, w3t, acc)
            if TWO:
                acc_b = tl.dot(d, w3b, acc_b)
        _project_out(acc, x_ptr, b3_ptr, out_ptr, p, inner & inimg, c, cm, C)
        if TWO:
            _project_out(acc_b, x_ptr, b3_ptr, out_ptr, p, inner & inimg, cb, cb < C, C)


@triton.jit
def _shift_rows(v, s, FH: tl.constexpr, FW: tl.constexpr, BH: tl.constexpr):
    """Rows of a frame moved on the tensor cores: v [FH·FW, BH] (frame rows of FW pixels), s [FH, FH] a 0/1 shift matrix;
    returns s · v with v as [FH, FW·BH], in fp32 (one product a value: exact)."""
    return tl.reshape(tl.dot(s, tl.reshape(v, (FH, FW * BH))), (FH * FW, BH))


@triton.jit
def _shift_cols(v, s, FH: tl.constexpr, FW: tl.constexpr, BH: tl.constexpr):
    """Columns of each frame row moved on the tensor cores: one batched dot of s [FH, FW, FW] (a 0/1 shift matrix a row)
    with v as [FH, FW, BH]; fp32, exact."""
    return tl.reshape(tl.dot(s, tl.reshape(v, (FH, FW, BH))), (FH * FW, BH))


@triton.jit
def _column_sum(wd, B: tl.constexpr, hm, row_a, row_b, row_c):
    """Σ_a wd[a, B]·row_a in fp32: the depthwise weights of column B (wd: this chunk's [hidden, 3, 3] weights, flat)
    applied to the rows above, at and below each pixel."""
    return (tl.load(wd + B, mask=hm, other=0.0).to(tl.float32)[None, :] * row_a
            + tl.load(wd + 3 + B, mask=hm, other=0.0).to(tl.float32)[None, :] * row_b
            + tl.load(wd + 6 + B, mask=hm, other=0.0).to(tl.float32)[None, :] * row_c)


@triton.jit
def _mbconv_shift_kernel(x_ptr, w1_ptr, b1_ptr, wd_ptr, bd_ptr, w3_ptr, b3_ptr, out_ptr, H, W, C, HID, TILES_H, TILES_W,
                         FH: tl.constexpr, FW: tl.constexpr, BLOCK_K: tl.constexpr, NK: tl.constexpr, BLOCK_CO: tl.constexpr,
                         BLOCK_H: tl.constexpr, FAST_SILU: tl.constexpr, RELOAD_X: tl.constexpr = False):
    """MBConv (3×3 depthwise) with its halo moved on the tensor cores: no scratch, no barrier of ours. A program takes a
    frame of FH × FW pixels (a tile of (FH − 2) × (FW − 2) and its one-pixel halo) and BLOCK_CO of the output channels
    (program_id(1)); for each chunk of BLOCK_H expanded channels it expands the frame (NK dots over BLOCK_K input channels
    each), then builds the depthwise conv from shifted copies of the chunk: the rows above and below (two dots with
    [FH, FH] shift matrices, exact), the three columns' weighted sums U_b = Σ_a wd[a, b]·row_a in fp32, and the left and
    right columns' sums moved sideways (two batched dots with [FW, FW] shift matrices, on U_b rounded to the weights'
    dtype). The frame's edge rows and columns take wrong neighbours; only the tile proper is written."""
    P: tl.constexpr = FH * FW
    DT = w1_ptr.dtype.element_ty
    per_img = TILES_H * TILES_W
    t = tl.program_id(0)
    n = t // per_img
    i = tl.arange(0, P)
    fy = i // FW
    fx = i % FW
    gh = (t % per_img) // TILES_W * (FH - 2) + fy - 1
    gw = (t % per_img) % TILES_W * (FW - 2) + fx - 1
    inimg = (gh >= 0) & (gh < H) & (gw >= 0) & (gw < W)
    inner = inimg & (fy >= 1) & (fy < FH - 1) & (fx >= 1) & (fx < FW - 1)
    p = (n * H + gh) * W + gw
    co = tl.program_id(1) * BLOCK_CO + tl.arange(0, BLOCK_CO)
    kk = tl.arange(0, BLOCK_K)
    j = tl.arange(0, BLOCK_H)
    r = tl.arange(0, FH)
    up = (r[None, :] == r[:, None] - 1).to(DT)  # row y takes row y − 1
    down = (r[None, :] == r[:, None] + 1).to(DT)  # row y takes row y + 1
    same = (r[None, :] == r[:, None]).to(DT)
    q = tl.arange(0, FW)
    left = tl.broadcast_to((q[None, :] == q[:, None] - 1).to(DT)[None, :, :], (FH, FW, FW))  # column x takes x − 1
    right = tl.broadcast_to((q[None, :] == q[:, None] + 1).to(DT)[None, :, :], (FH, FW, FW))  # column x takes x + 1
    KEEP_X: tl.constexpr = NK == 1 and not RELOAD_X  # the frame's input held across the chunks (RELOAD_X: from L1 each chunk)
    if KEEP_X:
        xs = _mb_x(x_ptr, p, inimg, kk, C, DT)
    acc = tl.zeros((P, BLOCK_CO), dtype=tl.float32)
    for h0 in range(0, HID, BLOCK_H):
        hi = h0 + j
        hm = hi < HID
        e = tl.zeros((P, BLOCK_H), dtype=tl.float32)
        for kc in tl.static_range(NK):
            if not KEEP_X:  # the frame's input again each chunk (from L1): a [P, C] tile would not fit beside the accumulator
                xs = _mb_x(x_ptr, p, inimg, kc * BLOCK_K + kk, C, DT)
            e = tl.dot(xs, _mb_w1(w1_ptr, hi, kc * BLOCK_K + kk, C, HID), e)
        e += tl.load(b1_ptr + hi, mask=hm, other=0.0).to(tl.float32)[None, :]
        e = _silu(e, FAST_SILU)
        eb = tl.where(inimg[:, None], e, 0.0).to(DT)  # the depthwise conv pads the expanded map with zeros
        rows_a = _shift_rows(eb, up, FH, FW, BLOCK_H)  # e[y − 1, x]
        rows_c = _shift_rows(eb, down, FH, FW, BLOCK_H)  # e[y + 1, x]
        rows_b = _shift_rows(eb, same, FH, FW, BLOCK_H)  # e itself, through the same dot: in the layout of the other two rows
        wd = wd_ptr + hi * 9
        d = _column_sum(wd, 1, hm, rows_a, rows_b, rows_c)  # U_1[y, x]
        d += _shift_cols(_column_sum(wd, 0, hm, rows_a, rows_b, rows_c).to(DT), left, FH, FW, BLOCK_H)  # U_0[y, x − 1]
        d += _shift_cols(_column_sum(wd, 2, hm, rows_a, rows_b, rows_c).to(DT), right, FH, FW, BLOCK_H)  # U_2[y, x + 1]
        d += tl.load(bd_ptr + hi, mask=hm, other=0.0).to(tl.float32)[None, :]
        d = _silu(d, FAST_SILU).to(w3_ptr.dtype.element_ty)
        acc = tl.dot(d, _mb_w3(w3_ptr, hi, co, C, HID), acc)
    _project_out(acc, x_ptr, b3_ptr, out_ptr, p, inner, co, co < C, C)


@triton.jit
def _conv_act_kernel(x_ptr, w_ptr, b_ptr, out_ptr, NPIX, H, W, HO, WO, CIN, COUT, sxn, sxc, sxh, sxw,
                     K: tl.constexpr, STRIDE: tl.constexpr, PAD: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr,
                     BLOCK_CO: tl.constexpr, ACT: tl.constexpr, FAST_SILU: tl.constexpr):
    """A dense k×k conv on few input channels (an image network's stem) with its folded BatchNorm and activation, as one
    im2col dot: each program gathers its BLOCK_P output pixels' k×k×CIN inputs as [BLOCK_P, BLOCK_K] (column
    (dy·K + dx)·CIN + c, any input strides: NCHW or channels-last), multiplies by the [BLOCK_K, BLOCK_CO] weight
    (`layout.im2col_weight`), adds the bias, applies ACT (0 none, 1 SiLU, 2 ReLU) and stores NHWC."""
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    pm = p < NPIX
    n = p // (HO * WO)
    h0 = (p % (HO * WO)) // WO * STRIDE - PAD  # the window's top-left input pixel
    w0 = p % WO * STRIDE - PAD
    j = tl.arange(0, BLOCK_K)
    ci = j % CIN
    dy = (j // CIN) // K
    dx = (j // CIN) % K
    hh = h0[:, None] + dy[None, :]
    ww = w0[:, None] + dx[None, :]
    ok = pm[:, None] & (j < CIN * K * K)[None, :] & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
    # a pixel's offset plus a column's: one add an element
    base = n * sxn + h0 * sxh + w0 * sxw
    xs = tl.load(x_ptr + base[:, None] + (ci * sxc + dy * sxh + dx * sxw)[None, :], mask=ok, other=0.0)
    co = tl.arange(0, BLOCK_CO)
    com = co < COUT
    wt = tl.load(w_ptr + j[:, None] * BLOCK_CO + co[None, :])
    acc = tl.dot(xs.to(w_ptr.dtype.element_ty), wt)
    acc += tl.load(b_ptr + co, mask=com, other=0.0).to(tl.float32)[None, :]
    if ACT == 1:
        acc = _silu(acc, FAST_SILU)
    elif ACT == 2:
        acc = tl.maximum(acc, 0.0)
    tl.store(out_ptr + (p * COUT)[:, None] + co[None, :], acc.to(out_ptr.dtype.element_ty), mask=pm[:, None] & com[None, :])


last_launch: dict = {}  # kernel name -> {"config", "n_regs", "n_spills", "shared_bytes", "wgmma", "mma_sync"} of its latest compiled launch


SPLIT_CHUNK = 64  # expanded channels a chunk in `auto_split_h`'s rule, and the chunk a launch it splits takes


def auto_split_h(tiles: int, chunks: int, sms: int) -> int:
    """The ConvFirst kernel's split of the expanded channels when the config names none: 8 ways where the launch has at
    most a quarter as many pixel tiles as the device has SMs and at least 24 chunks of expanded channels, else none.
    Run 30h (H200, batch 1, ms, the default against split_h 8): c384 (2 tiles, 24 chunks) 0.0694 against 0.0345; with
    12 chunks it lost at c192 (0.0338 against 0.0355) and c96>192/s2 (0.0232 against 0.0353) but won at c192>384/s2
    (0.0355 against 0.0326), which this rule leaves unsplit: each split repeats the grouped conv and adds two fill
    kernels and the atomics, which a short chain does not reliably repay. At batch 64 every shape has 49 tiles or more,
    so none splits there (run 30i: batch 1 c384 0.0352, the network 0.312 against 0.347 ms)."""
    return 8 if 4 * tiles <= sms and chunks >= 24 else 1


def default_config(kind: str, c: int, hidden: int, halo: str = "staged", stride: int = 1, c_in: int | None = None) -> dict:
    """Tiles for a block of width c, from the tile search on the H200 (benchmarks/results/h200/kernels/):
    ConvFirst (c the wider of its input and output; run 15, the kernel with two channel parts) up to 64 channels: the
    dense grouped conv with its taps a loop four stages deep (runs 24-25), 64 pixels, 32 expanded channels, 4 warps, the
    SiLU in bf16x2 (run 20); up to 128: the loop three deep (the unrolled taps at stride 2, run 24), 128 pixels, 32, 8
    warps (on three parts at stride 1, c96: 64 pixels on 4 warps, run 35); up to 256: the loop three deep, 128 pixels,
    64 expanded channels, 8 warps, two stages (three on three parts at stride 1, run 29c); wider: the pairs, 32 pixels,
    128 expanded channels, 8 warps, two stages (run 31e; the H200 has 227 KB of shared memory a program), but at stride 2
    on three parts the loop three deep, 64 expanded channels, three stages.
    Given the input width c_in, three input parts where `layout.default_three_parts` says they were measured faster. MBConv with its halo recomputed (halo="recompute"): 32 expanded channels, one
    stage, 16 pixels (32 at 128 channels of tile): at 32 pixels, 64 expanded channels and three stages a 256-channel tile
    asked for 283 KB of shared memory. MBConv with its halo staged (the default): frames of halo_p pixels such that the
    fp32 output accumulator [halo_p, channel tile] is 64 KB (64 registers a thread at 8 warps), at least 64 pixels (at
    7x7 a 32-pixel frame holds a 3x4 tile, 3.9x the pixels computed against 2.6x at 64: 1.32 against 0.43 ms in run 4), one stage (the pipeliner
    must not move a read of the scratch slot above the barrier after its write), two persistent programs an SM; at 64
    channels of tile the next chunk's weights prefetched, at 256 the neighbours by tl.gather with two stages (run 30c)."""
    bc = block_c_of(c)
    bh = lambda n: min(n, block_c_of(hidden))  # noqa: E731
    if kind == "mbconv" and halo == "shift":  # run 33b (H200, batch 64, ms): 32 expanded channels a chunk at 64 and 256 channels
        # of tile (c48 0.2148 against 0.2513 with 16; c192 0.1501 against 0.1555, 52 spills), 16 at 128 (c96 0.1428 against
        # 0.1474); 16 warps (128 registers a thread), two stages and the input reloaded each chunk were no faster; run 33e:
        # at 256 two stages (c192 0.1447 against 0.1505), and a third output-channel group of 64 is slower (0.2452)
        return {"halo": "shift", "frame_h": 16, "block_h": 32 if bc in (64, 256) else 16, "num_warps": 8, "num_stages": 2 if bc == 256 else 1}
    if kind == "mbconv" and halo == "recompute":  # run 3: 16 pixels at 64 channels of tile (0.62 ms against 0.66 at 32 x 64), 32 at 128 (0.43 against 0.51)
        return {"halo": "recompute", "block_p": 32 if bc == 128 else 16, "block_h": bh(32), "num_warps": 4, "num_stages": 1}
    if kind == "mbconv":  # run 4: 256 / 128 / 64 / 64 frame pixels at 64 / 128 / 256 / 512 channels of tile (at 512, 32 took 1.32 ms, 64 0.43);
        # run 6: 16 expanded channels a chunk at 64 and 512 (0.435 against 0.473 ms, 0.324 against 0.427), 32 at 128 and 256
        # run 30c (H200, batch 64, ms against the slot and no prefetch in the same process): at 64 channels of tile the
        # next chunk's weights prefetched (0.3563 against 0.3676); at 256 the neighbours by tl.gather, which needs no
        # slot and so lets the pipeliner run two stages (0.2578 against 0.3000); at 128 and 512 neither won by 2 %
        # (c96 prefetch 0.2678 against 0.2714; c384 gather 0.3392 against 0.2840)
        cfg = {"halo": "staged", "halo_p": max(64, 16384 // bc), "block_h": bh(16 if bc in (64, 512) else 32), "num_warps": 8, "num_stages": 1,
               "programs_per_sm": 2}
        if bc == 64:
            cfg["dw_prefetch"] = True
        elif bc == 256:
            cfg.update(dw_gather=True, num_stages=2)
        return cfg
    # run 10: the dense grouped conv beat the pairs at every width it was tried (<= 128 channels of tile): 0.107 against
    # 0.122 ms (48), 0.086 against 0.092 (96, with 64 expanded channels a chunk), 0.072 against 0.078 (32 > 48, stride 2),
    # 0.045 against 0.052 (48 > 96, stride 2)
    # up to 64 channels, run 15 (two channel parts): 0.084 ms at 48 channels against 0.091 on 8 warps / 128 pixels; run
    # 20: the SiLU in bf16x2, 0.0840 against 0.0875 ms at c48 and 0.0651 against 0.0663 at c32>48/s2 (the same at 96-384
    # channels, slower at c48>96/s2: 0.0411 against 0.0330, so wider tiles keep fp32)
    # run 24: the dense grouped conv's taps as a loop pipelined three deep (asynchronous copies into shared memory): batch
    # 64, ms against the unrolled taps in the same process: c32>48/s2 0.0540 against 0.0666, c48 0.0734 against 0.0865, c96
    # 0.0509 against 0.0592, c96>192/s2 0.0241 against 0.0276, c192 0.0412 against 0.0477; two deep gained less (0.0584,
    # 0.0828, 0.0593, 0.0268, 0.0449); slower only at c48>96/s2 (0.0382 against 0.0331), which keeps the unrolled taps
    # run 25: four deep at 64 channels of tile (c32>48/s2 0.0529 against 0.0545, c48 0.0728 against 0.0749); at 128 and
    # 256 four deep gained nothing (c96 0.0505 against 0.0511, c96>192/s2 0.0240 against 0.0238) or did not fit (c192:
    # 256 KB of shared memory)
    loop = {"group_conv": "dense_loop", "tap_stages": 3}
    three = {"three_parts": True} if c_in is not None and default_three_parts(c_in, c, stride) else {}
    if bc <= 64:
        return {**loop, "tap_stages": 4, "block_p": 64, "block_h": bh(32), "num_warps": 4, "num_stages": 3, "packed_silu": True, **three}
    if bc <= 128:  # run 15: 32 expanded channels a chunk, 0.059 ms at 96 against 0.082 with 64
        if stride == 1 and three:  # run 35: c96 on three parts, 64 pixels on 4 warps, 0.0448 ms against 0.0478 with 128 on 8
            # (IQRs <= 0.0009; mlp_ceiling.py had found that tile the fastest for the expansion chain alone at 128 channels, 28²)
            return {**loop, "block_p": 64, "block_h": bh(32), "num_warps": 4, "num_stages": 3, **three}
        return {**(loop if stride == 1 else {"group_conv": "dense"}), "block_p": 128, "block_h": bh(32), "num_warps": 8, "num_stages": 3, **three}
    if bc <= 256:  # run 15: 128 pixels, two stages, 0.0505 ms at 192 against 0.066 at 64 pixels (26 spills, still faster);
        # run 17: the dense grouped conv, 0.0476 against 0.0505 with the pairs (0 spills against 26)
        # run 29c: on three parts (c192) the hidden loop three stages deep, 0.0350 ms against 0.0366 with two (Nsight
        # Compute's sampling had put c192's largest stall on the barrier after the weights' copies); not at stride 2
        # (c96>192/s2: 0.0251 against 0.0238)
        return {**loop, "block_p": 128, "block_h": bh(64), "num_warps": 8, "num_stages": 3 if three and stride == 1 else 2, **three}
    # run 15: 32 pixels, three stages (225 KB of shared memory; 64 pixels with 64 expanded channels asked for 246 KB), 0.071 ms at 384
    if three:
        return {**loop, "block_p": 32, "block_h": bh(64), "num_warps": 8, "num_stages": 3, **three}
    # run 31e: on the pairs (c384) 128 expanded channels a chunk, two stages (229,632 B of shared memory): half the chunks,
    # each chunk's waits paid 12 times instead of 24 (0.0660 against 0.0706 ms; 32 a chunk: 0.106)
    return {"group_conv": "pairs", "block_p": 32, "block_h": bh(128), "num_warps": 8, "num_stages": 2}


def _record(kernel, handle, cfg: dict) -> None:
    """Keep a compiled launch's registers, spills, shared memory and tensor-core instructions in `last_launch`."""
    if handle is not None and hasattr(handle, "n_regs"):  # a compiled launch (None in the interpreter)
        ptx = (getattr(handle, "asm", None) or {}).get("ptx", "")
        last_launch[kernel.fn.__name__] = {"config": cfg, "n_regs": handle.n_regs, "n_spills": handle.n_spills,
                                           "shared_bytes": getattr(handle.metadata, "shared", None),
                                           # which tensor-core instructions Triton emitted: Hopper's wgmma or Ampere-style mma
                                           "wgmma": "wgmma" in ptx if ptx else None, "mma_sync": "mma.sync" in ptx if ptx else None}


def _output(shape, like: torch.Tensor) -> torch.Tensor:
    """A kernel's output buffer: uninitialised on the GPU (the kernel writes all of it); filled with NaN on the CPU, where
    only Triton's interpreter runs, the checks' path, so that a tile a kernel never writes shows as wrong instead of
    passing on the memory of an earlier correct output of the same size (a benchmark's check once passed that way in CI)."""
    if like.is_cuda:
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    return torch.full(shape, float("nan"), dtype=like.dtype, device=like.device)


def _nhwc(x):
    """The NHWC view of an NCHW tensor (free for channels-last memory, a copy otherwise)."""
    return x.permute(0, 2, 3, 1).contiguous()


def _launch(kernel, x, weights: tuple, hidden: int, cfg: dict, **constexprs) -> torch.Tensor:
    """Run a block kernel over every pixel of `x` (NCHW; channels-last memory preferred), cfg["block_p"] pixels a
    program; returns channels-last NCHW."""
    n, c, hgt, wid = x.shape
    xh = _nhwc(x)
    out = _output(xh.shape, xh)
    npix = n * hgt * wid
    handle = kernel[(triton.cdiv(npix, cfg["block_p"]),)](xh, *weights, out, npix, hgt, wid, c, hidden, BLOCK_P=cfg["block_p"],
                                                          BLOCK_C=block_c_of(c), BLOCK_H=cfg["block_h"], num_warps=cfg["num_warps"],
                                                          num_stages=cfg["num_stages"],
                                                          **constexprs)
    _record(kernel, handle, {**cfg, **constexprs})
    return out.permute(0, 3, 1, 2)


MAX_ACC = 32768  # the staged MBConv kernel's largest fp32 output accumulator, values (128 KB: 128 registers a thread at 8 warps)


def _sm_count(x) -> int:
    return torch.cuda.get_device_properties(x.device).multi_processor_count if x.is_cuda else 1


def _launch_mbconv_staged(x, weights: tuple, hidden: int, k: int, cfg: dict) -> torch.Tensor:
    """The staged MBConv kernel: spatial tiles from `halo_tiles`, one persistent program per scratch slot."""
    n, c, hgt, wid = x.shape
    th, tw, halo_p = halo_tiles(hgt, wid, k, cfg["halo_p"])
    if cfg.get("two_parts"):
        ca, cb = channel_parts(c)
        if ca + cb >= block_c_of(c):
            raise ValueError(f"mbconv: two_parts needs a width that two power-of-two parts hold with less padding than one tile "
                             f"(48, 96, 192, 384: 3·2^k); {c} is held by {block_c_of(c)} either way")
    else:
        ca, cb = block_c_of(c), 0
    if halo_p * (ca + cb) > MAX_ACC:
        raise ValueError(f"mbconv: a {halo_p}-pixel frame at {ca + cb} channels of tile is a {halo_p * (ca + cb)}-value fp32 accumulator, "
                         f"more than {MAX_ACC} (on the H200 one of 65,536 crashed with an illegal memory access, run 6): take halo_p <= {max(16, MAX_ACC // (ca + cb))}")
    xh = _nhwc(x)
    out = _output(xh.shape, xh)
    tiles_h, tiles_w = triton.cdiv(hgt, th), triton.cdiv(wid, tw)
    programs = min(n * tiles_h * tiles_w, _sm_count(x) * cfg["programs_per_sm"])
    gather, dbuf = bool(cfg.get("dw_gather", False)), bool(cfg.get("dw_dbuf", False))
    if gather and dbuf:
        raise ValueError("mbconv: dw_gather and dw_dbuf exclude each other (dw_dbuf doubles the scratch slot that dw_gather does without)")
    if cfg["num_stages"] > 1 and not gather:
        raise ValueError(f"mbconv: num_stages={cfg['num_stages']} needs dw_gather: with the scratch slot the pipeliner could move a read of "
                         "the slot above the barrier after its write (take num_stages=1, or dw_gather=True)")
    scratch = torch.empty(1 if gather else (1 + dbuf) * programs * halo_p * cfg["block_h"], dtype=weights[0].dtype, device=x.device)
    kernel = _mbconv_staged_kernel
    handle = kernel[(programs,)](xh, *weights, out, scratch, n, hgt, wid, c, hidden, th, tw, tiles_h, tiles_w, K=k, HALO_P=halo_p,
                                 BLOCK_C=ca, BLOCK_H=cfg["block_h"], RELOAD_X=bool(cfg.get("reload_x", False)), FAST_SILU=_fast_silu(x, cfg), GATHER=gather, DBUF=dbuf,
                                 PREFETCH=bool(cfg.get("dw_prefetch", False)), CB=cb, num_warps=cfg["num_warps"],
                                 num_stages=cfg["num_stages"])
    _record(kernel, handle, {**cfg, "K": k, "tile": [th, tw], "halo_p_used": halo_p, "programs": programs})
    return out.permute(0, 3, 1, 2)


def _fast_silu(x, cfg: dict, packed: bool = False) -> int:
    """`_silu`'s FAST: config["fast_silu"] (default on) 1, and config["packed_silu"] 2 (the bf16x2 form; off unless the
    config asks, as `default_config` does for the ConvFirst tiles up to 64 channels) where the launch allows it
    (packed: a kernel that takes its SiLU in bf16, on bf16 data: an fp16 or fp32 run keeps its own precision); on CUDA
    only: the interpreter runs the exact form (0)."""
    if not (bool(cfg.get("fast_silu", True)) and x.is_cuda):
        return 0
    return 2 if packed and cfg.get("packed_silu", False) else 1


def _refuse_unknown_keys(kernel: str, config: dict, keys: tuple) -> None:
    """A config key the launcher does not know is an error naming it and the valid keys, not a silent default."""
    unknown = sorted(set(config) - set(keys))
    if unknown:
        raise ValueError(f"{kernel}: unknown config key(s) {', '.join(unknown)}; the keys are {', '.join(keys)}")


GROUP_CONVS = ("pairs", "dense", "fma", "dense_loop", "dense_tma")  # the grouped conv's ways, GROUP_CONV 1, 2, 0, 10 + and 20 + tap_stages
CONVFIRST_KEYS = ("group_conv", "group_mma", "block_p", "block_h", "num_warps", "num_stages", "split_h", "parts", "fast_silu", "one_part",
                  "packed_silu", "tap_stages", "three_parts", "join_parts", "swap_ab", "tma_store")


def _tma_scratch(size: int, alignment: int, stream):
    """Global memory for the tensor descriptors a kernel makes on the device (Triton asks for it at launch)."""
    return torch.empty(size, dtype=torch.int8, device="cuda")


def _check_tma(x, c: int, stride: int) -> None:
    """The tap loop's tensor-descriptor gather ("dense_tma"): stride 1 only (a tap's rows are consecutive there), and
    rows of a 16-byte multiple (a descriptor's strides must be); on CUDA it sets Triton's allocator for the descriptors."""
    if stride != 1:
        raise ValueError(f"convfirst: group_conv='dense_tma' needs stride 1 (a tap's inputs are consecutive rows only there), got stride {stride}")
    if (c * x.element_size()) % 16:
        raise ValueError(f"convfirst: group_conv='dense_tma' needs rows of a multiple of 16 bytes; {c} channels of {x.element_size()} bytes are "
                         f"{c * x.element_size()}")
    if x.is_cuda:
        triton.set_allocator(_tma_scratch)


def convfirst(x, w1, b1, w2, b2, w3, b3, group_width: int, w1bd: torch.Tensor | None = None, config: dict | None = None,
              group_mma: bool | None = None, stride: int = 1, ws: torch.Tensor | None = None, bs: torch.Tensor | None = None,
              w1dense: torch.Tensor | None = None) -> torch.Tensor:
    """The fused ConvFirst block on an NCHW tensor (channels-last memory preferred); returns channels-last NCHW.
    The channels are held as the two parts of `layout.channel_parts` (48 = 32 + 16, ...: no padding to a power of two).
    config["group_conv"] picks the grouped conv: "pairs" (tensor cores, w1bd = `block_diagonal_pairs(w1, a + b)`),
    "dense" (tensor cores, w1dense = `block_diagonal_dense_parts(w1, (a, b))`) or "fma" (CUDA cores; also
    group_mma=False or config["group_mma"]=False); a weight layout not given is made here. config["split_h"] > 1 splits
    the expanded channels across programs (partial outputs summed in an fp32 buffer). A strided or width-changing block
    gives `stride` and its shortcut's folded 1x1 conv (ws [C_out, C], bs); without ws the residual is the input (stride 1,
    C_out = C)."""
    n, c, hgt, wid = x.shape
    c_out = w3.shape[0]
    if ws is None and (stride != 1 or c_out != c):
        raise ValueError(f"convfirst: stride {stride} from {c} to {c_out} channels needs the shortcut's conv (ws, bs)")
    config = dict(config or {})
    # split_out (the output channels across programs) was slower at every width in run 9, and is gone
    _refuse_unknown_keys("convfirst", config, CONVFIRST_KEYS)
    mma = config.pop("group_mma", True) if group_mma is None else group_mma
    if not mma:  # the older switch: False is the CUDA-core grouped conv
        config["group_conv"] = "fma"
    cfg = {**default_config("convfirst", max(c, c_out), w2.shape[0], stride=stride, c_in=c), **config}
    mode = cfg.pop("group_conv", "pairs")
    k = w1.shape[-1]
    if mode not in GROUP_CONVS:
        raise ValueError(f"convfirst: group_conv={mode!r} is not one of {', '.join(GROUP_CONVS)}")
    if cfg.get("one_part") and (c != block_c_of(c) or cfg.get("parts", 3) != 3):
        raise ValueError(f"convfirst: one_part needs a power-of-two input width of at least 16 (got {c}) and the whole block (parts=3)")
    # the input channels as one part (a power-of-two width: at 32 one dot with K = 32 where two parts of 16 take two with
    # K = 16, though the dense grouped conv then costs 32² MACs a tap instead of 2·16²) or two; the output always two
    if config.get("three_parts") and (config.get("parts", 3) != 3 or config.get("one_part")):
        raise ValueError("convfirst: three_parts needs the whole block (parts=3) and not one_part")
    try:  # from the config asked for: the default's three parts yield to one_part or an ablation
        in_parts = kernel_input_parts(c, max(c, c_out), stride, config)
    except ValueError as e:
        raise ValueError(f"convfirst: {e}") from None
    cfg["three_parts"] = len(in_parts) == 3
    if cfg.get("join_parts") and not cfg["three_parts"]:
        raise ValueError(f"convfirst: join_parts needs three input parts (three_parts, a width of 3·p); this launch takes {len(in_parts)}: {in_parts}")
    (ca, cb, cc), (oa, ob) = (*in_parts, 0)[:3], channel_parts(c_out)
    dense_n = k * k * sum(q * q for q in in_parts)
    dense = lambda: w1dense if w1dense is not None and w1dense.numel() == dense_n else block_diagonal_dense_parts(w1, in_parts)  # noqa: E731
    wg = {"pairs": lambda: w1bd if w1bd is not None else block_diagonal_pairs(w1, ca + cb + cc),
          "dense_loop": dense, "dense_tma": dense, "dense": dense, "fma": lambda: w1}[mode]()
    # the kernel reads its weights by flat row-major offsets: a re-laid one (a channels-last model's 4-D buffers) is
    # copied back here rather than read wrong (the fused modules keep theirs row-major, so this is free for them)
    wg, w2, w3 = wg.contiguous(), w2.contiguous(), w3.contiguous()
    ws = ws.contiguous() if ws is not None else None
    split_h, parts, tap_stages = cfg.get("split_h"), cfg.get("parts", 3), cfg.get("tap_stages", 2)
    if mode == "dense_tma":
        _check_tma(x, c, stride)
    if cfg.get("tma_store"):
        if (c_out * x.element_size()) % 16:
            raise ValueError(f"convfirst: tma_store needs output rows of a multiple of 16 bytes; {c_out} channels of {x.element_size()} bytes "
                             f"are {c_out * x.element_size()}")
        if x.is_cuda:
            triton.set_allocator(_tma_scratch)
    if mode in ("dense_loop", "dense_tma") and tap_stages not in (1, 2, 3, 4):
        raise ValueError(f"convfirst: tap_stages={tap_stages} must be 1-4 (the tap loop's pipeline depth)")
    if split_h is not None and split_h < 1:
        raise ValueError(f"convfirst: split_h={split_h} must be at least 1")
    if split_h is not None and split_h > 1 and parts in (0, 1):  # each split would add the same unexpanded tile
        raise ValueError(f"convfirst: split_h={split_h} splits the expanded channels, which parts={parts} (an ablation without the expansion) does not have")
    if cfg.get("swap_ab") and parts in (0, 1):
        raise ValueError(f"convfirst: swap_ab transposes the expansion's dots, which parts={parts} (an ablation without the expansion) does not have")
    if parts not in (0, 1, 2, 3) or (parts < 2 and ws is not None):
        raise ValueError(f"convfirst: parts={parts} must be 3 (the block), or 0-2 (an ablation) for a stride-1, equal-width block")
    ho, wo = (hgt - 1) // stride + 1, (wid - 1) // stride + 1  # padding k // 2
    xh = _nhwc(x)
    out = _output((n, ho, wo, c_out), x)
    npix = n * ho * wo
    tiles = triton.cdiv(npix, cfg["block_p"])
    if split_h is None:  # few tiles and a long chain of expanded channels: split it (`auto_split_h`; not an ablation's launch)
        # the chain counted in chunks of 64, the unit the rule was measured in (run 30h)
        split_h = auto_split_h(tiles, triton.cdiv(w2.shape[0], SPLIT_CHUNK), _sm_count(x)) if parts == 3 else 1
        if split_h > 1 and "block_h" not in config and cfg["block_h"] > SPLIT_CHUNK:
            # a split launch takes the tile run 30h measured split (64 a chunk, three stages): c384's default since run
            # 31, 128 a chunk, would give each of 8 splits 1.5 chunks (12 in all); what the caller named is kept
            cfg["block_h"] = SPLIT_CHUNK
            if "num_stages" not in config:
                cfg["num_stages"] = 3
    if split_h > 1:  # the partial sums and each tile's count of finished splits, zeroed
        part = torch.zeros(npix * c_out, dtype=torch.float32, device=x.device)
        count = torch.zeros(tiles, dtype=torch.int32, device=x.device)
    else:  # unused (SPLIT_H = 1 compiles that branch out): no buffers, no fill kernels (two a block in run 11's profile)
        part = count = out
    kernel = _convfirst_kernel
    handle = kernel[(tiles, split_h)](
        xh, wg, b1, w2, b2, w3, b3, ws if ws is not None else w3, bs if bs is not None else b3, out, part, count, npix, hgt, wid, ho, wo,
        c, c_out, w2.shape[0], K=k, GW=group_width, GROUP_CONV={"fma": 0, "pairs": 1, "dense": 2, "dense_loop": 10 + tap_stages, "dense_tma": 20 + tap_stages}[mode], BLOCK_P=cfg["block_p"], CA=ca, CB=cb,
        OA=oa, OB=ob, BLOCK_H=cfg["block_h"], STRIDE=stride, SHORTCUT=ws is not None, SPLIT_H=split_h, PARTS=parts, SC_A=min(ca, 64),
        SC_B=min(cb, 64) or 16, CC=cc, JOIN_AB=bool(cfg.get("join_parts")), SWAP=bool(cfg.get("swap_ab")), TMA_STORE=bool(cfg.get("tma_store")), FAST_SILU=_fast_silu(x, cfg, packed=w3.dtype == torch.bfloat16), num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"])
    _record(kernel, handle, {**cfg, "K": k, "GW": group_width, "group_conv": mode, "STRIDE": stride, "SHORTCUT": ws is not None,
                             "channel_parts": list(in_parts), "out_parts": [oa, ob], "split_h": split_h})
    return out.permute(0, 3, 1, 2)


HALO_MODES = ("staged", "recompute", "shift")


MBCONV_KEYS = ("halo", "halo_p", "block_p", "block_h", "num_warps", "num_stages", "programs_per_sm", "fast_silu", "reload_x", "dw_gather",
               "dw_dbuf", "dw_prefetch", "two_parts", "frame_h", "block_k", "block_co", "maxnreg")
FRAME_W = 16  # the shift kernel's frame width: a tensor-core dot's side is at least 16, and 14-wide tiles divide 56, 28, 14


def _shift_grid(n: int, c: int, h: int, w: int, frame_h: int = 16, block_co: int | None = None) -> tuple[int, int, int, int]:
    """The shift kernel's launch over an n × c × h × w input: (tiles down, tiles across, output channels a program,
    output-channel groups). A frame_h × FRAME_W frame computes a tile two smaller each way; block_co defaults to the
    widest channel tile whose fp32 accumulator [frame, block_co] fits MAX_ACC."""
    block_co = block_co or min(block_c_of(c), MAX_ACC // (frame_h * FRAME_W))
    return triton.cdiv(h, frame_h - 2), triton.cdiv(w, FRAME_W - 2), block_co, triton.cdiv(c, block_co)


def _launch_mbconv_shift(x, weights: tuple, hidden: int, k: int, cfg: dict) -> torch.Tensor:
    """The shift MBConv kernel: frames of frame_h × 16 pixels (tiles two smaller each way), one program a frame and
    block_co output channels; the input channels in chunks of block_k."""
    if k != 3:
        raise ValueError(f"mbconv: halo='shift' is written for a 3x3 depthwise conv, got {k}x{k}; take halo='staged'")
    n, c, hgt, wid = x.shape
    fh = cfg.get("frame_h", 16)
    if fh < 16 or fh & (fh - 1):
        raise ValueError(f"mbconv: frame_h={fh} must be a power of two of at least 16 (a row shift is a [frame_h, frame_h] dot)")
    bk = cfg.get("block_k") or min(block_c_of(c), 64)
    tiles_h, tiles_w, bco, groups = _shift_grid(n, c, hgt, wid, fh, cfg.get("block_co"))
    for name, v in (("block_k", bk), ("block_co", bco)):
        if v < 16 or v & (v - 1):
            raise ValueError(f"mbconv: {name}={v} must be a power of two of at least 16")
    if fh * FRAME_W * bco > MAX_ACC:
        raise ValueError(f"mbconv: a {fh}x{FRAME_W} frame at {bco} output channels is a {fh * FRAME_W * bco}-value fp32 accumulator, more "
                         f"than {MAX_ACC}: take block_co <= {MAX_ACC // (fh * FRAME_W)}")
    xh = _nhwc(x)
    out = _output(xh.shape, xh)
    kernel = _mbconv_shift_kernel
    handle = kernel[(n * tiles_h * tiles_w, groups)](
        xh, *weights, out, hgt, wid, c, hidden, tiles_h, tiles_w, FH=fh, FW=FRAME_W, BLOCK_K=bk, NK=triton.cdiv(c, bk), BLOCK_CO=bco,
        BLOCK_H=cfg["block_h"], FAST_SILU=_fast_silu(x, cfg), RELOAD_X=bool(cfg.get("reload_x", False)), num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"], **({"maxnreg": cfg["maxnreg"]} if cfg.get("maxnreg") else {}))
    _record(kernel, handle, {**cfg, "frame": [fh, FRAME_W], "block_k": bk, "block_co": bco})
    return out.permute(0, 3, 1, 2)


SHIFT_MIN_PROGRAMS = 16  # the fewest programs (frames x output-channel groups) for which `default_halo` takes the shift kernel


def default_halo(c: int, k: int, n: int, h: int, w: int) -> str:
    """How `mbconv` gets the depthwise conv's neighbours when the config names no halo: "shift" for a 3x3 conv on up to
    256 channels of tile over a map at least 14 pixels each way (16x16 frames of 14x14 tiles) whose launch has at least
    SHIFT_MIN_PROGRAMS programs, else "staged". Run 33b (H200, batch 64, ms, shift against staged): c48 at 56² 0.2148
    against 0.3564, c96 at 28² 0.1428 against 0.2685, c192 at 14² 0.1501 against 0.2553; c384 at 7² (its 49 pixels in a
    256-pixel frame) 0.8265 against 0.2766 (run 33). At batch 1 (run 33c against run 30e): c48's 16 programs 0.0300
    against 0.0481, but c96's 4 programs 0.0749 against 0.0571 and c192's 2 (one frame, two channel groups) 0.1508
    against 0.0876: each program walks the whole hidden chain alone."""
    if not (k == 3 and block_c_of(c) <= 256 and min(h, w) >= 14):
        return "staged"
    tiles_h, tiles_w, _, groups = _shift_grid(n, c, h, w)
    return "shift" if n * tiles_h * tiles_w * groups >= SHIFT_MIN_PROGRAMS else "staged"


HALO_KEYS = {"staged": ("halo_p", "programs_per_sm", "dw_gather", "dw_dbuf", "dw_prefetch", "two_parts"),  # each halo kernel's own keys
             "shift": ("frame_h", "block_k", "block_co", "maxnreg"), "recompute": ("block_p",)}


def _halo_of(config: dict, default: str) -> str:
    """The halo kernel a config asks for: the one it names, else the one its kernel-specific keys belong to, else
    `default`. A key of another kernel than the one named (or keys of two kernels) is an error, not silently ignored."""
    owners = sorted({h for h, keys in HALO_KEYS.items() for k in config if k in keys})
    if not config.get("halo") and len(owners) > 1:
        named = ", ".join(f"{k} ({h})" for h, keys in HALO_KEYS.items() for k in keys if k in config)
        raise ValueError(f"mbconv: {named} belong to different halo kernels; name one with halo (one of {', '.join(HALO_MODES)})")
    halo = config.get("halo") or (owners[0] if owners else default)
    if halo not in HALO_MODES:
        raise ValueError(f"mbconv: halo={halo!r} is not one of {', '.join(HALO_MODES)}")
    foreign = sorted(k for h, keys in HALO_KEYS.items() if h != halo for k in keys if k in config)
    if foreign:
        raise ValueError(f"mbconv: {', '.join(foreign)} {'is' if len(foreign) == 1 else 'are'} not a key of the {halo!r} halo kernel, whose own "
                         f"keys are {', '.join(HALO_KEYS[halo])} (and block_h, num_warps, num_stages, fast_silu, reload_x)")
    return halo


def mbconv(x, w1, b1, wd, bd, w3, b3, config: dict | None = None) -> torch.Tensor:
    """The fused MBConv block (depthwise) on an NCHW tensor; returns channels-last NCHW. config["halo"] picks how the
    depthwise conv gets its neighbours' expanded activations: "shift" (each chunk's rows and columns moved by shift-matrix
    dots on the tensor cores; 3x3 only), "staged" (each tile's frame expanded once into a scratch slot) or "recompute"
    (each of the k² neighbours expanded again from the input, no scratch); a config that names no halo takes the kernel
    its own keys belong to (`_halo_of`), else `default_halo`'s. The shift
    kernel's keys: frame_h, block_k, block_co, block_h, num_warps, num_stages, reload_x, maxnreg (registers a thread, Triton's
    launch option: 128 lets two 8-warp programs share an SM; run 33g, slower) (`_mbconv_shift_kernel`); the
    staged kernel's: halo_p (frame pixels), block_h, num_warps, num_stages, programs_per_sm, reload_x, dw_gather,
    dw_dbuf, dw_prefetch, two_parts (`_mbconv_staged_kernel`); the recompute kernel's: block_p, block_h, num_warps,
    num_stages. fast_silu for all three."""
    _refuse_unknown_keys("mbconv", config or {}, MBCONV_KEYS)
    halo = _halo_of(config or {}, default_halo(x.shape[1], wd.shape[-1], *x.shape[:1], *x.shape[2:]))
    cfg = {**default_config("mbconv", x.shape[1], w1.shape[0], halo=halo), **(config or {})}
    if halo == "recompute":
        return _launch(_mbconv_kernel, x, (w1, b1, wd, bd, w3, b3), w1.shape[0], cfg, K=wd.shape[-1], FAST_SILU=_fast_silu(x, cfg))
    if halo == "shift":
        return _launch_mbconv_shift(x, (w1, b1, wd, bd, w3, b3), w1.shape[0], wd.shape[-1], cfg)
    return _launch_mbconv_staged(x, (w1, b1, wd, bd, w3, b3), w1.shape[0], wd.shape[-1], cfg)


CONV_ACTS = {"none": 0, "silu": 1, "relu": 2}
CONV_ACT_KEYS = ("block_p", "num_warps", "num_stages", "fast_silu", "packed_silu")


def conv_act(x, w, wmat, b, stride: int, padding: int, act: str = "silu", config: dict | None = None) -> torch.Tensor:
    """The stem kernel on an NCHW tensor (any memory format): a dense k×k conv (weight w [C_out, C_in, k, k], folded;
    wmat = `layout.im2col_weight(w)`), bias b, then `act`; returns channels-last NCHW. config: block_p (output pixels a
    program; default 512: on the H200, convfirst_net's stem at batch 64 took 0.0478 ms against 0.0552 at 256, 0.0796 at 128
    and 0.0565 at 512 on 8 warps, run 17), num_warps (4), num_stages (1), fast_silu, packed_silu (the SiLU in bf16x2;
    off: 0.0496 ms against 0.0482, run 20)."""
    config = dict(config or {})
    _refuse_unknown_keys("conv_act", config, CONV_ACT_KEYS)
    if act not in CONV_ACTS:
        raise ValueError(f"conv_act: act={act!r} is not one of {', '.join(CONV_ACTS)}")
    cfg = {"block_p": 512, "num_warps": 4, "num_stages": 1, **config}
    n, c_in, hgt, wid = x.shape
    c_out, _, k, _ = w.shape
    ho, wo = (hgt + 2 * padding - k) // stride + 1, (wid + 2 * padding - k) // stride + 1
    out = _output((n, ho, wo, c_out), x)
    npix = n * ho * wo
    sn, sc, sh, sw = x.stride()
    handle = _conv_act_kernel[(triton.cdiv(npix, cfg["block_p"]),)](
        x, wmat, b, out, npix, hgt, wid, ho, wo, c_in, c_out, sn, sc, sh, sw, K=k, STRIDE=stride, PAD=padding, BLOCK_P=cfg["block_p"],
        BLOCK_K=wmat.shape[0], BLOCK_CO=wmat.shape[1], ACT=CONV_ACTS[act], FAST_SILU=_fast_silu(x, cfg, packed=out.dtype == torch.bfloat16), num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"])
    _record(_conv_act_kernel, handle, {**cfg, "K": k, "STRIDE": stride, "act": act})
    return out.permute(0, 3, 1, 2)
