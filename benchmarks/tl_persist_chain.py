"""The `tl` expansion chain made persistent, its loop nest flattened, its x tile and output moved by TMA (issue 19, run 38).

Run 37 found what holds the chain to 41-48 % of its fused roofline: not the tensor cores (the wgmma pair alone runs at
93-106 % of the ceiling, the warp-specialised kernel's chunk loop at 81-111 %) but costs paid once a tile, about half
the time at batch 64, where a tile holds only 4-8 chunks: the epilogue (2.5 of a consumer's 8.7 us at 128 channels), the
gap between one program's end and the next one's start on a multiprocessor (1.0 us), the x tile's load (0.6-1.1 us).
Those were measured in the Gluon kernels; `tl` (mlp_ceiling.py), still the fastest chain at 64 and 128 channels, was not
taken apart. This script does both for `tl`, with the design Triton's own persistent GEMM uses on Hopper (its tutorial
09, `tl.range(..., flatten=True)`):

  - `repeat` R: the chunk loop runs R times over the hidden channels (the weights streamed from L2 every pass, the
    output x + b3 + R·SiLU(x·W2ᵀ + b2)·W3ᵀ), so that time = fixed + R·loop separates what a tile costs once from the
    loop's steady rate, as run 37c did for the Gluon kernel (there with the weights in L1);
  - `persist` k: k programs a multiprocessor, each looping over tiles (the grid is k·SMs), so a program's start is
    paid once, not once a tile;
  - `flatten`: the tile loop and the chunk loop as one loop for Triton's pipeliner, which then loads the next tile's
    first weight chunks while this tile's last chunks and epilogue run (without it the pipeliner sees the chunk loop
    only, and every tile starts cold). An sm_90 compile here shows what it does not do: the x tile's load stays a
    plain load at the tile's start;
  - `prefetch_x`: so the next tile's x is loaded by hand a tile early (issued at this tile's start, waited for only
    where the next tile uses it; 23-34 more registers a thread at 64-128 channels, spills at 256);
  - `tma_io` 1: the x tile loaded by a tensor descriptor (TMA: one instruction a tile, through shared memory) instead
    of every thread's loads; 2: the output tile stored so; 3: both. `epi_split` 2 stores the output in two halves of its
    channels (half the store's shared buffer; the whole tile's does not fit beside the weights at 256 channels).

Compiled for sm_90 here (Triton 3.9; the H200's is 3.6, whose registers differ, runs 31 and 37): every variant compiles
but x by TMA inside a flattened loop (3.9's TMA lowering pass fails on it; kept in the sweep, where 3.6 may differ), and
at 256 channels the flattened ones with the output by TMA ask 262 KB of shared memory, over the 227 KB a program may
have (their launches will fail and be recorded so).

On the H200 (run 38, benchmarks/README.md) nothing beat the plain kernel: persistent grids, flattening and TMA each
lost at every width; x prefetched in a flattened loop gave wrong outputs there (caught by the check, not timed) though
right in the interpreter; x by TMA in a flattened loop failed 3.6's TMA lowering too; and the repeat form failed its
own check (fixed + R·loop from R = 4 and 16 predicts R = 1 32-45 % too slow: the chunk index mod HID makes it other
code), so it splits nothing.

`_chain_kernel` with none of them is mlp_ceiling's `_mlp_kernel` (the same math; the stages as a launch option, not on
the chunk loop) and is timed beside run 35b's best `tl` tile in the same process (gluon_chain.sweep). Same math, widths,
check, timer and roofline as mlp_ceiling.py; every tile but repeat > 1 is checked against PyTorch before it is timed,
repeat > 1 is timed unchecked (its output is R times the chain's; the CPU test checks that form in the interpreter).

    python3 benchmarks/tl_persist_chain.py --out $OUT [--widths 64,128,256]      (on the GPU)
    python3 benchmarks/tl_persist_chain.py --compile-only                       (sm_90 compile here, no GPU)
    TRITON_INTERPRET=1 python3 benchmarks/tl_persist_chain.py --smoke           (every variant on the CPU, fp32, small)
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from gluon_chain import TL_BEST, arg_parser, sweep  # noqa: E402

SMS = 132  # the H200's multiprocessors: the persistent grids' size for --compile-only (the GPU run asks the device)


@triton.jit
def _x_tile(x_ptr, x_desc, t, NPIX, C: tl.constexpr, BLOCK_P: tl.constexpr, TMA: tl.constexpr):
    """Tile t's x [BLOCK_P, C] (zeros past NPIX: a tile past the last one is all zeros), by TMA or by every thread."""
    if TMA:
        x = x_desc.load([t * BLOCK_P, 0])
    else:
        p = t * BLOCK_P + tl.arange(0, BLOCK_P)
        x = tl.load(x_ptr + p[:, None] * C + tl.arange(0, C)[None, :], mask=(p < NPIX)[:, None], other=0.0)
    return x


@triton.jit
def _chain_kernel(x_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr, out_ptr, NPIX, C: tl.constexpr, HID: tl.constexpr, BLOCK_P: tl.constexpr,
                  BLOCK_H: tl.constexpr, NPROG: tl.constexpr, FLATTEN: tl.constexpr, TMA_IO: tl.constexpr, REPEAT: tl.constexpr,
                  FAST: tl.constexpr, PREFETCH_X: tl.constexpr = False, EPI_SPLIT: tl.constexpr = 1):
    """out = x + b3 + REPEAT·SiLU(x·W2ᵀ + b2)·W3ᵀ, tile after tile of BLOCK_P pixels (NPROG programs, each taking every
    NPROG-th tile); w2 is W2ᵀ [C, HID] and w3 is W3ᵀ [HID, C], row-major. NPROG = the number of tiles: one tile a
    program, mlp_ceiling's kernel. EPI_SPLIT 2 (with the output by TMA): the output tile stored as two halves of its
    channels, so the store's shared buffer is half the tile (at 256 channels the whole tile's 64 KB does not fit beside the
    weights' stages), as tutorial 09's EPILOGUE_SUBTILE does."""
    c = tl.arange(0, C)
    b3 = tl.load(b3_ptr + c).to(tl.float32)
    if TMA_IO % 2:
        x_desc = tl.make_tensor_descriptor(x_ptr, shape=[NPIX, C], strides=[C, 1], block_shape=[BLOCK_P, C])
    else:
        x_desc = x_ptr  # unused: _x_tile takes the pointer
    if TMA_IO >= 2:
        o_desc = tl.make_tensor_descriptor(out_ptr, shape=[NPIX, C], strides=[C, 1], block_shape=[BLOCK_P, C // EPI_SPLIT])
    ntiles = tl.cdiv(NPIX, BLOCK_P)
    t_out = tl.program_id(0) - NPROG  # the epilogue's own tile counter, as tutorial 09 keeps one: a value used both
    # before and after the chunk loop is what its note says Triton's pipelining of a flattened nest could not handle
    if PREFETCH_X:
        x_next = _x_tile(x_ptr, x_desc, tl.program_id(0), NPIX, C, BLOCK_P, TMA_IO % 2)
    for t in tl.range(tl.program_id(0), ntiles, NPROG, flatten=FLATTEN):
        if PREFETCH_X:  # this tile's x came a tile early; the next one's is issued now and waited for only where used
            x = x_next
            x_next = _x_tile(x_ptr, x_desc, t + NPROG, NPIX, C, BLOCK_P, TMA_IO % 2)
        else:
            x = _x_tile(x_ptr, x_desc, t, NPIX, C, BLOCK_P, TMA_IO % 2)
        acc = tl.zeros((BLOCK_P, C), dtype=tl.float32)
        for h in tl.range(0, REPEAT * HID, BLOCK_H):
            if REPEAT > 1:
                j = h % HID + tl.arange(0, BLOCK_H)
            else:
                j = h + tl.arange(0, BLOCK_H)
            e = tl.dot(x, tl.load(w2_ptr + c[:, None] * HID + j[None, :])) + tl.load(b2_ptr + j).to(tl.float32)[None, :]
            if FAST:  # x·σ(x) = x·(1 + tanh(x/2))/2, one tanh.approx a value (CUDA only), as mlp_ceiling's kernel
                th = tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=f,f", [e * 0.5], dtype=tl.float32, is_pure=True, pack=1)
                e = e * (0.5 + 0.5 * th)
            else:
                e = e * tl.sigmoid(e)
            acc = tl.dot(e.to(w3_ptr.dtype.element_ty), tl.load(w3_ptr + j[:, None] * C + c[None, :]), acc)
        acc += x.to(tl.float32) + b3[None, :]
        t_out += NPROG
        if TMA_IO >= 2 and EPI_SPLIT == 2:
            lo, hi = tl.split(tl.permute(tl.reshape(acc, (BLOCK_P, 2, C // 2)), (0, 2, 1)))  # channels [0, C/2) and [C/2, C)
            o_desc.store([t_out * BLOCK_P, 0], lo.to(out_ptr.dtype.element_ty))
            o_desc.store([t_out * BLOCK_P, C // 2], hi.to(out_ptr.dtype.element_ty))
        elif TMA_IO >= 2:
            o_desc.store([t_out * BLOCK_P, 0], acc.to(out_ptr.dtype.element_ty))
        else:
            q = t_out * BLOCK_P + tl.arange(0, BLOCK_P)
            tl.store(out_ptr + q[:, None] * C + c[None, :], acc.to(out_ptr.dtype.element_ty), mask=(q < NPIX)[:, None])


def programs(npix: int, cfg: dict, sms: int) -> int:
    """The grid: one program a tile, or (persist k) k programs a multiprocessor, never more than there are tiles."""
    ntiles = -(-npix // cfg["block_p"])
    return min(ntiles, cfg["persist"] * sms) if cfg.get("persist") else ntiles


def constexprs(c: int, hidden: int, npix: int, cfg: dict, sms: int, fast: bool) -> dict:
    return {"C": c, "HID": hidden, "BLOCK_P": cfg["block_p"], "BLOCK_H": cfg["block_h"], "NPROG": programs(npix, cfg, sms),
            "FLATTEN": bool(cfg.get("flatten")), "TMA_IO": int(cfg.get("tma_io", 0)), "REPEAT": cfg.get("repeat", 1), "FAST": fast,
            "PREFETCH_X": bool(cfg.get("prefetch_x")), "EPI_SPLIT": cfg.get("epi_split", 1)}


def _scratch(size: int, alignment: int, stream):
    """Global memory for the device-side tensor descriptors (Triton asks for it at launch when TMA_IO is on)."""
    return torch.empty(size, dtype=torch.int8, device="cuda")


def fused(d: dict, cfg: dict, sms: int | None = None, fast: bool | None = None):
    """(f, handle) as mlp_ceiling.launcher gives: f(x) runs `_chain_kernel` at tile `cfg` over d's pixels."""
    import mlp_ceiling

    x = d["x"]
    npix, c = x.shape
    cuda = x.is_cuda
    sms = sms or (torch.cuda.get_device_properties(x.device).multi_processor_count if cuda else 3)
    cx = constexprs(c, d["W2"].shape[0], npix, cfg, sms, cuda if fast is None else fast)
    if cfg.get("tma_io") and cuda:
        triton.set_allocator(_scratch)
    return mlp_ceiling.launcher(d, _chain_kernel, cfg["block_p"], grid=cx["NPROG"], **cx, num_warps=cfg["warps"], num_stages=cfg["stages"])


VARIANTS = (  # (persist, flatten, tma_io, prefetch_x); persist 0: one tile a program; tma_io 1: x by TMA, 2: the output, 3: both
    (0, False, 0, False), (0, False, 2, False), (0, False, 3, False),
    (1, False, 0, False), (1, True, 0, False), (1, True, 2, False), (1, True, 0, True), (1, True, 2, True), (1, False, 3, True),
    (1, True, 3, False),  # x by TMA in a flattened loop: Triton 3.9's TMA lowering fails on it here; 3.6's may not
    (2, False, 0, False), (2, True, 0, False), (2, True, 2, True))
REPEATS = (4, 16)  # run on the plain kernel and on the persistent flattened one, beside their repeat-1 tiles


def tiles(c: int) -> list[dict]:
    """Run 35b's best `tl` tile at this width, in every variant, and the repeats of two of them."""
    base = TL_BEST[c]
    split = {"epi_split": 2} if c >= 256 else {}  # the output tile's store buffer halved: a whole one does not fit at 256
    out = [{**base, "persist": p, "flatten": fl, "tma_io": tm, "prefetch_x": px, **(split if tm >= 2 else {})} for p, fl, tm, px in VARIANTS]
    out += [{**base, "persist": p, "flatten": fl, "tma_io": 0, "prefetch_x": False, "repeat": r} for p, fl in ((0, False), (1, True))
            for r in REPEATS]
    return out


def compile_only(widths: list[int], batch: int) -> None:
    """Compile every tile for sm_90 with the Triton installed here (no GPU): registers, spills, shared memory, and the
    TMA and cp.async instructions in the PTX (the pipeliner's work is visible as cp.async or TMA loads ahead of use)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    import compile_sm90
    import mlp_ceiling

    names = _chain_kernel.arg_names
    for c in widths:
        npix = batch * mlp_ceiling.MAPS[c] ** 2
        for cfg in tiles(c):
            cx = constexprs(c, 4 * c, npix, cfg, SMS, True)
            sig = {n: ("*bf16" if n.endswith("_ptr") else "constexpr" if n in cx else "i32") for n in names}
            attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names) if n.endswith("_ptr") or n == "NPIX"}
            try:
                k = triton.compile(ASTSource(fn=_chain_kernel, signature=sig, constexprs=cx, attrs=attrs), target=GPUTarget("cuda", 90, 32),
                                   options={"num_warps": cfg["warps"], "num_stages": cfg["stages"]})
                ptx = k.asm["ptx"]
                r = compile_sm90.resources(k, None, f"tl_persist_{c}_{'_'.join(str(v) for v in cfg.values())}")
                print(f"C={c} {cfg}: {r['regs']} registers, stack {r['stack_bytes']} B, shared {r['shared_bytes']} B, wgmma {r['wgmma']}, "
                      f"TMA copies {ptx.count('cp.async.bulk.tensor')}, cp.async {ptx.count('cp.async.ca') + ptx.count('cp.async.cg')}", flush=True)
            except Exception as e:  # noqa: BLE001 - report every tile's fate
                lines = [ln for ln in str(e).splitlines() if ln.strip()]
                print(f"C={c} {cfg}: FAILED {type(e).__name__}: {(lines[-1] if lines else '')[:400]}", flush=True)


def check_variants(sms: int = 2) -> list[tuple[dict, float]]:
    """Every variant, at repeat 1 and 2, in Triton's interpreter on a small map (fp32) against PyTorch: (tile, max error)
    each. 53 pixels in tiles of 16 leave a ragged last tile; `sms` 2 gives the persistent grids 2 and 4 programs of 4 tiles."""
    import mlp_ceiling

    if os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("--smoke needs TRITON_INTERPRET=1 in the environment (before Triton is imported)")
    d = mlp_ceiling.make(2 * 5 * 5 + 3, 16, "cpu", torch.float32)
    ref = mlp_ceiling.reference(d)
    out = []
    for p, fl, tm, px in VARIANTS:
        for r, split in ((1, 1), (2, 2 if tm >= 2 else 1)):  # the output's store in halves tried at repeat 2
            cfg = {"block_p": 16, "block_h": 16, "warps": 4, "stages": 2, "persist": p, "flatten": fl, "tma_io": tm, "prefetch_x": px, "repeat": r,
                   "epi_split": split}
            f, _ = fused(d, cfg, sms=sms, fast=False)
            want = ref if r == 1 else d["x"] + d["b3"] + r * (ref - d["x"] - d["b3"])  # R times the chain, once the residual
            err = (f(d["x"]) - want).abs().max().item()  # NaN where a tile went unwritten (launcher fills it with NaN here)
            out.append((cfg, err if err == err else float("inf")))
    return out


def main() -> None:
    ap = arg_parser(__doc__)
    ap.add_argument("--smoke", action="store_true", help="every variant on the CPU in Triton's interpreter (TRITON_INTERPRET=1)")
    a = ap.parse_args()
    widths = [int(w) for w in a.widths.split(",")]
    bad = [w for w in widths if w not in TL_BEST]
    if bad:
        ap.error(f"--widths: {bad[0]} has no best `tl` tile from run 35b; choose from {sorted(TL_BEST)}")
    if a.smoke:
        worst = 0.0
        for cfg, err in check_variants():
            print(f"{cfg}: max error {err:.1e}", flush=True)
            worst = max(worst, err)
        if worst > 1e-4:
            sys.exit(f"smoke: a variant is wrong (max error {worst:.1e}, over 1e-4)")
        return None
    if a.compile_only:
        return compile_only(widths, a.batch)
    if not a.out:
        ap.error("--out is needed for a GPU run")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    sweep(out / "tl_persist_chain.json", widths, a.batch, tiles, fused, "tl", unchecked=lambda cfg: cfg.get("repeat", 1) > 1, ceilings=a.ceilings)


if __name__ == "__main__":
    main()
