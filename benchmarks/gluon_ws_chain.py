"""The expansion chain warp-specialised in Gluon: TMA weights from a loader warp, consumer warpgroups sharing them (issue 19, runs 36-37).

Run 35 bounded the per-block target: the chain alone (1x1 expand, SiLU, 1x1 project, on chip) reaches 36-48 % of its
fused roofline in Triton's `tl` (mlp_ceiling.py), and two Gluon kernels that overlap the SiLU with the next wgmma inside
one warpgroup (gluon_chain.py) were 25-57 % slower than `tl`. Both stream the weights with cp.async issued by every
thread, and with 8 warps `tl`'s two warpgroups reach each chunk's SiLU together. The design the bound pointed to is the
one Hopper's fastest GEMM-chain kernels use; `_ws_chain_kernel` is that design, written here:

  - a loader warp (a worker partition) streams chunk i's W2ᵀ [C, BLOCK_H] and W3ᵀ [BLOCK_H, C] with TMA into a ring of
    STAGES slots, each with a `ready` barrier (TMA's byte count completes it) and an `empty` barrier (every consumer
    arrives when its wgmmas have read the slot);
  - two consumer warpgroups (the default partition and a worker; three with ncons 3) each own 64 pixels: E =
    x·W2ᵀ[chunk] (wgmma, x from shared memory, loaded once by TMA), P = SiLU(E + b2) in registers, acc += P·W3ᵀ[chunk]
    (wgmma, P from registers). They share every weight slot (half the L2 reads of a 64-pixel program) and meet only at
    the ring's barriers, so one's SiLU can run while another's wgmma does.

Modes (`tiles`' "mode"): plain; lag (each projection left in flight into the next chunk); pipe (the next chunk's
expansion issued before this chunk's SiLU); persist (`_ws_persist_kernel`: one program an SM, the ring running on
across its tiles, each consumer loading its next x tile as soon as its last expansion has read this one); split (the
same with a ring and a loader warp for each consumer, so the two are not held in step); three consumers (ncons 3);
and three ablations with wrong outputs, timed unchecked, to take the chain apart by difference: nosilu, noload (no
weights streamed after the ring's first fill) and mma (both), which `--repeat` can run R times over a program to tell
its fixed costs from its steady rate. On the H200 (runs 36-37, benchmarks/README.md) the best reached 41-43 % of the
fused roofline at 128 channels against `tl`'s 48 %, 46 % at 256 against 44 %; the mma ablation 46-47 %, of which about
half is a cost paid once a tile: its chunk loop alone runs at 81-111 % of the ceiling. The stamped modes record each
consumer's phases by %clock64 (run 37e: the epilogue, 2.5 us of a consumer's 8.7 at 128 channels, is the largest
fixed part); the epi modes store it in 16-byte row-major pieces, which cut it to 0.9 us at 128 channels and from 6.3
to 2.0 at 256 (run 38b: 0.0355 and 0.0302 ms, 46 and 54 % of the roofline; `tl` 48 and 44 %). persist_epi and
split_epi put that epilogue in the persistent kernels: persist_epi ran 0.0310 ms at 128 channels (53 %, `tl` 48 %),
0.0296 at 256 (55 %; epi 0.0294, 56 %), 0.0490 at 64 (33 %, `tl` 36 %) (run 38d).

Same math, widths, check and timer as mlp_ceiling.py (make, reference, cost, kernels_gpu.graph_time_ms); the `tl` chain
at run 35b's best tile is timed in the same process beside it. A partition's arguments arrive as values (constexprs
too), so the partitions read their tile sizes from the shared buffers' shapes and the modes are separate functions.

    python3 benchmarks/gluon_ws_chain.py --out $OUT [--widths 64,128,256] [--modes plain,persist]   (on the GPU)
    python3 benchmarks/gluon_ws_chain.py --compile-only [--modes ...]                             (sm_90 compile here, no GPU)
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, mbarrier, tma, warpgroup_mma, warpgroup_mma_init, warpgroup_mma_wait

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from gluon_chain import _silu, arg_parser, compile_tile, swizzle, sweep  # noqa: E402

# 3.9 names the TMA load async_load (its async_copy_global_to_shared only raises); older Gluon may have only the latter
_tma_load = getattr(tma, "async_load", None) or tma.async_copy_global_to_shared


@gluon.jit
def _loader(x_s, w2_s, w3_s, x_bar, ready, empty, x_desc, w2_desc, w3_desc, row0, NLOAD):
    """The loader warp: the consumers' x tiles once, then every chunk's two weight tiles into the ring. (A partition's
    arguments arrive as values, constexprs too, so the tile's sizes are read from the shared buffers' shapes.)"""
    NCONS: gl.constexpr = x_s.shape[0]
    BLOCK_P: gl.constexpr = x_s.shape[1]
    C: gl.constexpr = x_s.shape[2]
    STAGES: gl.constexpr = w2_s.shape[0]
    BLOCK_H: gl.constexpr = w2_s.shape[2]
    mbarrier.expect(x_bar, NCONS * BLOCK_P * C * 2)
    for w in gl.static_range(NCONS):
        _tma_load(x_desc, [row0 + w * BLOCK_P, 0], x_bar, x_s.index(w))
    for i in range(NLOAD):  # HID // BLOCK_H chunks (the noload ablation: the first STAGES)
        s = i % STAGES
        mbarrier.wait(empty.index(s), ((i // STAGES) & 1) ^ 1)  # the first pass of the ring finds every slot free
        mbarrier.expect(ready.index(s), 2 * C * BLOCK_H * 2)
        _tma_load(w2_desc, [0, i * BLOCK_H], ready.index(s), w2_s.index(s))
        _tma_load(w3_desc, [i * BLOCK_H, 0], ready.index(s), w3_s.index(s))


@gluon.jit
def _clock(x):
    """%clock64, this multiprocessor's cycle count (x: an unused operand, so that the asm has one; not pure, so it is
    neither merged nor moved across the waits around it)."""
    return gl.inline_asm_elementwise("mov.u64 $0, %clock64;", "=l,r", [x], dtype=gl.int64, is_pure=False, pack=1)


@gluon.jit
def _globaltimer(x):
    return gl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l,r", [x], dtype=gl.int64, is_pure=False, pack=1)


@gluon.jit
def _smid(x):
    return gl.inline_asm_elementwise("mov.u32 $0, %smid;", "=r,r", [x], dtype=gl.int32, is_pure=False, pack=1)


@gluon.jit
def _stamp(st, j: gl.constexpr, x):
    gl.store(st + j, _clock(x))


@gluon.jit
def _stamps_start(out_ptr, NPIX, C, slot, first):
    """A persistent consumer's stamp slot (8 int64 after the [NPIX, C] output, at `slot`), its %globaltimer at start
    and %smid written there; returns the slot's pointer and %clock64 at start."""
    st = (out_ptr + NPIX * C).to(gl.pointer_type(gl.int64), bitcast=True) + slot * 8
    gl.store(st + 6, _globaltimer(first))
    gl.store(st + 5, _smid(first).to(gl.int64))
    return st, _clock(first)


@gluon.jit
def _stamps_end(st, c_start, first_cyc, loop_cyc, epi_cyc, first):
    """A persistent consumer's clock totals into its slot: clock at start, the first phase's cycles (x waits; a
    block kernel's convs), loops, epilogues, clock and %globaltimer at the end."""
    gl.store(st, c_start)
    gl.store(st + 1, first_cyc)
    gl.store(st + 2, loop_cyc)
    gl.store(st + 3, epi_cyc)
    gl.store(st + 4, _clock(first))
    gl.store(st + 7, _globaltimer(first))


@gluon.jit
def _consume(x_t, w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0, MODE: gl.constexpr):
    """One consumer warpgroup: its 64 pixels (x_t, rows row0...) through every chunk, then bias, residual (x from shared
    memory) and store. MODE 0: each chunk waits for its expansion, then its projection, and frees its slot. MODE 1
    (lag): the projection is left in flight until the next chunk's expansion is waited for, and the slot freed then.
    MODE 2 (pipe): chunk i + 1's expansion is issued before chunk i's SiLU, which runs while it does.
    Two ablations of MODE 0, whose outputs are wrong, to take the chain apart by difference: MODE 3 (nosilu) casts
    E + b2 to bf16 without the SiLU; MODE 4 (noload) reads the ring's first STAGES chunks over and over once they are
    in (the loader loads no more, the slots are never freed), so no weights stream after the first; MODE 5 (mma) both.
    MODE 6 and 7 are MODE 0 and 5 with clock stamps (`_stamp`): each consumer writes, after the output in the same
    buffer, %clock64 at its start, after its x tile is in, after its first chunk's weights are, after its chunk loop
    and after its store, its multiprocessor's id, and %globaltimer at its start and end. MODE 8 and 9 are 6 and 7 with
    the epilogue in a row-major layout of 16-byte pieces; MODE 10 (epi) is MODE 8 without the stamps."""
    M: gl.constexpr = (0 if MODE % 2 == 0 else 5) if MODE >= 6 else MODE  # the mode the stamped and epi ones time
    STAMP: gl.constexpr = MODE >= 6 and MODE < 10
    FAST_EPI: gl.constexpr = MODE >= 8
    BLOCK_P: gl.constexpr = x_t.shape[0]
    C: gl.constexpr = x_t.shape[1]
    STAGES: gl.constexpr = w2_s.shape[0]
    BLOCK_H: gl.constexpr = w2_s.shape[2]
    acc_l: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, C, 16])
    e_l: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_H, 16])
    p_l: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=acc_l, k_width=2)
    NCH = HID // BLOCK_H
    hb = gl.arange(0, BLOCK_H, layout=gl.SliceLayout(0, e_l))
    e0 = gl.zeros([BLOCK_P, BLOCK_H], gl.float32, e_l)
    acc = gl.zeros([BLOCK_P, C], gl.float32, acc_l)
    if STAMP:
        st = (out_ptr + NPIX * C).to(gl.pointer_type(gl.int64), bitcast=True) + (row0 // BLOCK_P) * 8
        _stamp(st, 0, row0)
        gl.store(st + 6, _globaltimer(row0))
        gl.store(st + 5, _smid(row0).to(gl.int64))
    mbarrier.wait(x_bar, 0)
    if STAMP:
        _stamp(st, 1, row0)
    if M == 2:
        mbarrier.wait(ready.index(0), 0)
        e = warpgroup_mma(x_t, w2_s.index(0), e0, use_acc=False)
        for i in range(NCH - 1):
            s = i % STAGES
            s1 = (i + 1) % STAGES
            mbarrier.wait(ready.index(s1), ((i + 1) // STAGES) & 1)
            e_next = warpgroup_mma(x_t, w2_s.index(s1), e0, use_acc=False, is_async=True)
            b2 = gl.load(b2_ptr + i * BLOCK_H + hb).to(gl.float32)
            p = gl.convert_layout(_silu(e + b2[None, :]).to(gl.bfloat16), p_l)  # while e_next runs
            acc = warpgroup_mma(p, w3_s.index(s), acc, is_async=True)
            e, acc, p = warpgroup_mma_wait(0, deps=[e_next, acc, p])
            mbarrier.arrive(empty.index(s))
        b2 = gl.load(b2_ptr + (NCH - 1) * BLOCK_H + hb).to(gl.float32)
        p = gl.convert_layout(_silu(e + b2[None, :]).to(gl.bfloat16), p_l)
        acc = warpgroup_mma(p, w3_s.index((NCH - 1) % STAGES), acc)
        mbarrier.arrive(empty.index((NCH - 1) % STAGES))
    else:
        p_prev = gl.zeros([BLOCK_P, BLOCK_H], gl.bfloat16, p_l)
        if M >= 4:
            for j in gl.static_range(STAGES):
                mbarrier.wait(ready.index(j), 0)
            if STAMP:
                _stamp(st, 2, row0)
        if M == 1:
            acc = warpgroup_mma_init(acc)  # the loop carries an in-flight accumulator
        for i in range(NCH):
            s = i % STAGES
            b2 = gl.load(b2_ptr + i * BLOCK_H + hb).to(gl.float32)
            if M < 4:
                mbarrier.wait(ready.index(s), (i // STAGES) & 1)
                if STAMP:
                    if i == 0:
                        _stamp(st, 2, row0)
            e = warpgroup_mma(x_t, w2_s.index(s), e0, use_acc=False, is_async=True)
            if M == 1:  # chunk i - 1's projection completes with this wait too; its slot is free after it
                e, acc, p_prev = warpgroup_mma_wait(0, deps=[e, acc, p_prev])
                if i > 0:
                    mbarrier.arrive(empty.index((i + STAGES - 1) % STAGES))
            else:
                e = warpgroup_mma_wait(0, deps=[e])
            if M == 3 or M == 5:
                p = gl.convert_layout((e + b2[None, :]).to(gl.bfloat16), p_l)
            else:
                p = gl.convert_layout(_silu(e + b2[None, :]).to(gl.bfloat16), p_l)
            acc = warpgroup_mma(p, w3_s.index(s), acc, is_async=True)
            if M == 1:
                p_prev = p
            else:
                acc, p = warpgroup_mma_wait(0, deps=[acc, p])
                if M < 4:
                    mbarrier.arrive(empty.index(s))
        if M == 1:
            acc, p_prev = warpgroup_mma_wait(0, deps=[acc, p_prev])
            mbarrier.arrive(empty.index((NCH - 1) % STAGES))
        if STAMP:
            _stamp(st, 3, row0)

    if FAST_EPI:  # bias in the accumulator's layout, then bf16 into a row-major layout of 16-byte pieces: the residual
        # read from shared memory and the store both coalesced (the accumulator's own layout stores 4-byte pieces)
        st_l: gl.constexpr = gl.BlockedLayout([1, 8], [32 // (C // 8) if C < 256 else 1, C // 8 if C < 256 else 32], [4, 1], [1, 0])
        ocol = gl.arange(0, C, layout=gl.SliceLayout(0, acc_l))
        y = gl.convert_layout((acc + gl.load(b3_ptr + ocol).to(gl.float32)[None, :]).to(gl.bfloat16), st_l)
        y = (y.to(gl.float32) + x_t.load(st_l).to(gl.float32)).to(gl.bfloat16)
        srow = row0 + gl.arange(0, BLOCK_P, layout=gl.SliceLayout(1, st_l))
        scol = gl.arange(0, C, layout=gl.SliceLayout(0, st_l))
        gl.store(out_ptr + srow[:, None] * C + scol[None, :], y, mask=(srow < NPIX)[:, None])
    else:
        orow = row0 + gl.arange(0, BLOCK_P, layout=gl.SliceLayout(1, acc_l))
        ocol = gl.arange(0, C, layout=gl.SliceLayout(0, acc_l))
        acc += x_t.load(acc_l).to(gl.float32) + gl.load(b3_ptr + ocol).to(gl.float32)[None, :]
        gl.store(out_ptr + orow[:, None] * C + ocol[None, :], acc.to(gl.bfloat16), mask=(orow < NPIX)[:, None])
    if STAMP:
        _stamp(st, 4, row0)
        gl.store(st + 7, _globaltimer(row0))


@gluon.jit
def _consume_plain(x_t, w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0):
    _consume(x_t, w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0, 0)


@gluon.jit
def _consume_lag(x_t, w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0):
    _consume(x_t, w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0, 1)


@gluon.jit
def _consume_pipe(x_t, w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0):
    _consume(x_t, w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0, 2)


@gluon.jit
def _consume_nosilu(x_t, w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0):
    _consume(x_t, w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0, 3)


@gluon.jit
def _consume_noload(x_t, w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0):
    _consume(x_t, w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0, 4)


@gluon.jit
def _consume_mma(x_t, w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0):
    _consume(x_t, w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0, 5)


@gluon.jit
def _consume_plain_stamped(x_t, w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0):
    _consume(x_t, w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0, 6)


@gluon.jit
def _consume_mma_stamped(x_t, w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0):
    _consume(x_t, w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0, 7)


@gluon.jit
def _consume_epi_stamped(x_t, w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0):
    _consume(x_t, w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0, 8)


@gluon.jit
def _consume_mma_epi_stamped(x_t, w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0):
    _consume(x_t, w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0, 9)


@gluon.jit
def _consume_epi(x_t, w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0):
    _consume(x_t, w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0, 10)


@gluon.jit
def _ws_chain_kernel(x_desc, w2_desc, w3_desc, b2_ptr, b3_ptr, out_ptr, NPIX, C: gl.constexpr, HID: gl.constexpr,
                     BLOCK_P: gl.constexpr, BLOCK_H: gl.constexpr, STAGES: gl.constexpr, MODE: gl.constexpr, REGS: gl.constexpr,
                     NCONS: gl.constexpr = 2):
    """out = x + b3 + SiLU(x·W2ᵀ + b2)·W3ᵀ for NCONS·BLOCK_P pixels (BLOCK_P = 64, one warpgroup's wgmma M); the
    descriptors are over x [NPIX, C], W2ᵀ [C, HID] and W3ᵀ [HID, C], row-major, bf16. num_warps = 4: consumer 0 is the
    default partition, consumers 1 (and 2: NCONS = 3, modes plain and mma only; 4 warps, REGS registers each) and the
    loader (1 warp) are workers."""
    x_s = gl.allocate_shared_memory(gl.bfloat16, [NCONS, BLOCK_P, C], x_desc.layout)
    w2_s = gl.allocate_shared_memory(gl.bfloat16, [STAGES, C, BLOCK_H], w2_desc.layout)
    w3_s = gl.allocate_shared_memory(gl.bfloat16, [STAGES, BLOCK_H, C], w3_desc.layout)
    x_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    mbarrier.init(x_bar, count=1)
    for s in gl.static_range(STAGES):
        mbarrier.init(ready.index(s), count=1)
        mbarrier.init(empty.index(s), count=NCONS)  # one arrival a consumer warpgroup
    fence_async_shared()
    row0 = gl.program_id(0) * (NCONS * BLOCK_P)
    c0 = (x_s.index(0), w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0)
    c1 = (x_s.index(1), w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0 + BLOCK_P)
    NOLOAD: gl.constexpr = MODE == 4 or MODE == 5 or MODE == 7 or MODE == 9
    ld = (x_s, w2_s, w3_s, x_bar, ready, empty, x_desc, w2_desc, w3_desc, row0, STAGES if NOLOAD else HID // BLOCK_H)
    if NCONS == 3:  # a third chain in flight: does the MMA path's share rise with it?
        gl.static_assert(MODE == 0 or MODE == 5, "three consumers: modes plain and mma only")
        c2 = (x_s.index(2), w2_s, w3_s, x_bar, ready, empty, b2_ptr, b3_ptr, out_ptr, NPIX, HID, row0 + 2 * BLOCK_P)
        if MODE == 0:
            gl.warp_specialize([(_consume_plain, c0), (_consume_plain, c1), (_consume_plain, c2), (_loader, ld)], [4, 4, 1], [REGS, REGS, 24])
        else:
            gl.warp_specialize([(_consume_mma, c0), (_consume_mma, c1), (_consume_mma, c2), (_loader, ld)], [4, 4, 1], [REGS, REGS, 24])
    elif MODE == 0:
        gl.warp_specialize([(_consume_plain, c0), (_consume_plain, c1), (_loader, ld)], [4, 1], [REGS, 24])
    elif MODE == 1:
        gl.warp_specialize([(_consume_lag, c0), (_consume_lag, c1), (_loader, ld)], [4, 1], [REGS, 24])
    elif MODE == 2:
        gl.warp_specialize([(_consume_pipe, c0), (_consume_pipe, c1), (_loader, ld)], [4, 1], [REGS, 24])
    elif MODE == 3:
        gl.warp_specialize([(_consume_nosilu, c0), (_consume_nosilu, c1), (_loader, ld)], [4, 1], [REGS, 24])
    elif MODE == 4:
        gl.warp_specialize([(_consume_noload, c0), (_consume_noload, c1), (_loader, ld)], [4, 1], [REGS, 24])
    elif MODE == 5:
        gl.warp_specialize([(_consume_mma, c0), (_consume_mma, c1), (_loader, ld)], [4, 1], [REGS, 24])
    elif MODE == 6:
        gl.warp_specialize([(_consume_plain_stamped, c0), (_consume_plain_stamped, c1), (_loader, ld)], [4, 1], [REGS, 24])
    elif MODE == 7:
        gl.warp_specialize([(_consume_mma_stamped, c0), (_consume_mma_stamped, c1), (_loader, ld)], [4, 1], [REGS, 24])
    elif MODE == 8:
        gl.warp_specialize([(_consume_epi_stamped, c0), (_consume_epi_stamped, c1), (_loader, ld)], [4, 1], [REGS, 24])
    elif MODE == 10:
        gl.warp_specialize([(_consume_epi, c0), (_consume_epi, c1), (_loader, ld)], [4, 1], [REGS, 24])
    else:
        gl.warp_specialize([(_consume_mma_epi_stamped, c0), (_consume_mma_epi_stamped, c1), (_loader, ld)], [4, 1], [REGS, 24])


@gluon.jit
def _loader_persist(w2_s, w3_s, ready, empty, w2_desc, w3_desc, HID, first, ntiles, step):
    """The persistent kernel's loader warp: the weight chunks of every tile its consumers take (tiles first, first +
    step, ... below ntiles), one ring throughout."""
    STAGES: gl.constexpr = w2_s.shape[0]
    C: gl.constexpr = w2_s.shape[1]
    BLOCK_H: gl.constexpr = w2_s.shape[2]
    NCH = HID // BLOCK_H
    k = 0  # chunks loaded so far: the ring's position and phase
    for t in range(first, ntiles, step):
        for i in range(NCH):
            s = k % STAGES
            mbarrier.wait(empty.index(s), ((k // STAGES) & 1) ^ 1)
            mbarrier.expect(ready.index(s), 2 * C * BLOCK_H * 2)
            _tma_load(w2_desc, [0, i * BLOCK_H], ready.index(s), w2_s.index(s))
            _tma_load(w3_desc, [i * BLOCK_H, 0], ready.index(s), w3_s.index(s))
            k += 1


@gluon.jit
def _persist_body(x_t, w2_s, w3_s, x_bar, ready, empty, x_desc, x_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, HID, first, ntiles, step,
                  tile_rows, row_off, slot, FAST_EPI: gl.constexpr, STAMP: gl.constexpr = False):
    """One consumer warpgroup of the persistent kernel: for each tile it takes (first, first + step, ... below ntiles;
    its 64 pixels start at row tile·tile_rows + row_off), its pixels through every chunk as MODE 0 does. It loads its
    own x tile by TMA, and the next tile's as soon as the last expansion has read this one (the residual is read from
    global memory, so x's buffer is free then). FAST_EPI: the epilogue as MODE 10's, in 16-byte row-major pieces (the
    residual from global memory in them too). STAMP: the consumer adds up, in %clock64 cycles over all its tiles, its
    waits for x, its chunk loops and its epilogues, and writes them after the output at `slot` (8 int64: clock at start,
    x waits, loops, epilogues, clock at end, %smid, %globaltimer at start and end)."""
    BLOCK_P: gl.constexpr = x_t.shape[0]
    C: gl.constexpr = x_t.shape[1]
    STAGES: gl.constexpr = w2_s.shape[0]
    BLOCK_H: gl.constexpr = w2_s.shape[2]
    acc_l: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, C, 16])
    e_l: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_H, 16])
    p_l: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=acc_l, k_width=2)
    NCH = HID // BLOCK_H
    hb = gl.arange(0, BLOCK_H, layout=gl.SliceLayout(0, e_l))
    e0 = gl.zeros([BLOCK_P, BLOCK_H], gl.float32, e_l)
    t = first
    if STAMP:
        st, c_start = _stamps_start(out_ptr, NPIX, C, slot, first)
        x_cyc = c_start - c_start
        loop_cyc = x_cyc
        epi_cyc = x_cyc
    mbarrier.expect(x_bar, BLOCK_P * C * 2)
    _tma_load(x_desc, [t * tile_rows + row_off, 0], x_bar, x_t)
    k = 0
    it = 0
    while t < ntiles:
        if STAMP:
            c0 = _clock(t)
        mbarrier.wait(x_bar, it & 1)
        if STAMP:
            c1 = _clock(t)
            x_cyc += c1 - c0
        acc = gl.zeros([BLOCK_P, C], gl.float32, acc_l)
        for i in range(NCH):
            s = k % STAGES
            b2 = gl.load(b2_ptr + i * BLOCK_H + hb).to(gl.float32)
            mbarrier.wait(ready.index(s), (k // STAGES) & 1)
            e = warpgroup_mma(x_t, w2_s.index(s), e0, use_acc=False, is_async=True)
            e = warpgroup_mma_wait(0, deps=[e])
            if i == NCH - 1:  # x's buffer is read for the last time: the next tile's x loads during this chunk's rest
                if t + step < ntiles:
                    mbarrier.expect(x_bar, BLOCK_P * C * 2)
                    _tma_load(x_desc, [(t + step) * tile_rows + row_off, 0], x_bar, x_t)
            p = gl.convert_layout(_silu(e + b2[None, :]).to(gl.bfloat16), p_l)
            acc = warpgroup_mma(p, w3_s.index(s), acc, is_async=True)
            acc, p = warpgroup_mma_wait(0, deps=[acc, p])
            mbarrier.arrive(empty.index(s))
            k += 1
        if STAMP:
            c2 = _clock(t)
            loop_cyc += c2 - c1
        ocol = gl.arange(0, C, layout=gl.SliceLayout(0, acc_l))  # here, not hoisted: at C = 256 a thread holds 64 columns
        if FAST_EPI:
            st_l: gl.constexpr = gl.BlockedLayout([1, 8], [32 // (C // 8) if C < 256 else 1, C // 8 if C < 256 else 32], [4, 1], [1, 0])
            y = gl.convert_layout((acc + gl.load(b3_ptr + ocol).to(gl.float32)[None, :]).to(gl.bfloat16), st_l)
            srow = t * tile_rows + row_off + gl.arange(0, BLOCK_P, layout=gl.SliceLayout(1, st_l))
            off = srow[:, None] * C + gl.arange(0, C, layout=gl.SliceLayout(0, st_l))[None, :]
            m = (srow < NPIX)[:, None]
            gl.store(out_ptr + off, (y.to(gl.float32) + gl.load(x_ptr + off, mask=m, other=0.0).to(gl.float32)).to(gl.bfloat16), mask=m)
        else:
            orow = t * tile_rows + row_off + gl.arange(0, BLOCK_P, layout=gl.SliceLayout(1, acc_l))
            off = orow[:, None] * C + ocol[None, :]
            m = (orow < NPIX)[:, None]
            acc += gl.load(x_ptr + off, mask=m, other=0.0).to(gl.float32) + gl.load(b3_ptr + ocol).to(gl.float32)[None, :]
            gl.store(out_ptr + off, acc.to(gl.bfloat16), mask=m)
        if STAMP:
            epi_cyc += _clock(t) - c2
        t += step
        it += 1
    if STAMP:
        _stamps_end(st, c_start, x_cyc, loop_cyc, epi_cyc, first)


@gluon.jit
def _consume_persist(x_t, w2_s, w3_s, x_bar, ready, empty, x_desc, x_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, HID, first, ntiles, step,
                     tile_rows, row_off, slot):
    _persist_body(x_t, w2_s, w3_s, x_bar, ready, empty, x_desc, x_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, HID, first, ntiles, step,
                  tile_rows, row_off, slot, False)


@gluon.jit
def _consume_persist_epi(x_t, w2_s, w3_s, x_bar, ready, empty, x_desc, x_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, HID, first, ntiles, step,
                         tile_rows, row_off, slot):
    _persist_body(x_t, w2_s, w3_s, x_bar, ready, empty, x_desc, x_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, HID, first, ntiles, step,
                  tile_rows, row_off, slot, True)


@gluon.jit
def _consume_persist_epi_stamped(x_t, w2_s, w3_s, x_bar, ready, empty, x_desc, x_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, HID, first, ntiles,
                                 step, tile_rows, row_off, slot):
    _persist_body(x_t, w2_s, w3_s, x_bar, ready, empty, x_desc, x_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, HID, first, ntiles, step,
                  tile_rows, row_off, slot, True, True)


@gluon.jit
def _ws_persist_kernel(x_desc, w2_desc, w3_desc, x_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, C: gl.constexpr, HID: gl.constexpr,
                       BLOCK_P: gl.constexpr, BLOCK_H: gl.constexpr, STAGES: gl.constexpr, REGS: gl.constexpr,
                       SPLIT: gl.constexpr = False, FAST_EPI: gl.constexpr = False, STAMP: gl.constexpr = False):
    """_ws_chain_kernel's MODE 0, persistent: one program an SM, its two consumers each with their own x buffer and
    barrier. Shared (SPLIT False): the program takes tiles of 2·BLOCK_P pixels in turn, both consumers reading one
    weight ring that runs on across them, so they keep in step (and end each tile together). SPLIT: each consumer has
    its own ring and loader warp and takes its own BLOCK_P-pixel tiles, so nothing ties the two together: one's
    epilogue and next x tile can run while the other's wgmmas do (twice the weight bytes from L2: run 36's noload
    ablation found streaming them no limit). STAMP (shared ring, FAST_EPI only): each consumer's clock totals after
    the output, consumer w of program p at slot 2p + w."""
    x_s = gl.allocate_shared_memory(gl.bfloat16, [2, BLOCK_P, C], x_desc.layout)
    x_bar = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    for w in gl.static_range(2):
        mbarrier.init(x_bar.index(w), count=1)
    # ring 0 (SPLIT: consumer 0's; else both consumers'), and with SPLIT ring 1, consumer 1's: separate allocations, as
    # Triton 3.6 asserted in its layout conversion on slices of one (run 37d)
    w2_s = gl.allocate_shared_memory(gl.bfloat16, [STAGES, C, BLOCK_H], w2_desc.layout)
    w3_s = gl.allocate_shared_memory(gl.bfloat16, [STAGES, BLOCK_H, C], w3_desc.layout)
    ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for s in gl.static_range(STAGES):
        mbarrier.init(ready.index(s), count=1)
        mbarrier.init(empty.index(s), count=1 if SPLIT else 2)  # both consumers read a shared slot; one its own
    if SPLIT:
        w2_1 = gl.allocate_shared_memory(gl.bfloat16, [STAGES, C, BLOCK_H], w2_desc.layout)
        w3_1 = gl.allocate_shared_memory(gl.bfloat16, [STAGES, BLOCK_H, C], w3_desc.layout)
        rd1 = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        em1 = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        for s in gl.static_range(STAGES):
            mbarrier.init(rd1.index(s), count=1)
            mbarrier.init(em1.index(s), count=1)
    fence_async_shared()
    pid = gl.program_id(0)
    nprog = gl.num_programs(0)
    if SPLIT:
        nt = gl.cdiv(NPIX, BLOCK_P)
        c0 = (x_s.index(0), w2_s, w3_s, x_bar.index(0), ready, empty, x_desc, x_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, HID, 2 * pid, nt, 2 * nprog,
              BLOCK_P, 0, 2 * pid)
        c1 = (x_s.index(1), w2_1, w3_1, x_bar.index(1), rd1, em1, x_desc, x_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, HID, 2 * pid + 1, nt,
              2 * nprog, BLOCK_P, 0, 2 * pid + 1)
        l0 = (w2_s, w3_s, ready, empty, w2_desc, w3_desc, HID, 2 * pid, nt, 2 * nprog)
        l1 = (w2_1, w3_1, rd1, em1, w2_desc, w3_desc, HID, 2 * pid + 1, nt, 2 * nprog)
        if FAST_EPI:
            gl.warp_specialize([(_consume_persist_epi, c0), (_consume_persist_epi, c1), (_loader_persist, l0), (_loader_persist, l1)],
                               [4, 1, 1], [REGS, 24, 24])
        else:
            gl.warp_specialize([(_consume_persist, c0), (_consume_persist, c1), (_loader_persist, l0), (_loader_persist, l1)],
                               [4, 1, 1], [REGS, 24, 24])
    else:
        nt = gl.cdiv(NPIX, 2 * BLOCK_P)
        c0 = (x_s.index(0), w2_s, w3_s, x_bar.index(0), ready, empty, x_desc, x_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, HID, pid, nt, nprog,
              2 * BLOCK_P, 0, 2 * pid)
        c1 = (x_s.index(1), w2_s, w3_s, x_bar.index(1), ready, empty, x_desc, x_ptr, b2_ptr, b3_ptr, out_ptr, NPIX, HID, pid, nt, nprog,
              2 * BLOCK_P, BLOCK_P, 2 * pid + 1)
        ld = (w2_s, w3_s, ready, empty, w2_desc, w3_desc, HID, pid, nt, nprog)
        if STAMP:
            gl.static_assert(FAST_EPI, "stamps: the persistent kernel with the coalesced epilogue only")
            gl.warp_specialize([(_consume_persist_epi_stamped, c0), (_consume_persist_epi_stamped, c1), (_loader_persist, ld)], [4, 1],
                               [REGS, 24])
        elif FAST_EPI:
            gl.warp_specialize([(_consume_persist_epi, c0), (_consume_persist_epi, c1), (_loader_persist, ld)], [4, 1], [REGS, 24])
        else:
            gl.warp_specialize([(_consume_persist, c0), (_consume_persist, c1), (_loader_persist, ld)], [4, 1], [REGS, 24])


MODES = ("plain", "lag", "pipe", "nosilu", "noload", "mma", "stamped", "mma_stamped", "epi_stamped", "mma_epi_stamped", "epi",
         "persist", "split", "persist_epi", "split_epi", "persist_epi_stamped")  # MODE's values, by name, to epi (the rest:
# _ws_persist_kernel, one ring shared or one a consumer, the epilogue plain or in 16-byte pieces, clock totals or not)
PERSISTENT = ("persist", "split", "persist_epi", "split_epi", "persist_epi_stamped")
ABLATIONS = ("nosilu", "noload", "mma", "mma_stamped", "mma_epi_stamped")  # wrong outputs by design: timed without the check
REPEATABLE = ("noload", "mma", "mma_stamped", "mma_epi_stamped")  # read no weights past the ring's first fill: --repeat


BLOCK_P = 64  # a warpgroup's wgmma M


def layouts(c: int, block_h: int) -> dict:
    """The NVMMA shared layouts of x's, W2ᵀ's and W3ᵀ's tiles (TMA writes them, wgmma reads them)."""
    nv = lambda row: gl.NVMMASharedLayout(swizzle_byte_width=swizzle(row), element_bitwidth=16, rank=2)  # noqa: E731
    return {"x": nv(c), "w2": nv(block_h), "w3": nv(c)}


def kernel(cfg: dict):
    return _ws_persist_kernel if cfg["mode"] in PERSISTENT else _ws_chain_kernel


def constexprs(c: int, cfg: dict) -> dict:
    if cfg["mode"] in PERSISTENT:
        mode = {"SPLIT": cfg["mode"].startswith("split"), "FAST_EPI": "_epi" in cfg["mode"], "STAMP": cfg["mode"].endswith("_stamped")}
    else:
        mode = {"MODE": MODES.index(cfg["mode"]), "NCONS": cfg.get("ncons", 2)}
    return {"C": c, "HID": 4 * c * cfg.get("repeat", 1), "BLOCK_P": BLOCK_P, "BLOCK_H": cfg["block_h"], "STAGES": cfg["stages"], **mode,
            "REGS": cfg.get("regs", 160 if cfg.get("ncons") == 3 else 232)}


def descriptors(x: torch.Tensor, w2: torch.Tensor, w3: torch.Tensor, c: int, block_h: int) -> tuple:
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    lay = layouts(c, block_h)
    return (TensorDescriptor.from_tensor(x, [BLOCK_P, c], lay["x"]), TensorDescriptor.from_tensor(w2, [c, block_h], lay["w2"]),
            TensorDescriptor.from_tensor(w3, [block_h, c], lay["w3"]))


def fused(d: dict, cfg: dict):
    """f(x) running the kernel over d's pixels (the weights transposed and their descriptors made once), and the dict
    whose "k" keeps the last compiled launch."""
    c = d["x"].shape[1]
    w2, w3 = d["W2"].t().contiguous(), d["W3"].t().contiguous()
    npix = d["x"].shape[0]
    cx = constexprs(c, cfg)
    handle = {}
    repeat = cfg.get("repeat", 1)  # the chunk loop run `repeat` times over (the ablations that stream no weights only)
    if repeat > 1 and cfg["mode"] not in REPEATABLE:
        raise ValueError(f"repeat {repeat}: only the noload and mma ablations, which read no weights past the ring's first fill")
    b2 = d["b2"].repeat(repeat)
    _, w2d, w3d = descriptors(d["x"], w2, w3, c, cfg["block_h"])

    ntiles = triton.cdiv(npix, 2 * BLOCK_P)

    persistent, stamped, ncons = cfg["mode"] in PERSISTENT, "stamped" in cfg["mode"], cfg.get("ncons", 2)

    def f(x):
        xd, _, _ = descriptors(x, w2, w3, c, cfg["block_h"])
        if persistent:
            grid = min(ntiles, torch.cuda.get_device_properties(x.device).multi_processor_count)
            kern, args, consumers = _ws_persist_kernel, (xd, w2d, w3d, x, d["b2"], d["b3"]), 2 * grid
        else:
            grid = triton.cdiv(npix, ncons * BLOCK_P)
            kern, args, consumers = _ws_chain_kernel, (xd, w2d, w3d, b2, d["b3"]), ncons * grid
        if stamped:  # each consumer's stamps after the output, in the same buffer (8 int64, 32 bf16 places, a consumer)
            buf = handle["buf"] = torch.empty(npix * c + 4 * 8 * consumers, dtype=x.dtype, device=x.device)
            out = buf[:npix * c].view(npix, c)
        else:
            buf = out = torch.empty_like(x)
        handle["k"] = kern[(grid,)](*args, buf, npix, **cx, num_warps=4)
        return out
    if stamped:
        stamps = lambda: handle["buf"][npix * c:].view(torch.int64).view(-1, 8).cpu()  # noqa: E731
        handle["summary"] = (lambda: persist_stamp_summary(stamps())) if persistent else (lambda: stamp_summary(stamps(), ncons))
    return f, handle


def _stamp_ghz(st: torch.Tensor) -> float:
    """The clock rate (cycles a ns) of stamps [consumer, 8]: each consumer's cycles (slots 0 and 4) over its
    %globaltimer span (slots 6 and 7), the median over the consumers."""
    return ((st[:, 4] - st[:, 0]) / (st[:, 7] - st[:, 6]).clamp(min=1)).median().item()


def _us_stats(v: torch.Tensor, ghz: float) -> dict:
    """Median, IQR and count of cycle counts v, in µs at `ghz`."""
    v = v / ghz / 1e3
    return {"median_us": v.median().item(), "iqr_us": (v.quantile(0.75) - v.quantile(0.25)).item(), "n": v.numel()}


def stamp_summary(st: torch.Tensor, ncons: int) -> dict:
    """The last launch's stamps ([consumer, 8]: clock64 at start, x in, first chunk in, loop done, stored; smid;
    globaltimer at start and end) as medians and IQRs in µs: each consumer's phases, and on each multiprocessor the gap
    between one program's end (its last consumer's store) and the next program's start (its first consumer's start),
    in that multiprocessor's own cycles; the clock rate from each consumer's cycles over its globaltimer span."""
    st = st.double()
    ghz = _stamp_ghz(st)
    q = lambda v: _us_stats(v, ghz)  # noqa: E731
    phases = {"x_wait": st[:, 1] - st[:, 0], "first_chunk_wait": st[:, 2] - st[:, 1], "loop": st[:, 3] - st[:, 2],
              "epilogue": st[:, 4] - st[:, 3], "consumer": st[:, 4] - st[:, 0]}
    progs = st.view(-1, ncons, 8)
    start, end, sm = progs[:, :, 0].min(1).values, progs[:, :, 4].max(1).values, progs[:, 0, 5]
    gaps = []
    for m in sm.unique():
        sel = (sm == m).nonzero().flatten()
        order = sel[start[sel].argsort()]
        gaps += [(start[b] - end[a]).item() for a, b in zip(order[:-1], order[1:])]
    span_us = ((st[:, 7].max() - st[:, 6].min()) / 1e3).item()
    return {"clock_ghz": ghz, "kernel_span_us": span_us, "programs_per_sm_max": int(torch.bincount(sm.long()).max()),
            **{k: q(v) for k, v in phases.items()}, "gap_between_programs": q(torch.tensor(gaps, dtype=torch.double)) if gaps else None}


def persist_stamp_summary(st: torch.Tensor, first: str = "x_wait_total") -> dict:
    """The persistent kernel's clock totals ([consumer, 8]: clock64 at start, cycles waiting for x, in chunk loops, in
    epilogues, clock64 at end, smid, globaltimer at start and end) as medians and IQRs over the consumers, in µs at the
    clock rate their own cycles over their globaltimer spans give: each phase's total, the consumer's whole time, and
    the rest of it (its first x load's issue, its loop over tiles, the stamps themselves). `first` names the first
    phase (a block kernel's slot 1 holds its convs)."""
    st = st.double()
    ghz = _stamp_ghz(st)
    q = lambda v: _us_stats(v, ghz)  # noqa: E731
    whole = st[:, 4] - st[:, 0]
    return {"clock_ghz": ghz, "kernel_span_us": ((st[:, 7].max() - st[:, 6].min()) / 1e3).item(), first: q(st[:, 1]),
            "loop_total": q(st[:, 2]), "epilogue_total": q(st[:, 3]), "consumer": q(whole), "rest": q(whole - st[:, 1:4].sum(1))}


def smem_bytes(c: int, cfg: dict) -> int:
    rings = 2 if cfg["mode"].startswith("split") else 1
    return 2 * (cfg.get("ncons", 2) * BLOCK_P * c + rings * cfg["stages"] * 2 * c * cfg["block_h"]) + 8 * (2 + 2 * rings * cfg["stages"])


def tiles(c: int, modes: tuple = MODES) -> list[dict]:
    """32-128 hidden channels a chunk, 2-4 ring slots, each consumer mode, where the slots and both x tiles fit the
    H200's 227 KB of shared memory and E (two with pipe), P and the accumulator a consumer's registers."""
    out = []
    for bh in (64, 128, 32):
        for stages in (2, 3, 4):
            for mode in modes:
                cfg = {"block_h": bh, "stages": stages, "mode": mode}
                regs = (c + bh * (2 if mode == "pipe" else 1)) // 2 + bh // 4 * (2 if mode in ("lag", "pipe") else 1)  # acc, E (fp32), P (bf16), a thread
                if bh <= 4 * c and smem_bytes(c, cfg) <= 232448 and regs <= 200:
                    out.append(cfg)
                cfg3 = {**cfg, "ncons": 3}  # three consumers: 160 registers each at most (16 warps share 64K)
                if mode in ("plain", "mma") and bh <= 4 * c and smem_bytes(c, cfg3) <= 232448 and regs <= 120:
                    out.append(cfg3)
    return out


def compile_only(widths: list[int], modes: tuple = MODES) -> None:
    """Compile every tile for sm_90 with the Triton installed here (no GPU): registers, spills, shared memory."""
    for c in widths:
        x, w2, w3 = (torch.empty(*shape, dtype=torch.bfloat16) for shape in ((256, c), (c, 4 * c), (4 * c, c)))
        for cfg in tiles(c, modes):
            descs = dict(zip(("x_desc", "w2_desc", "w3_desc"), descriptors(x, w2, w3, c, cfg["block_h"])))
            compile_tile(kernel(cfg), f"C={c}", cfg, constexprs(c, cfg), 4, "gluon_ws", lambda n: descs[n].__mangle__() if n in descs else None,
                         (("setmaxnreg", "setmaxnreg"), ("tma", "cp.async.bulk.tensor")))


def main() -> None:
    ap = arg_parser(__doc__)
    ap.add_argument("--modes", default=",".join(m for m in MODES if m not in ABLATIONS),
                    help=f"consumer modes to sweep, of {','.join(MODES)} (default all but the ablations {','.join(ABLATIONS)})")
    ap.add_argument("--repeat", default="1", help="comma-separated repeat counts for the noload and mma ablations: each "
                    "program runs its chunk loop that many times over, so fixed costs a program weigh less (e.g. 1,4,16)")
    ap.add_argument("--first", type=int, default=0, help="only the first N tiles a width (a smoke run: a kernel that hangs "
                    "hangs the process, so try one or two under a short timeout first)")
    a = ap.parse_args()
    widths = [int(w) for w in a.widths.split(",")]
    modes = tuple(a.modes.split(","))
    if not set(modes) <= set(MODES):
        ap.error(f"--modes {a.modes!r}: each must be one of {', '.join(MODES)}")
    if a.compile_only:
        return compile_only(widths, modes)

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    repeats = [int(r) for r in a.repeat.split(",")]

    def tiles_of(c: int) -> list[dict]:
        out = []
        for cfg in tiles(c, modes)[:a.first or None]:
            out += [cfg] if cfg["mode"] not in REPEATABLE else [{**cfg, **({"repeat": r} if r > 1 else {})} for r in repeats]
        return out
    sweep(out / "gluon_ws_chain.json", widths, a.batch, tiles_of, fused, "ws", unchecked=lambda cfg: cfg["mode"] in ABLATIONS, ceilings=a.ceilings)


if __name__ == "__main__":
    main()
