"""GPU evidence for the modes CPU tests can only simulate (run on the GPU machine):

1. `--compile`: mobilenet_v2 and resnet50, batch 64, bf16, channels-last, compiled against eager.
2. `--mode train`: resnet50 batch 64 bf16 forward + backward + SGD step, with per-layer kernel time
   attributed to forward and backward layers (share left unattributed reported).
3. training-mode traces on CUDA (cuDNN batch norm, flash / efficient attention backward) against the
   meta trace: same MACs and FLOPs, no uncovered op.

    python3 benchmarks/modes_gpu.py --out $OUT/modes_gpu.json
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import effkit


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/modes_gpu.json")
    args = ap.parse_args()
    res = {"date": time.strftime("%Y-%m-%d"), "device": torch.cuda.get_device_name(), "torch": torch.__version__, "compile": [], "train": {}, "trace_train": []}
    for name in ("mobilenet_v2", "resnet50"):
        row = {"model": name}
        for compiled in (False, True):
            t0 = time.perf_counter()
            r = effkit.bench(name, 64, device="cuda", dtype="bf16", channels_last=True, compile=compiled, layers=False)
            p = r.points[0]
            row["compiled_ms" if compiled else "eager_ms"] = 1e3 * p.latency_s
            row["compile_note" if compiled else "eager_note"] = p.note
            row["wall_s_compiled" if compiled else "wall_s_eager"] = time.perf_counter() - t0
        row["speedup"] = row["eager_ms"] / row["compiled_ms"]
        res["compile"].append(row)
        print(json.dumps(row), flush=True)
    r = effkit.bench("resnet50", 64, device="cuda", dtype="bf16", channels_last=True, mode="train", layers=True)
    p = r.points[0]
    fw = sum(l.time_s for l in p.layers.layers if l.phase == "forward")
    bw = sum(l.time_s for l in p.layers.layers if l.phase == "backward")
    unattr = sum(l.time_s for l in p.layers.layers if l.path in ("(autograd)", "(outside the model)"))
    res["train"] = {"model": "resnet50", "batch": 64, "step_ms": 1e3 * p.latency_s, "kernel_sum_ms": 1e3 * p.layers.total_s,
                    "forward_kernels_ms": 1e3 * fw, "backward_kernels_ms": 1e3 * bw, "unattributed_ms": 1e3 * unattr,
                    "backward_layers": len({l.path for l in p.layers.layers if l.phase == "backward"}), "profiler_overhead": p.layers.profiler_overhead}
    print(json.dumps(res["train"]), flush=True)
    for name, b in (("resnet50", 8), ("vit_b_16", 8), ("efficientnet_b0", 8), ("convnext_tiny", 8)):
        c = effkit.trace(name, device="cuda", mode="train", batch=b, dtype="bf16")
        m = effkit.trace(name, device="meta", mode="train", batch=b, dtype="bf16")
        row = {"model": name, "macs_equal": c.totals.macs == m.totals.macs, "flops_equal": c.totals.flops == m.totals.flops,
               "bwd_macs_equal": c.totals.bwd_macs == m.totals.bwd_macs, "bwd_flops_cuda": c.totals.bwd_flops, "bwd_flops_meta": m.totals.bwd_flops,
               "uncovered_cuda": [f"{u.op} x{u.count}" for u in c.uncovered], "cuda_only_ops": sorted({o.op for o in c.ops} - {o.op for o in m.ops})}
        res["trace_train"].append(row)
        print(json.dumps(row), flush=True)
    json.dump(res, open(args.out, "w"), indent=2, default=str)


if __name__ == "__main__":
    main()
