"""GPU evidence for the runner (issue 3). Run on the GPU machine:

    python3 benchmarks/runner_gpu.py --out $OUT/runner_gpu.json

1. The GPU's ceilings (effkit.device_ceilings, measured afresh) beside its datasheet.
2. resnet50 and convnext_tiny at batch 1 and 64, bf16, channels-last, eager and CUDA graph,
   through effkit.bench (per-layer kernel times on).
3. In the same run, an independent reference: a plain CUDA-graph replay loop timed with
   events, written here without effkit.run (build, capture, replay N times between two
   events, median of repeats). Target: effkit (CUDA graph) / reference within 0.97-1.03.
4. Sum of per-layer kernel time against end-to-end latency at batch 64 with CUDA graphs.
   Target: within 10 %.
5. A real out-of-memory point in a sweep (batch 8, 100000, 16): recorded as oom, the sweep goes on.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import effkit
from effkit.models import build_model

MODELS = ["resnet50", "convnext_tiny"]
BATCHES = [1, 64]


def reference_graph_latency(name: str, batch: int, replays: int = 200, repeats: int = 7) -> float:
    """Seconds per replay of a captured inference step, bf16, channels-last (independent of effkit.run)."""
    model = build_model(name).model.eval().to(device="cuda", dtype=torch.bfloat16).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 224, 224, device="cuda", dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.no_grad():
        with torch.cuda.stream(side):
            for _ in range(5):
                model(x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model(x)
    for _ in range(20):
        graph.replay()
    torch.cuda.synchronize()
    per_replay = []
    for _ in range(repeats):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        for _ in range(replays):
            graph.replay()
        end.record()
        end.synchronize()
        per_replay.append(begin.elapsed_time(end) / 1e3 / replays)
    del graph, model, x
    torch.cuda.empty_cache()
    return statistics.median(per_replay)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/runner_gpu.json")
    args = ap.parse_args()
    res: dict = {"date": time.strftime("%Y-%m-%d"), "device": torch.cuda.get_device_name(), "torch": torch.__version__}

    c = effkit.device_ceilings("cuda", refresh=True)
    res["ceilings"] = c.to_dict()
    print(c.to_frame().to_string(), flush=True)

    res["bench"], res["reference"], res["checks"] = {}, {}, []
    for name in MODELS:
        for graph in (False, True):
            r = effkit.bench(name, BATCHES, device="cuda", dtype="bf16", channels_last=True, cuda_graph=graph, layers=True)
            key = f"{name}/{'graph' if graph else 'eager'}"
            res["bench"][key] = r.to_dict()
            for p in r.points:
                print(f"{key:24s} batch {p.batch:3d}: {1e3 * p.latency_s:8.3f} ms  {p.samples_per_s:9.1f} samples/s  "
                      f"IQR {1e3 * p.timing.iqr_s:.3f} ms  kernels {1e3 * p.layers.total_s:8.3f} ms  profiler x{p.layers.profiler_overhead:.2f}", flush=True)
        for b in BATCHES:
            ref = reference_graph_latency(name, b)
            res["reference"][f"{name}/{b}"] = ref
            pt = next(pp for pp in res["bench"][f"{name}/graph"]["points"] if pp["batch"] == b)
            ratio = pt["latency_ms"] / 1e3 / ref
            check = {"model": name, "batch": b, "effkit_graph_ms": pt["latency_ms"], "reference_ms": 1e3 * ref, "effkit_over_reference": ratio,
                     "within_3pct": 0.97 <= ratio <= 1.03}
            if b == 64:
                check["kernel_sum_ms"] = pt["kernel_sum_ms"]
                check["kernel_sum_over_latency"] = pt["kernel_sum_ms"] / pt["latency_ms"]
                check["within_10pct"] = abs(check["kernel_sum_over_latency"] - 1) <= 0.10
            res["checks"].append(check)
            print(json.dumps(check), flush=True)

    oom = effkit.bench("resnet50", [8, 100000, 16], device="cuda", dtype="bf16", channels_last=True, layers=False, min_time_s=0.3)
    res["oom_sweep"] = [{"batch": p.batch, "status": p.status, "note": p.note} for p in oom.points]
    print("oom sweep:", res["oom_sweep"], flush=True)

    with open(args.out, "w") as f:
        json.dump(res, f, indent=2, default=str)
    print("\nmodel           batch  effkit graph (ms)  reference (ms)  ratio   kernel sum / latency")
    for ch in res["checks"]:
        ks = f"{ch['kernel_sum_over_latency']:.3f}" if "kernel_sum_over_latency" in ch else "-"
        print(f"{ch['model']:15s} {ch['batch']:5d} {ch['effkit_graph_ms']:18.3f} {ch['reference_ms']:15.3f}  {ch['effkit_over_reference']:.3f}   {ks}")
    ok = all(ch["within_3pct"] and ch.get("within_10pct", True) for ch in res["checks"])
    print("ALL WITHIN TARGETS" if ok else "SOME OUTSIDE TARGETS")


if __name__ == "__main__":
    main()
