"""How close to its fused roofline can a Triton kernel of the blocks' kind get at all? An upper bound for issue 19.

Issue 19 asks each fused stride-1 block at batch 64 to reach 50 % of its fused roofline; after 34 runs ConvFirst's
kernels reach 11-31 % (14-27 % at stride 1), MBConv's 3-7 %. The blocks' FLOPs are almost all in the expansion chain (1x1 expand, SiLU, 1x1
project, kept on chip): at C channels and hidden 4C that is 16·C² FLOPs a pixel against the grouped 3x3 conv's 144·C
(c192: 95 %). So the chain alone, written as plainly as Triton allows and tuned over every tile that compiles, bounds
what a block kernel of this structure can reach: the block does at least this work, and more (the grouped conv, its
gathers, the zoo's 3·2^k widths as parts).

`_mlp_kernel` is written here for this purpose, separately from effkit/kernels/triton_blocks.py: a program takes
BLOCK_P pixels of x [NPIX, C] (bf16), and for each chunk of BLOCK_H hidden channels computes e = SiLU(x·W2ᵀ + b2) and
adds e·W3ᵀ into its [BLOCK_P, C] fp32 accumulator; then the bias and the residual x, and the store. Only x, the output
and the weights cross DRAM (the weights from L2, as in the block kernels). The widths are powers of two (64, 128, 256,
512: no parts, no padding, the chain at its most favourable), the maps the networks' at batch 64 (56², 28², 14², 7²).

Every tile of the sweep (BLOCK_P x BLOCK_H x warps x pipeline stages) is checked against PyTorch (fp32 math on the same
bf16 inputs) before it is timed; a wrong one is not eligible. Times: the median of 200 CUDA-graph replays between CUDA
events with the GPU held back while they are issued (`kernels_gpu.graph_time_ms`), IQR beside it. Beside the best tile:
the same chain in eager PyTorch and under torch.compile (cuBLAS GEMMs, the hidden activations through memory).
Fused roofline: max(FLOPs / 803.8 TFLOP/s, (x + out + weights, bf16) / 4.24 TB/s), the H200's ceilings measured idle
(results/h200/ceilings.json), as in kernels_gpu.py.

    python3 benchmarks/mlp_ceiling.py --out $OUT [--deadline 420] [--widths 64,128,256,512]

Without a GPU, `TRITON_INTERPRET=1 python3 benchmarks/mlp_ceiling.py --smoke --out /tmp/m` runs the same paths on the
CPU (fp32, small shapes, a few tiles, wall-clock timing) to check the script before it spends device time.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import kernels_gpu  # noqa: E402  (graph_time_ms: the issue's timer, written separately from effkit's runner)
from effkit.kernels.triton_blocks import _output  # noqa: E402

MAPS = {64: 56, 128: 28, 256: 14, 512: 7}  # width -> the map side at that width in the networks (224² input)
TOL = 2e-2  # max abs error over the max abs output, as kernels_gpu.py: bf16 keeps 8 bits


@triton.jit
def _mlp_kernel(x_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr, out_ptr, NPIX, C: tl.constexpr, HID: tl.constexpr,
                BLOCK_P: tl.constexpr, BLOCK_H: tl.constexpr, STAGES: tl.constexpr, FAST: tl.constexpr, SAME_CHUNK: tl.constexpr = False):
    """out = x + b3 + SiLU(x·W2ᵀ + b2)·W3ᵀ for BLOCK_P pixels; w2 is W2ᵀ [C, HID] and w3 is W3ᵀ [HID, C], row-major.
    SAME_CHUNK (an ablation, wrong output): every chunk reads the first chunk's weights, 4·C·BLOCK_H bytes that stay in
    the SM's L1, so the weights no longer stream from L2; the dots, the SiLU and everything else are unchanged."""
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    pm = p < NPIX
    c = tl.arange(0, C)
    x = tl.load(x_ptr + p[:, None] * C + c[None, :], mask=pm[:, None], other=0.0)
    acc = tl.zeros((BLOCK_P, C), dtype=tl.float32)
    for h0 in tl.range(0, HID, BLOCK_H, num_stages=STAGES):
        j = tl.arange(0, BLOCK_H) if SAME_CHUNK else h0 + tl.arange(0, BLOCK_H)
        e = tl.dot(x, tl.load(w2_ptr + c[:, None] * HID + j[None, :])) + tl.load(b2_ptr + j).to(tl.float32)[None, :]
        if FAST:  # x·σ(x) = x·(1 + tanh(x/2))/2, one tanh.approx a value (CUDA only)
            t = tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=f,f", [e * 0.5], dtype=tl.float32, is_pure=True, pack=1)
            e = e * (0.5 + 0.5 * t)
        else:
            e = e * tl.sigmoid(e)
        acc = tl.dot(e.to(w3_ptr.dtype.element_ty), tl.load(w3_ptr + j[:, None] * C + c[None, :]), acc)
    acc += x.to(tl.float32) + tl.load(b3_ptr + c).to(tl.float32)[None, :]
    tl.store(out_ptr + p[:, None] * C + c[None, :], acc.to(out_ptr.dtype.element_ty), mask=pm[:, None])


def make(npix: int, c: int, dev: str, dt, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    t = lambda *s, scale=1.0: (scale * torch.randn(*s, generator=g)).to(dev, dt)  # noqa: E731
    h = 4 * c
    return {"x": t(npix, c), "W2": t(h, c, scale=c ** -0.5), "b2": t(h, scale=0.1), "W3": t(c, h, scale=h ** -0.5), "b3": t(c, scale=0.1)}


def reference(d: dict) -> torch.Tensor:
    """The chain in fp32 on the same (bf16) values."""
    x, W2, b2, W3, b3 = (d[k].float() for k in ("x", "W2", "b2", "W3", "b3"))
    return x + F.linear(F.silu(F.linear(x, W2, b2)), W3, b3)


def eager(d: dict):
    return lambda x: x + F.linear(F.silu(F.linear(x, d["W2"], d["b2"])), d["W3"], d["b3"])


def launcher(d: dict, kernel, block_p: int, grid: int | None = None, **launch):
    """f(x) running a chain kernel over d's pixels, block_p a program (or `grid` programs, for a persistent kernel; its
    arguments: x, W2ᵀ [C, 4C], b2, W3ᵀ [4C, C], b3, out, NPIX, then `launch`), the weights transposed once; and the dict
    whose "k" keeps the last compiled launch. Off the GPU (Triton's interpreter: the checks' path) the output is filled
    with NaN first, so that a tile the kernel never writes shows as wrong: an empty tensor may reuse the memory of an
    earlier, correct output of the same size (a check of a grid that skips tiles passed that way once in CI)."""
    w2, w3 = d["W2"].t().contiguous(), d["W3"].t().contiguous()
    npix = d["x"].shape[0]
    programs = grid or triton.cdiv(npix, block_p)
    handle = {}

    def f(x):
        out = _output(x.shape, x)  # NaN off the GPU (the rule the product's kernels follow)
        handle["k"] = kernel[(programs,)](x, w2, d["b2"], w3, d["b3"], out, npix, **launch)
        return out
    return f, handle


def fused(d: dict, cfg: dict, fast: bool, same_chunk: bool = False):
    c = d["x"].shape[1]
    return launcher(d, _mlp_kernel, cfg["block_p"], C=c, HID=4 * c, BLOCK_P=cfg["block_p"], BLOCK_H=cfg["block_h"], STAGES=cfg["stages"],
                    FAST=fast, SAME_CHUNK=same_chunk, num_warps=cfg["warps"])


def cost(npix: int, c: int) -> tuple[int, int]:
    """FLOPs and compulsory bytes (bf16): 2 · (C·4C + 4C·C) MACs a pixel; x and out once, W2, W3 and biases once."""
    return 2 * npix * 8 * c * c, 2 * (2 * npix * c + 8 * c * c + 5 * c)


def tiles(c: int, smoke: bool) -> list[dict]:
    """Every tile whose fp32 accumulator and bf16 input tile fit in registers at one program an SM, or nearly
    (BLOCK_P·C·(4 + 2) bytes over the threads' 255 registers of 4 bytes: at most 1.5x, the compiler may spill), and
    whose pipelined weight chunks fit in the H200's 227 KB of shared memory (stages · 2 · C · BLOCK_H bf16; run 1 of this
    script: every launch over that was refused)."""
    if smoke:
        return [{"block_p": 16, "block_h": 16, "warps": 4, "stages": 1}, {"block_p": 32, "block_h": 32, "warps": 4, "stages": 2}]
    out = []
    for bp, bh, warps, stages in itertools.product((32, 64, 128, 256), (32, 64, 128, 256), (4, 8, 16), (1, 2, 3)):
        if bh > 4 * c or bp * c * 6 > 1.5 * 255 * 4 * 32 * warps or stages * 4 * c * bh > 232448:
            continue
        if (warps == 16 and bp < 128) or ((bp == 32 or stages == 1) and c < 256):  # kept to wide blocks, where tiles are few (the sweep's time)
            continue
        out.append({"block_p": bp, "block_h": bh, "warps": warps, "stages": stages})
    random.Random(0).shuffle(out)  # a sweep cut short by its deadline still covers the space evenly
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--deadline", type=float, default=420.0, help="seconds, shared equally among the widths: a width's sweep "
                    "stops taking new tiles when its share is spent (the rest listed under 'skipped')")
    ap.add_argument("--widths", default="64,128,256,512")
    ap.add_argument("--batch", type=int, default=64)
    kernels_gpu.add_ceilings_option(ap)
    ap.add_argument("--smoke", action="store_true", help="CPU, fp32, Triton's interpreter, small shapes")
    a = ap.parse_args()
    start = time.time()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    smoke = a.smoke
    if smoke and os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("--smoke needs TRITON_INTERPRET=1 in the environment (before Triton is imported)")
    dev, dt = ("cpu", torch.float32) if smoke else ("cuda", torch.bfloat16)
    kernels_gpu.DEV = dev
    peak, bw, ceil_src = kernels_gpu.ceilings(a.ceilings, None if smoke else torch.cuda.get_device_name())
    result = {"meta": {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "torch": torch.__version__,
                       "triton": triton.__version__, "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
                       "batch": a.batch, "peak_bf16_flops": peak, "bandwidth_bytes_per_s": bw, "ceilings": ceil_src}, "shapes": []}
    path = out / "mlp_ceiling.json"

    def save():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(path)

    widths = [int(w) for w in a.widths.split(",")]
    for i, c in enumerate(widths):
        until = start + a.deadline * (i + 1) / len(widths)
        side = 4 if smoke else MAPS[c]
        npix = (2 if smoke else a.batch) * side * side
        flops, nbytes = cost(npix, c)
        roof_ms = 1e3 * max(flops / peak, nbytes / bw)
        d = make(npix, c, dev, dt)
        ref = reference(d)
        scale = ref.abs().max().item()
        row = {"width": c, "hidden": 4 * c, "map": side, "npix": npix, "flops": flops, "bytes": nbytes, "roofline_ms": roof_ms, "tiles": []}
        result["shapes"].append(row)
        for name, fn in (("eager", eager(d)), ("compile", None if smoke else torch.compile(eager(d)))):
            if fn is not None:
                ms, iqr = kernels_gpu.graph_time_ms(fn, d["x"])
                row[name] = {"ms": ms, "iqr_ms": iqr, "of_roofline": roof_ms / ms}
                print(f"C={c} {side}² {name}: {ms:.4f} ms (IQR {iqr:.4f}), {100 * roof_ms / ms:.0f} % of the fused roofline {roof_ms:.4f}", flush=True)
        save()
        for cfg in tiles(c, smoke):
            if time.time() > until:
                row.setdefault("skipped", []).append(cfg)
                continue
            f, handle = fused(d, cfg, fast=not smoke)
            t = dict(cfg)
            try:
                with torch.no_grad():
                    err = (f(d["x"]).float() - ref).abs().max().item() / scale
                t["error"] = err
                k = handle.get("k")
                if k is not None and hasattr(k, "n_regs"):
                    t.update(n_regs=k.n_regs, n_spills=k.n_spills, shared_bytes=getattr(k.metadata, "shared", None))
                if err <= TOL:
                    ms, iqr = kernels_gpu.graph_time_ms(f, d["x"])
                    t.update(ms=ms, iqr_ms=iqr, of_roofline=roof_ms / ms, tflops=flops / ms / 1e9)
            except Exception as e:  # noqa: BLE001 - a tile that does not compile or launch (shared memory) is recorded and skipped
                lines = str(e).splitlines() or [""]
                why = next((ln for ln in lines if "ptxas fatal" in ln), lines[0])  # run 35b: ptxas's reason sat deep in the PTX dump
                t["failed"] = f"{type(e).__name__}: {why[:200]}"
            row["tiles"].append(t)
            save()
        timed = [t for t in row["tiles"] if "ms" in t]
        if timed:
            best = min(timed, key=lambda t: t["ms"])
            row["best"] = best
            print(f"C={c} {side}² best fused: {best['ms']:.4f} ms (IQR {best['iqr_ms']:.4f}), {100 * best['of_roofline']:.0f} % of the "
                  f"fused roofline, {best['tflops']:.0f} TFLOP/s; tile {json.dumps({k: best[k] for k in ('block_p', 'block_h', 'warps', 'stages')})}, "
                  f"{best.get('n_regs')} registers, {best.get('n_spills')} spills; {len(timed)} of {len(row['tiles'])} tiles timed", flush=True)
            # what streaming the weights from L2 costs: the best tile again, every chunk reading the first chunk's weights
            # (from L1); the output is wrong, so it is timed, not checked
            f, _ = fused(d, {k: best[k] for k in ("block_p", "block_h", "warps", "stages")}, fast=not smoke, same_chunk=True)
            ms, iqr = kernels_gpu.graph_time_ms(f, d["x"])
            programs = -(-npix // best["block_p"])
            row["weights_from_l1"] = {"ms": ms, "iqr_ms": iqr, "of_roofline": roof_ms / ms}
            row["l2_weight_bytes"] = programs * 2 * 8 * c * c  # each program reads W2 and W3 (4C·C bf16 each) once
            print(f"C={c} {side}² the best tile with its weights from L1 (wrong output, timed only): {ms:.4f} ms (IQR {iqr:.4f}); "
                  f"with them from L2 its {programs} programs read {row['l2_weight_bytes'] / 1e6:.0f} MB of weights, "
                  f"{row['l2_weight_bytes'] / best['ms'] / 1e9:.2f} TB/s", flush=True)
        save()
    print(f"wrote {path} in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
