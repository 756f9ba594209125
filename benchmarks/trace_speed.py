"""Trace speed: effkit against fvcore on convnext_tiny (batch 1, CPU, real tensors), and a
meta-device trace of a model with over 1 billion parameters (wall time, peak memory).

Targets (issue 2): effkit >= 2x faster than fvcore on the real trace; the 1B-parameter meta
trace under 30 s and under 2 GB peak memory.

Each timing is the median of repeated runs after one warm-up; each run builds nothing (the
model is built once) and both counters produce per-module counts (fvcore: FlopCountAnalysis
.by_module(), which runs its jit trace). The meta trace runs in a fresh subprocess so that its
peak resident memory (ru_maxrss) is its own; the same subprocess's memory right after
importing torch and effkit is printed beside it.

    python benchmarks/trace_speed.py [--repeats 5] [--out benchmarks/results/trace_speed_cpu2.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

META_CHILD = r"""
import json, resource, sys, time
import torch, effkit
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t0 = time.perf_counter()
# ViT-B/16 builder, width x2 (24 heads, 1536 hidden, 6144 MLP) and depth x3 (36 blocks)
r = effkit.trace("vit_b_16", width=2.0, depth=3.0, device="meta")
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"params": r.params, "macs": r.totals.macs, "uncovered": len(r.uncovered),
                  "wall_s": wall, "peak_rss_bytes": peak, "rss_after_import_bytes": base}))
"""


def time_it(fn, repeats):
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples), samples


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/trace_speed_cpu2.json")
    args = ap.parse_args()

    import torch
    from fvcore.nn import FlopCountAnalysis

    import effkit

    model = effkit.build_model("convnext_tiny").model.eval()
    x = torch.randn(1, 3, 224, 224)

    def run_effkit():
        return effkit.trace(model, (3, 224, 224))

    def run_fvcore():
        with torch.no_grad():
            fca = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return fca.by_module()

    import logging

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    e_med, e_s = time_it(run_effkit, args.repeats)
    f_med, f_s = time_it(run_fvcore, args.repeats)
    # the two counts agree on what both count: conv/linear MACs
    ours, theirs = run_effkit().totals.macs, run_fvcore()[""]

    child = subprocess.run([sys.executable, "-c", META_CHILD], capture_output=True, text=True, check=True)
    meta = json.loads(child.stdout.strip().splitlines()[-1])

    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.node()} {platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
        "convnext_tiny_b1_cpu": {
            "effkit_s": e_med, "fvcore_s": f_med, "fvcore_over_effkit": f_med / e_med,
            "effkit_samples_s": e_s, "fvcore_samples_s": f_s, "effkit_macs": ours, "fvcore_flops": theirs,
        },
        "meta_1b": meta,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    c = result["convnext_tiny_b1_cpu"]
    print(f"convnext_tiny, batch 1, CPU real trace: effkit {c['effkit_s'] * 1e3:.0f} ms, fvcore {c['fvcore_s'] * 1e3:.0f} ms "
          f"(median of {args.repeats}) -> fvcore/effkit = {c['fvcore_over_effkit']:.2f}x (target >= 2x)")
    print(f"  MACs: effkit {ours:,}, fvcore 'flops' {theirs:,}")
    print(f"meta trace, {meta['params'] / 1e9:.3f} B params ({meta['macs'] / 1e9:.1f} GMACs): {meta['wall_s']:.2f} s (target < 30 s), "
          f"peak RSS {meta['peak_rss_bytes'] / 1e9:.2f} GB (target < 2 GB; {meta['rss_after_import_bytes'] / 1e9:.2f} GB after imports)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
