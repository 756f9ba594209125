"""GPU evidence for issue 19 (written 2026-12-02, not yet run: that session's device time was spent).

1. Correctness on every block shape of convfirst_net and mbconv_net: each stride-1 block fused (bf16, channels-last)
   against the unfused block in bf16 and against fp32; the largest error seen is reported.
2. Per block (each distinct stride-1 block shape) and for the whole network, at batch 1, 64 and 256: eager,
   torch.compile (default and max-autotune-no-cudagraphs) and fused, each under a CUDA graph, timed by CUDA events
   around 200 back-to-back replays (median and IQR). For each fused block, its fused roofline (input + output +
   weights over the measured bandwidth, or its FLOPs over the bf16 peak, whichever is larger) over the measured time.
3. DRAM bytes actually moved: not read here (no hardware counter is reachable from this script: Nsight Compute is not
   installed on the lent machine); the table gives the compulsory bytes instead and says so.

    python3 benchmarks/kernels_gpu.py --out $OUT
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import effkit  # noqa: E402
from effkit.kernels import fuse_blocks  # noqa: E402
from effkit.kernels.fold import _match  # noqa: E402


def graph_time_ms(fn, x, reps: int = 200) -> tuple[float, float]:
    """Median and IQR (ms) of `reps` replays of a CUDA graph of fn(x), each between CUDA events."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.no_grad():
        for _ in range(3):
            fn(x)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(g):
        fn(x)
    for _ in range(10):
        g.replay()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    for a, b in ev:
        a.record()
        g.replay()
        b.record()
    torch.cuda.synchronize()
    t = sorted(a.elapsed_time(b) for a, b in ev)
    q = statistics.quantiles(t, n=4)
    return statistics.median(t), q[2] - q[0]


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """BatchNorms with non-trivial statistics (fresh ones are the identity, which would fold trivially)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = 0.5 + torch.rand(m.num_features, generator=g)
            m.bias.data = 0.1 * torch.randn(m.num_features, generator=g)
            m.running_mean = 0.1 * torch.randn(m.num_features, generator=g)
            m.running_var = 0.5 + torch.rand(m.num_features, generator=g)
    return model.eval()


def blocks_of(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if hasattr(m, "body") and hasattr(m, "shortcut") and _match(m)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--batches", default="1,64,256")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ceil = effkit.device_ceilings("cuda")
    peak, bw = ceil.peak_flops.get("bf16"), ceil.bandwidth_bytes_per_s
    res = {"meta": {"torch": torch.__version__, "device": torch.cuda.get_device_name(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "peak_bf16": peak, "bandwidth": bw, "dram_bytes": "not read (no hardware counter reachable); compulsory bytes given"},
           "correctness": [], "blocks": [], "networks": []}

    def save():
        (out / "kernels_gpu.json").write_text(json.dumps(res, indent=1, default=str))

    batches = [int(b) for b in a.batches.split(",")]
    for net_name in ("convfirst_net", "mbconv_net"):
        base = randomise_bn(effkit.build_model(net_name).model)
        ref32 = base.cuda().float()
        seen_shapes = set()
        for path, blk in blocks_of(ref32):
            c = blk.body[0][0].in_channels
            hw = None
            for b in (1, 64):
                # the block's input size in the network: 224 / 4 / 2^stage; found from its first conv's width
                stage = {48: 0, 96: 1, 192: 2, 384: 3}[c]
                hw = 56 // (2 ** stage)
                x32 = torch.randn(b, c, hw, hw, device="cuda").to(memory_format=torch.channels_last)
                with torch.no_grad():
                    want32 = blk(x32)
                    unfused16 = copy.deepcopy(blk).bfloat16()
                    want16 = unfused16(x32.bfloat16())
                    holder = nn.Sequential(copy.deepcopy(blk)).eval()
                    fuse_blocks(holder)
                    holder = holder.bfloat16()
                    got = holder(x32.bfloat16())
                err32 = (got.float() - want32).abs().max().item() / (want32.abs().max().item() or 1.0)
                err16 = (got.float() - want16.float()).abs().max().item() / (want16.abs().max().item() or 1.0)
                res["correctness"].append({"net": net_name, "block": path, "channels": c, "hw": hw, "batch": b,
                                           "max_rel_err_vs_fp32": err32, "max_rel_err_vs_unfused_bf16": err16})
                print(f"{net_name} {path} c{c} {hw}x{hw} b{b}: fused vs fp32 {err32:.2e}, vs unfused bf16 {err16:.2e}", flush=True)
            shape = (c, hw)
            if shape in seen_shapes:
                continue
            seen_shapes.add(shape)
            for b in batches:
                x = torch.randn(b, c, hw, hw, device="cuda", dtype=torch.bfloat16).to(memory_format=torch.channels_last)
                eager = copy.deepcopy(blk).bfloat16().to(memory_format=torch.channels_last)
                holder = nn.Sequential(copy.deepcopy(blk)).eval()
                fuse_blocks(holder)
                fused = holder.bfloat16()
                row = {"net": net_name, "block": path, "channels": c, "hw": hw, "batch": b}
                row["eager_ms"], row["eager_iqr_ms"] = graph_time_ms(eager, x)
                for mode in ("default", "max-autotune-no-cudagraphs"):
                    comp = torch.compile(copy.deepcopy(eager), mode=mode)
                    row[f"compile_{mode}_ms"], row[f"compile_{mode}_iqr_ms"] = graph_time_ms(comp, x)
                row["fused_ms"], row["fused_iqr_ms"] = graph_time_ms(fused, x)
                params = sum(p.numel() for p in blk.parameters())
                hid = blk.body[1][0].out_channels if net_name == "convfirst_net" else blk.body[0][0].out_channels
                k = 3
                macs = b * hw * hw * (c * 8 * k * k + 2 * c * hid) if net_name == "convfirst_net" else b * hw * hw * (2 * c * hid + hid * k * k)
                bytes_ = 2 * (2 * b * c * hw * hw + params)  # bf16: input and output once, the (folded) weights once
                roof_s = max(2 * macs / peak, bytes_ / bw)
                row.update(compulsory_bytes=bytes_, fused_roofline_ms=1e3 * roof_s, fraction_of_fused_roofline=1e3 * roof_s / row["fused_ms"])
                res["blocks"].append(row)
                print(f"{net_name} c{c} {hw}x{hw} b{b}: eager {row['eager_ms']:.4f}, compile {row['compile_default_ms']:.4f} / "
                      f"{row['compile_max-autotune-no-cudagraphs_ms']:.4f}, fused {row['fused_ms']:.4f} ms; "
                      f"fused roofline {1e3 * roof_s:.4f} ms ({row['fraction_of_fused_roofline']:.0%})", flush=True)
                save()
        for b in batches:
            net = effkit.build_model(net_name).model.eval().cuda().bfloat16().to(memory_format=torch.channels_last)
            x = torch.randn(b, 3, 224, 224, device="cuda", dtype=torch.bfloat16).to(memory_format=torch.channels_last)
            row = {"net": net_name, "batch": b}
            row["eager_ms"], row["eager_iqr_ms"] = graph_time_ms(net, x)
            for mode in ("default", "max-autotune-no-cudagraphs"):
                row[f"compile_{mode}_ms"], _ = graph_time_ms(torch.compile(copy.deepcopy(net), mode=mode), x)
            fused_net = copy.deepcopy(net).float()
            fuse_blocks(fused_net)
            fused_net = fused_net.bfloat16().to(memory_format=torch.channels_last)
            row["fused_ms"], row["fused_iqr_ms"] = graph_time_ms(fused_net, x)
            best_compile = min(row["compile_default_ms"], row["compile_max-autotune-no-cudagraphs_ms"])
            row["fused_speedup_over_best_compile"] = best_compile / row["fused_ms"]
            res["networks"].append(row)
            print(f"{net_name} b{b}: eager {row['eager_ms']:.3f}, compile {row['compile_default_ms']:.3f} / "
                  f"{row['compile_max-autotune-no-cudagraphs_ms']:.3f}, fused {row['fused_ms']:.3f} ms "
                  f"(x{row['fused_speedup_over_best_compile']:.2f} over compile's best)", flush=True)
            save()


if __name__ == "__main__":
    main()
