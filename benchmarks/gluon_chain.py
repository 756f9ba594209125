"""Can Triton's Gluon dialect take the expansion chain past what `tl` reaches? A probe for issue 19 (run 35).

`mlp_ceiling.py` found the chain (1x1 expand, SiLU, 1x1 project, on chip) tops out at 36-48 % of its fused roofline in
Triton's `tl`, and 45-54 % with its weights read from L1: what is left is the chain inside each program, whose SiLU
`tl` cannot overlap with the tensor cores (it waits for the expansion's wgmma before the SiLU, run 29). Gluon (Triton's
lower-level dialect, `triton.experimental.gluon`, in the H200's Triton 3.6) lets a kernel issue a wgmma asynchronously
and wait for it where it chooses. `_chain_kernel` uses that: while the SiLU of hidden chunk i runs on the CUDA cores,
the expansion of chunk i + 1 is already on the tensor cores:

    E(0) = x·W2[0]                                    (x: the tile's [BLOCK_P, C] in shared memory)
    for i: issue E(i+1) = x·W2[i+1] (async) ; P = SiLU(E(i) + b2) ; acc += P·W3[i] (async, P from registers) ; wait both

The weights stream from L2 through a ring of STAGES chunk slots in shared memory (cp.async, a group a chunk), as the
`tl` kernels' pipeliner does. With INFLIGHT (tiles with "inflight") it also leaves each chunk's projection in flight
into the next chunk. On the H200 (runs 35f, 35g) both were correct and 25-57 % slower than `tl`. Same math, widths and check as mlp_ceiling.py (its `make`, `reference`, `cost`); one
warpgroup (4 warps, 64 pixels a tile) or two (8 warps, 128 pixels).

    python3 benchmarks/gluon_chain.py --out $OUT [--widths 64,128,256]          (on the GPU)
    python3 benchmarks/gluon_chain.py --compile-only                            (sm_90 compile here, no GPU)
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
from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, warpgroup_mma, warpgroup_mma_init, warpgroup_mma_wait

# Triton 3.6 (the H200) names the cp.async copy async_copy_global_to_shared; 3.9 (here) renamed it async_load
_cp_async = getattr(async_copy, "async_load", None) or async_copy.async_copy_global_to_shared
_barrier = getattr(gl, "thread_barrier", None) or gl.barrier  # and thread_barrier barrier
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


@gluon.jit
def _silu(e):
    t = gl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=f,f", [e * 0.5], dtype=gl.float32, is_pure=True, pack=1)
    return e * (0.5 + 0.5 * t)


@gluon.jit
def _load_chunk(w2_s, w3_s, w2_ptr, w3_ptr, w2_off, w3_off, j, C: gl.constexpr, BLOCK_H: gl.constexpr, STAGES: gl.constexpr):
    """Chunk j's W2ᵀ [C, BLOCK_H] and W3ᵀ [BLOCK_H, C] into ring slot j % STAGES (cp.async), one commit group."""
    s = j % STAGES
    _cp_async(w2_s.index(s), w2_ptr + j * BLOCK_H + w2_off)
    _cp_async(w3_s.index(s), w3_ptr + j * BLOCK_H * C + w3_off)


@gluon.jit
def _chain_kernel(x_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr, out_ptr, NPIX, C: gl.constexpr, HID: gl.constexpr,
                  BLOCK_P: gl.constexpr, BLOCK_H: gl.constexpr, STAGES: gl.constexpr, SW_X: gl.constexpr, SW_W2: gl.constexpr,
                  SW_W3: gl.constexpr, WARPS: gl.constexpr, INFLIGHT: gl.constexpr = False):
    """out = x + b3 + SiLU(x·W2ᵀ + b2)·W3ᵀ for BLOCK_P pixels; w2 is W2ᵀ [C, HID], w3 is W3ᵀ [HID, C], row-major.
    Each chunk waits for its projection's wgmma and the next chunk's expansion, and the ring runs STAGES - 1 chunks ahead.
    INFLIGHT: each chunk's projection is left in flight until the next chunk's wait (run 35f: waiting for it in every
    chunk was the likely cost), as `tl`'s pipeliner does. Chunk i's wait is for at most one wgmma outstanding, so the
    projection of chunk i - 1 and the expansion of chunk i + 1 are done, chunk i's projection may still run: its register
    operand P is kept alive (a dependency of the next wait) and its W3 slot is not reloaded until then, so the ring runs
    STAGES - 2 chunks ahead, into the slot of chunk i - 2 (STAGES >= 4 keeps a chunk of prefetch)."""
    acc_l: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[WARPS, 1], instr_shape=[16, C, 16])
    e_l: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[WARPS, 1], instr_shape=[16, BLOCK_H, 16])
    p_l: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=acc_l, k_width=2)
    ld_l: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [WARPS, 1], [1, 0])
    x_sl: gl.constexpr = gl.NVMMASharedLayout(swizzle_byte_width=SW_X, element_bitwidth=16, rank=2)
    w2_sl: gl.constexpr = gl.NVMMASharedLayout(swizzle_byte_width=SW_W2, element_bitwidth=16, rank=2)
    w3_sl: gl.constexpr = gl.NVMMASharedLayout(swizzle_byte_width=SW_W3, element_bitwidth=16, rank=2)
    NCH: gl.constexpr = HID // BLOCK_H
    AHEAD: gl.constexpr = STAGES - 2 if INFLIGHT else STAGES - 1  # chunks the ring loads ahead of the one in use

    p0 = gl.program_id(0) * BLOCK_P
    rows = p0 + gl.arange(0, BLOCK_P, layout=gl.SliceLayout(1, ld_l))
    cols = gl.arange(0, C, layout=gl.SliceLayout(0, ld_l))
    x = gl.load(x_ptr + rows[:, None] * C + cols[None, :], mask=(rows < NPIX)[:, None], other=0.0)
    x_s = gl.allocate_shared_memory(gl.bfloat16, [BLOCK_P, C], x_sl, x)
    w2_s = gl.allocate_shared_memory(gl.bfloat16, [STAGES, C, BLOCK_H], w2_sl)
    w3_s = gl.allocate_shared_memory(gl.bfloat16, [STAGES, BLOCK_H, C], w3_sl)
    k = gl.arange(0, C, layout=gl.SliceLayout(1, ld_l))
    j = gl.arange(0, BLOCK_H, layout=gl.SliceLayout(0, ld_l))
    w2_off = k[:, None] * HID + j[None, :]
    h = gl.arange(0, BLOCK_H, layout=gl.SliceLayout(1, ld_l))
    w3_off = h[:, None] * C + cols[None, :]
    hb = gl.arange(0, BLOCK_H, layout=gl.SliceLayout(0, e_l))

    for s in gl.static_range(AHEAD):
        _load_chunk(w2_s, w3_s, w2_ptr, w3_ptr, w2_off, w3_off, s, C, BLOCK_H, STAGES)
        async_copy.commit_group()
    async_copy.wait_group(AHEAD - 1)  # chunk 0 is in
    _barrier()
    fence_async_shared()
    e = warpgroup_mma(x_s, w2_s.index(0), gl.zeros([BLOCK_P, BLOCK_H], gl.float32, e_l), use_acc=False)
    if INFLIGHT:
        acc = warpgroup_mma_init(gl.zeros([BLOCK_P, C], gl.float32, acc_l))  # a token from the start: the loop carries one
        p_prev = gl.zeros([BLOCK_P, BLOCK_H], gl.bfloat16, p_l)
    else:
        acc = gl.zeros([BLOCK_P, C], gl.float32, acc_l)
    for i in range(NCH - 1):
        _barrier()  # every warpgroup is done with the slot the ring reloads next
        if i + AHEAD < NCH:
            _load_chunk(w2_s, w3_s, w2_ptr, w3_ptr, w2_off, w3_off, i + AHEAD, C, BLOCK_H, STAGES)
        async_copy.commit_group()  # an empty group near the end keeps the count
        async_copy.wait_group(AHEAD - 1)  # chunk i + 1 is in
        _barrier()
        fence_async_shared()
        e_next = warpgroup_mma(x_s, w2_s.index((i + 1) % STAGES), gl.zeros([BLOCK_P, BLOCK_H], gl.float32, e_l), use_acc=False,
                               is_async=True)
        b2 = gl.load(b2_ptr + i * BLOCK_H + hb).to(gl.float32)
        p = gl.convert_layout(_silu(e + b2[None, :]).to(gl.bfloat16), p_l)  # while e_next runs on the tensor cores
        acc = warpgroup_mma(p, w3_s.index(i % STAGES), acc, is_async=True)
        if INFLIGHT:
            e, p_prev = warpgroup_mma_wait(1, deps=[e_next, p_prev])  # chunk i - 1's projection and chunk i + 1's expansion
            p_prev = p
        else:
            e, acc = warpgroup_mma_wait(0, deps=[e_next, acc])
    b2 = gl.load(b2_ptr + (NCH - 1) * BLOCK_H + hb).to(gl.float32)
    p = gl.convert_layout(_silu(e + b2[None, :]).to(gl.bfloat16), p_l)
    if INFLIGHT:
        acc = warpgroup_mma(p, w3_s.index((NCH - 1) % STAGES), acc, is_async=True)
        acc, p, p_prev = warpgroup_mma_wait(0, deps=[acc, p, p_prev])
    else:
        acc = warpgroup_mma(p, w3_s.index((NCH - 1) % STAGES), acc)

    orow = p0 + gl.arange(0, BLOCK_P, layout=gl.SliceLayout(1, acc_l))
    ocol = gl.arange(0, C, layout=gl.SliceLayout(0, acc_l))
    off = orow[:, None] * C + ocol[None, :]
    m = (orow < NPIX)[:, None]
    acc += gl.load(x_ptr + off, mask=m, other=0.0).to(gl.float32) + gl.load(b3_ptr + ocol).to(gl.float32)[None, :]
    gl.store(out_ptr + off, acc.to(gl.bfloat16), mask=m)


TL_BEST = {64: {"block_p": 64, "block_h": 64, "warps": 4, "stages": 2}, 128: {"block_p": 64, "block_h": 64, "warps": 4, "stages": 3},
           256: {"block_p": 128, "block_h": 64, "warps": 8, "stages": 2}}  # mlp_ceiling.py's fastest tiles, run 35b


def swizzle(row_elems: int) -> int:
    """The widest shared-memory swizzle a bf16 row of this length allows (128, 64 or 32 bytes)."""
    return min(128, 2 * row_elems)


def constexprs(c: int, cfg: dict) -> dict:
    return {"C": c, "HID": 4 * c, "BLOCK_P": cfg["block_p"], "BLOCK_H": cfg["block_h"], "STAGES": cfg["stages"],
            "SW_X": swizzle(c), "SW_W2": swizzle(cfg["block_h"]), "SW_W3": swizzle(c), "WARPS": cfg["warps"],
            "INFLIGHT": bool(cfg.get("inflight"))}


def fused(d: dict, cfg: dict):
    import mlp_ceiling

    return mlp_ceiling.launcher(d, _chain_kernel, cfg["block_p"], **constexprs(d["x"].shape[1], cfg), num_warps=cfg["warps"])


def tiles(c: int) -> list[dict]:
    """One warpgroup on 64 pixels or two on 128; 32-128 hidden channels a chunk; two or three ring slots (four with the
    projection in flight, so that a chunk of prefetch is left), where the slots and the tile fit the H200's 227 KB of
    shared memory and the accumulators a thread's registers."""
    out = []
    for inflight in (False, True):
        for bp, warps in ((64, 4), (128, 8)):
            for bh in (32, 64, 128):
                for stages in ((4,) if inflight else (2, 3)):
                    smem = 2 * (bp * c + stages * 2 * c * bh)
                    regs = (c + 2 * bh) * 64 // 128 + (bh // 2 if inflight else bh // 4)  # acc, two E chunks (fp32), P (bf16, two in flight)
                    if bh <= 4 * c and smem <= 232448 and regs <= 200:
                        out.append({"block_p": bp, "block_h": bh, "warps": warps, "stages": stages, **({"inflight": True} if inflight else {})})
    return out


def compile_tile(kernel, label: str, cfg: dict, cx: dict, num_warps: int, tag: str, sig_of=lambda n: None, counts=()) -> None:
    """Compile one tile of a Gluon kernel for sm_90 with the Triton installed here (no GPU) and print its registers,
    stack, shared memory and wgmma count (compile_sm90's cuobjdump reading), and how often each PTX string in `counts`
    occurs; a tile that fails prints its error's last line. `sig_of(name)` gives an argument's type where it is not a
    bf16 pointer (`*_ptr`) or an i32."""
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource

    import compile_sm90  # its cuobjdump reading of registers and stack

    names = kernel.arg_names
    sig = {n: (sig_of(n) or ("*bf16" if n.endswith("_ptr") else "i32")) for n in names if n not in cx}
    sig.update({n: "constexpr" for n in cx})
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names) if n.endswith("_ptr")}
    try:
        k = triton.compile(GluonASTSource(fn=kernel, signature=sig, constexprs=cx, attrs=attrs), target=GPUTarget("cuda", 90, 32),
                           options={"num_warps": num_warps})
        ptx = k.asm["ptx"]
        r = compile_sm90.resources(k, None, f"{tag}_{label}_{'_'.join(str(v) for v in cfg.values())}")
        print(f"{label} {cfg}: {r['regs']} registers, stack {r['stack_bytes']} B, shared {r['shared_bytes']} B, wgmma {r['wgmma']}"
              + "".join(f", {name} {ptx.count(needle)}" for name, needle in counts), flush=True)
    except Exception as e:  # noqa: BLE001 - report every tile's fate
        lines = [ln for ln in str(e).splitlines() if ln.strip()]
        print(f"{label} {cfg}: FAILED {type(e).__name__}: {(lines[-1] if lines else '')[:400]}", flush=True)


def compile_only(widths: list[int]) -> None:
    """Compile every tile for sm_90 with the Triton installed here (no GPU): registers, spills, shared memory."""
    for c in widths:
        for cfg in tiles(c):
            compile_tile(_chain_kernel, f"C={c}", cfg, constexprs(c, cfg), cfg["warps"], "gluon_chain", counts=(("wgmma waits", "wgmma.wait_group"),))


def sweep(path: Path, widths: list[int], batch: int, tiles_of, fused_of, label: str, unchecked=lambda cfg: False, ceilings: str | None = None) -> None:
    """Time every tile `tiles_of(c)` gives at each width against the `tl` chain at run 35b's best tile in the same
    process, writing `path` (JSON) after each: each tile is checked against PyTorch first and timed only if within
    mlp_ceiling.TOL, unless `unchecked(cfg)` (an ablation, wrong by design: timed, marked "ablation"). `fused_of(d, cfg)`
    returns (f, handle) as mlp_ceiling.launcher does."""
    import kernels_gpu
    import mlp_ceiling

    peak, bw, ceil_src = kernels_gpu.ceilings(ceilings, torch.cuda.get_device_name())
    result = {"meta": {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "torch": torch.__version__,
                       "triton": triton.__version__, "device": torch.cuda.get_device_name(), "ceilings": ceil_src,
                       "peak_bf16_flops": peak, "bandwidth_bytes_per_s": bw}, "shapes": []}
    for c in widths:
        side = mlp_ceiling.MAPS[c]
        npix = batch * side * side
        flops, nbytes = mlp_ceiling.cost(npix, c)
        roof_ms = 1e3 * max(flops / peak, nbytes / bw)
        d = mlp_ceiling.make(npix, c, "cuda", torch.bfloat16)
        ref = mlp_ceiling.reference(d)
        scale = ref.abs().max().item()
        row = {"width": c, "map": side, "npix": npix, "roofline_ms": roof_ms, "tiles": []}
        result["shapes"].append(row)
        if c in TL_BEST:  # the same chain in `tl` at run 35b's best tile, in this process, for a like-for-like comparison
            f, _ = mlp_ceiling.fused(d, TL_BEST[c], fast=True)
            ms, iqr = kernels_gpu.graph_time_ms(f, d["x"])
            row["tl_best"] = {**TL_BEST[c], "ms": ms, "iqr_ms": iqr, "of_roofline": roof_ms / ms}
            print(f"C={c} {side}² tl at run 35b's best tile {TL_BEST[c]}: {ms:.4f} ms (IQR {iqr:.4f}), {100 * roof_ms / ms:.0f} % of the fused roofline", flush=True)
        for cfg in tiles_of(c):
            t = dict(cfg)
            try:
                f, handle = fused_of(d, cfg)
                with torch.no_grad():
                    t["error"] = (f(d["x"]).float() - ref).abs().max().item() / scale
                k = handle.get("k")
                if k is not None and hasattr(k, "n_regs"):
                    t.update(n_regs=k.n_regs, n_spills=k.n_spills, shared_bytes=getattr(k.metadata, "shared", None))
                if unchecked(cfg):
                    t["ablation"] = True  # its output is wrong by design: timed, not checked
                if t["error"] <= mlp_ceiling.TOL or t.get("ablation"):
                    ms, iqr = kernels_gpu.graph_time_ms(f, d["x"])
                    work = cfg.get("repeat", 1)  # an ablation that runs its chunk loop `repeat` times does that much more work
                    t.update(ms=ms, iqr_ms=iqr, of_roofline=work * roof_ms / ms, tflops=work * flops / ms / 1e9)
                    if "summary" in handle:  # what the last timed launch recorded of itself (gluon_ws_chain's stamps)
                        t["stamps"] = handle["summary"]()
            except Exception as e:  # noqa: BLE001
                lines = str(e).splitlines() or [""]
                t["failed"] = f"{type(e).__name__}: {next((ln for ln in lines if 'ptxas fatal' in ln or 'error' in ln.lower()), lines[0])[:300]}"
            row["tiles"].append(t)
            print(f"C={c} {side}² {label} {cfg}: " + (f"{t['ms']:.4f} ms (IQR {t['iqr_ms']:.4f}), {100 * t['of_roofline']:.0f} % of the fused "
                  f"roofline, err {t['error']:.1e}, {t.get('n_regs')} registers, {t.get('n_spills')} spills" if "ms" in t else
                  f"not timed: {t.get('failed') or 'error %.2e over the tolerance' % t['error']}"), flush=True)
            if t.get("stamps"):
                print("    stamps (µs, median / IQR): " + ", ".join(f"{k} {v['median_us']:.2f} / {v['iqr_us']:.2f}" for k, v in t["stamps"].items()
                                                             if isinstance(v, dict)) + f"; clock {t['stamps']['clock_ghz']:.2f} GHz, span "
                      f"{t['stamps']['kernel_span_us']:.1f} µs", flush=True)
            path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")


def arg_parser(doc: str) -> argparse.ArgumentParser:
    """The chain scripts' common options (this one's and gluon_ws_chain.py's)."""
    import kernels_gpu

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--widths", default="64,128,256")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--compile-only", action="store_true", help="sm_90 compiles here, no GPU")
    kernels_gpu.add_ceilings_option(ap)
    return ap


def main() -> None:
    a = arg_parser(__doc__).parse_args()
    widths = [int(w) for w in a.widths.split(",")]
    if a.compile_only:
        return compile_only(widths)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    sweep(out / "gluon_chain.json", widths, a.batch, tiles, fused, "gluon", ceilings=a.ceilings)


if __name__ == "__main__":
    main()
