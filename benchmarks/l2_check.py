"""Does Nsight Compute's L2 read counter count every byte the SMs read from L2? A calibration for kernels_ncu.py.

Run 29 and 31b read c384's fused kernel at 86-90 MB of L2 reads (lts__t_sectors_op_read × 32), where the kernel's
arithmetic says each of its 98 programs streams the block's two 1x1 weights, 1536 × 384 bf16 each (2 × 1.18 MB), from
L2: at least 231 MB. Either the arithmetic or the counter's reading is wrong. Here a kernel whose bytes are known by
construction: `_read_all` has each of G programs read the same W bytes once (a sum, so nothing is optimised away; one
pass, so no program reads a byte twice and its L1 cannot serve a second read), so the L2 must serve G × W bytes (at
G = 1, W). Run under ncu with the L2 counters and the bytes L2 sent to the SMs' L1 (l1tex__m_xbar2l1tex_read_bytes),
beside c384's fused block; the rows come out in the order below:

    ncu --metrics lts__t_sectors_op_read.sum,lts__t_bytes.sum,l1tex__m_xbar2l1tex_read_bytes.sum,lts__t_sectors_srcunit_tex_op_read.sum \\
        --csv python3 benchmarks/l2_check.py

1. `_read_all`, 1 program, W = 2,359,296 B (the c384 weights' size): L2 must serve W;
2. `_read_all`, 98 programs: 98 W = 231,211,008 B;
3. `_read_all`, 98 programs, 32 elements (64 B) a load instead of 4096 (the same bytes in smaller requests);
4. c384's fused block at batch 64 (the defaults): at least 98 × 2,359,296 B by the arithmetic above.
Without a GPU: `python3 benchmarks/l2_check.py --dry` prints what it would launch.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

W_ELEMS = 2 * 1536 * 384  # c384's W2 and W3, bf16: 2,359,296 bytes


@triton.jit
def _read_all(w_ptr, out_ptr, N, BLOCK: tl.constexpr):
    """Each program sums all N elements of w once, BLOCK at a time, and writes its sum."""
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for i in range(0, N, BLOCK):
        o = i + tl.arange(0, BLOCK)
        acc += tl.load(w_ptr + o, mask=o < N, other=0.0).to(tl.float32)
    tl.store(out_ptr + tl.program_id(0), tl.sum(acc, 0))


def time_reads(reps: int = 50) -> int:
    """Median and IQR of `reps` CUDA-event timings of `_read_all` (after a warm-up, so the 2.36 MB sit in L2), and the
    bytes a second L2 served the SMs."""
    import statistics

    w = torch.randn(W_ELEMS, device="cuda", dtype=torch.bfloat16)
    out = torch.empty(256, device="cuda", dtype=torch.float32)
    # run 31d timed 4,096 elements (8 KB) a load on 8 warps: 131 us at 98 and at 132 programs, 1.8 and 2.4 TB/s, slower
    # than c384's fused kernel draws from L2 (253 MB in 70 us, 3.6 TB/s): one 8 KB load in flight a program measures the
    # load's latency, not L2's rate. So larger loads, more warps: the largest rate of these is the nearest to L2's.
    for g in (98, 132):
        for block, warps in ((4096, 8), (16384, 16), (32768, 16), (65536, 32)):
            for _ in range(5):
                _read_all[(g,)](w, out, W_ELEMS, BLOCK=block, num_warps=warps)
            ts = []
            for _ in range(reps):
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                _read_all[(g,)](w, out, W_ELEMS, BLOCK=block, num_warps=warps)
                b.record()
                b.synchronize()
                ts.append(a.elapsed_time(b))
            q = statistics.quantiles(ts, n=4)
            med = statistics.median(ts)
            print(f"read_all {g} programs, {block} elements a load, {warps} warps: {med * 1e3:.1f} us (IQR {(q[2] - q[0]) * 1e3:.1f}), "
                  f"{g * W_ELEMS * 2 / (med * 1e-3) / 1e12:.2f} TB/s from L2 to the SMs ({g * W_ELEMS * 2:,} B)", flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry", action="store_true", help="print the launches, run nothing")
    ap.add_argument("--time", action="store_true", help="instead: time _read_all at 98 and 132 programs (the bytes L2 serves the SMs "
                    "a second when every program reads the same 2.36 MB, as the fused kernels read their weights)")
    a = ap.parse_args()
    if a.time and torch.cuda.is_available():
        return time_reads()
    plan = [("read_all 1 program", 1, 4096), ("read_all 98 programs", 98, 4096), ("read_all 98 programs, 32-element blocks", 98, 32)]
    if a.dry or not torch.cuda.is_available():
        for name, g, b in plan:
            print(f"{name}: grid {g}, BLOCK {b}, expected L2 reads {g * W_ELEMS * 2:,} B")
        print("c384 fused block, batch 64: expected L2 reads at least 98 x 2,359,296 = 231,211,008 B")
        return 0 if a.dry else 2
    w = torch.randn(W_ELEMS, device="cuda", dtype=torch.bfloat16)
    out = torch.empty(128, device="cuda", dtype=torch.float32)
    for name, g, b in plan:
        _read_all[(g,)](w, out, W_ELEMS, BLOCK=b, num_warps=8)
        torch.cuda.synchronize()
        want = w.float().sum().item()
        print(f"{name}: grid {g}, sum {out[0].item():.1f} (torch {want:.1f}), expected L2 reads {g * W_ELEMS * 2:,} B", flush=True)
    import kernels_gpu as kg

    net = kg.randomise_bn(kg.effkit.build_model("convfirst_net").model).cuda()
    _, blk, hw = kg.distinct_shapes(net, kg.fusable_blocks(net))["c384"]
    assert hw == 7, hw
    x = torch.randn(64, 384, 7, 7, device="cuda", dtype=torch.bfloat16).to(memory_format=torch.channels_last)
    fused = kg.fused_copy(blk)
    with torch.no_grad():
        fused(x)
        torch.cuda.synchronize()
    print("c384 fused block, batch 64: expected L2 reads at least 231,211,008 B", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
