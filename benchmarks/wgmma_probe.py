"""How fast can a stream of m64 wgmmas run on the H200 at all? What bounds the chain's tensor-core path (issue 19, run 37).

Run 36 took the warp-specialised chain apart: without its SiLU and with no weights streamed, its tensor-core path (two
dependent wgmmas a chunk, M = 64 rows a warpgroup, operands from shared memory) reached 46-47 % of the fused roofline
(803.8 TFLOP/s, a large cuBLAS GEMM), and `tl`'s whole chain is already there. What bounds that path was left open: the
m64 instruction shape with its operands read from shared memory, or the chain's waits between dependent wgmmas.

`_probe_kernel` isolates the instruction stream. Each program loads an A tile [64·NWG, K] and a B tile [K, N] (bf16)
into shared memory once, then issues ITERS wgmmas of m64·nN·kK a warpgroup into one fp32 accumulator: with WAIT 0 it
waits for each before issuing the next (as the chain does), with WAIT 1 it keeps one in flight (as a GEMM main loop
does). With A_REG, A comes from registers (as the chain's projection takes P). No global memory is touched inside the
loop, so the rate is the tensor cores' and the shared-memory operand path's alone. Programs: CTAS a multiprocessor on
every multiprocessor. Rate = 2·64·N·K·ITERS·NWG·programs / time, against the card's measured bf16 ceiling (--ceilings,
refused when measured on another card; the H200's 803.8 TFLOP/s by default). A rate above it is flagged in the log
and the JSON (`above_ceiling`): the ceiling is a large GEMM's achieved rate, measured idle, not the tensor cores'
peak, and a loop that moves no data may hold a higher clock than the GEMM. (Run 51, on the H100, divided by the H200's
ceiling, as this script then always did, and printed up to 114 % without a flag: 919 TFLOP/s, 131 % of the H100's own
703.7.)

Each configuration is checked first (small integers, so bf16 products and fp32 sums are exact: every output element must
be ITERS times the reference product's), then timed as the other scripts time (kernels_gpu.graph_time_ms: the median of
200 CUDA-graph replays, IQR beside it).

On the H200 (run 37, benchmarks/README.md) every configuration on random data ran at 72-112 % of the 803.8 TFLOP/s
ceiling the fused rooflines use (up to 119 % on small integers): above 100 % is flagged there as the ceiling being a
large GEMM's achieved rate, not the tensor cores' peak; the chain's pair with two warpgroups a program ran at 93-106 %.

    python3 benchmarks/wgmma_probe.py --out $OUT [--data random|ints] [--ceilings FILE]   (on the GPU)
    python3 benchmarks/wgmma_probe.py --compile-only                   (sm_90 compile here, no GPU)
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, warpgroup_mma, warpgroup_mma_wait

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from gluon_chain import compile_tile, swizzle  # noqa: E402

PEAK = 803.8e12  # bf16 FLOP/s, results/h200/ceilings.json: only sets ITERS (each launch's length); rates compare with --ceilings'


@gluon.jit
def _chain_probe(a_s, b_s, b2_ptr, out_ptr, ITERS, N: gl.constexpr, K: gl.constexpr, NWG: gl.constexpr, SW_A: gl.constexpr,
                 ld_l: gl.constexpr):
    """The chain's two dependent wgmmas, alone: each iteration E = A·B ([64·NWG, K] x [K, N], waited for), P = E in bf16
    as a register operand, acc += P·B2 ([N, K], waited for). No loads, no SiLU, no barriers, no epilogue in the loop."""
    M: gl.constexpr = 64 * NWG
    acc_l: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4 * NWG, 1], instr_shape=[16, K, 16])
    e_l: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4 * NWG, 1], instr_shape=[16, N, 16])
    p_l: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=acc_l, k_width=2)
    nb = gl.arange(0, N, layout=gl.SliceLayout(1, ld_l))
    kb = gl.arange(0, K, layout=gl.SliceLayout(0, ld_l))
    b2 = gl.load(b2_ptr + nb[:, None] * K + kb[None, :])
    b2_s = gl.allocate_shared_memory(gl.bfloat16, [N, K], gl.NVMMASharedLayout(swizzle_byte_width=SW_A, element_bitwidth=16, rank=2), b2)
    fence_async_shared()
    acc = gl.zeros([M, K], gl.float32, acc_l)
    e0 = gl.zeros([M, N], gl.float32, e_l)
    for _ in range(ITERS):
        e = warpgroup_mma(a_s, b_s, e0, use_acc=False, is_async=True)
        e = warpgroup_mma_wait(0, deps=[e])
        p = gl.convert_layout(e.to(gl.bfloat16), p_l)
        acc = warpgroup_mma(p, b2_s, acc, is_async=True)
        acc, p = warpgroup_mma_wait(0, deps=[acc, p])
    ro = gl.arange(0, M, layout=gl.SliceLayout(1, acc_l))
    ko = gl.arange(0, K, layout=gl.SliceLayout(0, acc_l))
    gl.store(out_ptr + gl.program_id(0) * M * K + ro[:, None] * K + ko[None, :], acc)


@gluon.jit
def _probe_kernel(a_ptr, b_ptr, out_ptr, ITERS, N: gl.constexpr, K: gl.constexpr, NWG: gl.constexpr, WAIT: gl.constexpr,
                  A_REG: gl.constexpr, SW_A: gl.constexpr, SW_B: gl.constexpr, CHAIN: gl.constexpr = False, b2_ptr=None):
    """ITERS wgmmas of [64·NWG, K] x [K, N] into one accumulator; the accumulator is stored (so the loop is not dead).
    CHAIN: instead, the chain's pair of dependent wgmmas an iteration (`_chain_probe`; out is [64·NWG, K] a program)."""
    M: gl.constexpr = 64 * NWG
    ld_l: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [4 * NWG, 1], [1, 0])
    ra = gl.arange(0, M, layout=gl.SliceLayout(1, ld_l))
    ka = gl.arange(0, K, layout=gl.SliceLayout(0, ld_l))
    a = gl.load(a_ptr + ra[:, None] * K + ka[None, :])
    kb = gl.arange(0, K, layout=gl.SliceLayout(1, ld_l))
    nb = gl.arange(0, N, layout=gl.SliceLayout(0, ld_l))
    b = gl.load(b_ptr + kb[:, None] * N + nb[None, :])
    a_s = gl.allocate_shared_memory(gl.bfloat16, [M, K], gl.NVMMASharedLayout(swizzle_byte_width=SW_A, element_bitwidth=16, rank=2), a)
    b_s = gl.allocate_shared_memory(gl.bfloat16, [K, N], gl.NVMMASharedLayout(swizzle_byte_width=SW_B, element_bitwidth=16, rank=2), b)
    fence_async_shared()
    if CHAIN:
        _chain_probe(a_s, b_s, b2_ptr, out_ptr, ITERS, N, K, NWG, SW_A, ld_l)
    else:
        acc_l: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4 * NWG, 1], instr_shape=[16, N, 16])
        acc = gl.zeros([M, N], gl.float32, acc_l)
        if A_REG:
            a_r = gl.convert_layout(a, gl.DotOperandLayout(operand_index=0, parent=acc_l, k_width=2))
            for _ in range(ITERS):
                acc = warpgroup_mma(a_r, b_s, acc, is_async=True)
                if WAIT == 0:
                    acc = warpgroup_mma_wait(0, deps=[acc])
                else:
                    acc, a_r = warpgroup_mma_wait(1, deps=[acc, a_r])
        else:
            for _ in range(ITERS):
                acc = warpgroup_mma(a_s, b_s, acc, is_async=True)
                if WAIT == 0:
                    acc = warpgroup_mma_wait(0, deps=[acc])
                else:
                    acc = warpgroup_mma_wait(1, deps=[acc])
        if WAIT == 1:
            acc = warpgroup_mma_wait(0, deps=[acc])
        ro = gl.arange(0, M, layout=gl.SliceLayout(1, acc_l))
        no = gl.arange(0, N, layout=gl.SliceLayout(0, acc_l))
        gl.store(out_ptr + gl.program_id(0) * M * N + ro[:, None] * N + no[None, :], acc)


def configs(shapes: str = "chain") -> list[dict]:
    """The stream: N 64-256, K 64-128 a wgmma call (4-8 k16 instructions), one or two warpgroups a program, one or two
    programs a multiprocessor (in the grid: resident together only where registers and shared memory allow), each wait
    policy, A from shared memory or registers. The chain (chain: True): hidden
    chunk N 64-128, width K 64-256, one or two warpgroups, one or two programs an SM.
    shapes "conv": the Gluon block's tensor-core grouped conv instead (gluon_block.py's tc modes: m64 n16 k16 against a
    block-diagonal [16, 16] weight, A from registers), beside N 32, 64 and 128 at the same K, so that the rate of its
    narrow instruction is read against wider ones in one run, on one card."""
    out = []
    if shapes == "conv":
        for n, nwg, wait in itertools.product((16, 32, 64, 128), (1, 2), (0, 1)):
            out.append({"n": n, "k": 16, "nwg": nwg, "ctas": 1, "wait": wait, "a_reg": True})
        for wait in (0, 1):  # the chain's expansion at 128 channels (block_h 64), for reference
            out.append({"n": 64, "k": 128, "nwg": 2, "ctas": 1, "wait": wait, "a_reg": False})
        return out
    for n, k, nwg, ctas, wait, a_reg in itertools.product((64, 128, 256), (64, 128), (1, 2), (1, 2), (0, 1), (False, True)):
        smem = 2 * (64 * nwg * k + k * n)
        regs = n // 2 + (k // 4 if a_reg else 0)  # accumulator (fp32) and A (bf16) a thread
        if ctas * smem <= 232448 and regs <= 200:
            out.append({"n": n, "k": k, "nwg": nwg, "ctas": ctas, "wait": wait, "a_reg": a_reg})
    for n, k, nwg, ctas in itertools.product((64, 128), (64, 128, 256), (1, 2), (1, 2)):
        smem = 2 * (64 * nwg * k + 2 * k * n)
        regs = n // 2 + n // 4 + k // 2  # E (fp32), P (bf16), the accumulator (fp32) a thread
        if ctas * smem <= 232448 and regs <= 200:
            out.append({"chain": True, "n": n, "k": k, "nwg": nwg, "ctas": ctas, "wait": 0, "a_reg": False})
    return out


def constexprs(cfg: dict) -> dict:
    return {"N": cfg["n"], "K": cfg["k"], "NWG": cfg["nwg"], "WAIT": cfg["wait"], "A_REG": cfg["a_reg"], "SW_A": swizzle(cfg["k"]),
            "SW_B": swizzle(cfg["n"]), "CHAIN": bool(cfg.get("chain"))}


def flops_per_iter(cfg: dict, sms: int) -> int:
    """FLOPs one loop iteration does over the grid: [64·warpgroups, K] x [K, N] (2 FLOPs a MAC) on every program, twice
    for the chain (its projection [64·warpgroups, N] x [N, K] has the same MACs)."""
    return 2 * 64 * cfg["nwg"] * cfg["n"] * cfg["k"] * sms * cfg["ctas"] * (2 if cfg.get("chain") else 1)


def describe(cfg: dict) -> str:
    m = 64 * cfg["nwg"]
    where = f"{cfg['nwg']} warpgroups, {cfg['ctas']} a multiprocessor"
    if cfg.get("chain"):
        return f"chain m{m}: [{m}, {cfg['k']}] x [{cfg['k']}, {cfg['n']}], then x [{cfg['n']}, {cfg['k']}] ({where})"
    return f"m{m} n{cfg['n']} k{cfg['k']} ({where}, wait {cfg['wait']}, A from {'registers' if cfg['a_reg'] else 'shared'})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--compile-only", action="store_true", help="sm_90 compile here, no GPU")
    ap.add_argument("--target-ms", type=float, default=0.5, help="each launch's length at the peak rate (sets ITERS)")
    ap.add_argument("--data", choices=("ints", "random"), default="random",
                    help="random: normal bf16 values, as the chain's (checked within 1e-2 of the fp32 product's scale); ints: "
                    "small integers, checked exactly (a fifth or a third of them zero: less power, higher clocks)")
    ap.add_argument("--shapes", choices=("chain", "conv"), default="chain",
                    help="chain: the chain's wgmma shapes (run 37); conv: the tensor-core grouped conv's m64 n16 k16 beside n32-n128")
    import kernels_gpu

    kernels_gpu.add_ceilings_option(ap)
    a = ap.parse_args()
    if a.compile_only:
        for cfg in configs(a.shapes):
            compile_tile(_probe_kernel, "probe", cfg, constexprs(cfg), 4 * cfg["nwg"], "wgmma_probe",
                         lambda n: "*fp32" if n == "out_ptr" else None, (("wgmma waits", "wgmma.wait_group"),))
        return
    if not a.out:
        ap.error("--out is required (or --compile-only)")
    peak, _, ceil_src = kernels_gpu.ceilings(a.ceilings, torch.cuda.get_device_name())
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    res = {"meta": {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "torch": torch.__version__,
                    "triton": triton.__version__, "device": torch.cuda.get_device_name(), "sms": sms, "peak_flops": peak, "ceilings": ceil_src,
                    "data": a.data, "shapes": a.shapes}, "configs": []}
    path = out / "wgmma_probe.json"
    g = torch.Generator().manual_seed(0)
    for cfg in configs(a.shapes):
        n, k, nwg, chain = cfg["n"], cfg["k"], cfg["nwg"], bool(cfg.get("chain"))
        m, progs = 64 * nwg, sms * cfg["ctas"]
        per_iter = flops_per_iter(cfg, sms)
        iters = max(16, int(a.target_ms * 1e-3 * PEAK / per_iter))
        if a.data == "ints":  # {-1, 0, 1} for the chain, so that E (|E| <= 256) is exact in bf16
            lo = -1 if chain else -2
            mk = lambda *shape: torch.randint(lo, -lo + 1, shape, generator=g).to("cuda", torch.bfloat16)  # noqa: E731
        else:
            mk = lambda *shape: (torch.randn(*shape, generator=g) / shape[0] ** 0.5).to("cuda", torch.bfloat16)  # noqa: E731
        A, B, B2 = mk(m, k), mk(k, n), mk(n, k)
        C = torch.empty(progs, m, k if chain else n, device="cuda", dtype=torch.float32)
        t = dict(cfg, iters=iters, programs=progs)
        try:
            def f(_x, it=iters):
                return _probe_kernel[(progs,)](A, B, C, it, **constexprs(cfg), b2_ptr=B2, num_warps=4 * nwg)
            f(None, 3)
            ref = A.float() @ B.float()
            ref = 3 * ((ref.to(torch.bfloat16).float() @ B2.float()) if chain else ref)
            err = (C - ref).abs().max().item() / ref.abs().max().item()
            t["error"] = err
            if err <= (0 if a.data == "ints" else 1e-2):  # small integers: exact in bf16 and fp32
                ms, iqr = kernels_gpu.graph_time_ms(f, None)
                t.update(ms=ms, iqr_ms=iqr, tflops=per_iter * iters / ms / 1e9, of_peak=per_iter * iters / (ms * 1e-3) / peak)
                t["above_ceiling"] = t["of_peak"] > 1
        except Exception as e:  # noqa: BLE001 - report every configuration's fate
            t["failed"] = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"
        res["configs"].append(t)
        print(f"{describe(cfg)}: " + (rate_line(t) if "ms" in t else f"not timed: {t.get('failed') or 'error %.1e' % t['error']}"), flush=True)
        path.write_text(json.dumps(res, indent=1))
    if a.shapes == "conv":
        print(conv_summary(res["configs"]))
    print(f"wrote {path}")


def rate_line(t: dict) -> str:
    """A timed configuration's rate, its time's spread and its share of the ceiling, flagged above 100 %."""
    line = f"{t['tflops']:.0f} TFLOP/s (IQR of the time {100 * t['iqr_ms'] / t['ms']:.1f} %), {100 * t['of_peak']:.0f} % of the ceiling"
    if t["of_peak"] > 1:
        line += (" ⚠ above the ceiling: a measurement problem to read, not a result (the ceiling is a large GEMM's rate measured idle; "
                 "this loop moves no data and may hold a higher clock); compare these rates with each other only")
    return line


def conv_summary(rows: list[dict]) -> str:
    """The answer run 50 asked for: the conv's m64 n16 k16 rate (FLOP/s) as a share of the widest K-16 shape's and of the
    chain's expansion (n64 k128, two warpgroups) at the same wait policy; ratios within one run, so on one card."""
    rate = {(r["n"], r["k"], r["nwg"], r["wait"]): r["tflops"] for r in rows if "tflops" in r}
    out = []
    for nwg in (1, 2):
        for wait in (0, 1):
            n16, n128, chain = rate.get((16, 16, nwg, wait)), rate.get((128, 16, nwg, wait)), rate.get((64, 128, 2, wait))
            if n16 is None:
                continue
            out.append(f"m64 n16 k16 ({nwg} warpgroup{'s' if nwg > 1 else ''}, wait {wait}): {n16:.0f} TFLOP/s"
                       + (f", {100 * n16 / n128:.0f} % of n128 k16's {n128:.0f}" if n128 else "")
                       + (f", {100 * n16 / chain:.0f} % of the chain's n64 k128 {chain:.0f}" if chain else ""))
    return "\n".join(out) or "no conv shape was timed"


if __name__ == "__main__":
    main()
