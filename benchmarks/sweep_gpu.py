"""GPU evidence for issue 17: a zoo sweep on one GPU, its numbers against `effkit bench` run separately, and the wall
time per point against the profile/compare machinery.

1. `effkit.sweep` of 21 zoo models at batch 1 and 64, bf16, channels-last, CUDA graphs (eager timing on the lent VM
   host drifts up to 2x between runs: benchmarks/README.md, issue 12), the report written under --out;
2. `effkit.bench` of the five core models at the same configuration, each in this process after the sweep, and the
   ratio of the two device times per step (target: within 3 %);
3. wall time per point: the sweep's (total wall / points, and the points' own trace and measure times) against
   `effkit.profile` (the machinery compare uses: per-layer profiles, a report per model) for two models.

    python3 benchmarks/sweep_gpu.py --out $OUT
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import effkit  # noqa: E402

CORE = ["resnet50", "convnext_tiny", "efficientnet_b0", "mobilenet_v2", "vit_b_16"]
ZOO = CORE + ["resnet18", "resnext50", "convnext_small", "efficientnet_b1", "efficientnet_b2", "mobilenet_v3_large", "mobilenet_v3_small",
              "regnet_x_400mf", "regnet_x_1_6gf", "regnet_y_400mf", "regnet_y_1_6gf", "convfirst_net", "mbconv_net", "inception_next_tiny",
              "swin_t", "vit_s_16"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default=",".join(ZOO))
    ap.add_argument("--profiles", default="resnet50,convnext_tiny", help="models timed through effkit.profile for the 'before' figure")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"meta": {"torch": torch.__version__, "device": torch.cuda.get_device_name(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}}

    def save():
        (out / "sweep_gpu.json").write_text(json.dumps(res, indent=1, default=str))

    models = a.models.split(",")
    t = time.perf_counter()
    s = effkit.sweep(models, batches=(1, 64), precisions=("bf16",), knobs={"channels_last": ["on"], "cuda_graph": ["on"]}, device="cuda",
                     out=out / "sweep_h200_bf16_nhwc_graph", min_time_s=0.5, log=lambda m: print(m, flush=True))
    wall = time.perf_counter() - t
    table = json.loads((out / "sweep_h200_bf16_nhwc_graph" / "sweep.json").read_text())["rows"]
    ok = [r for r in table if r.get("status") == "ok"]
    res["sweep"] = {"wall_s": wall, "points": len(table), "ok": len(ok), "other": s["other"], "missing": s["missing"],
                    "wall_per_point_s": wall / max(1, len(table)),
                    "trace_s_median": statistics.median(r["wall_trace_s"] for r in ok), "measure_s_median": statistics.median(r["wall_measure_s"] for r in ok)}
    print(f"sweep: {len(table)} points ({len(ok)} ok) in {wall:.0f} s: {wall / max(1, len(table)):.2f} s a point", flush=True)
    save()
    rows = []
    for m in CORE:
        b = effkit.bench(m, [1, 64], device="cuda", dtype="bf16", channels_last=True, cuda_graph=True, layers=False, min_time_s=0.5)
        for p in b.points:
            mine = next(r for r in ok if r["model"] == m and r["infer_batch_size"] == p.batch)
            ratio = mine["infer_step_time"] / (1e3 * p.latency_s)
            rows.append({"model": m, "batch": p.batch, "sweep_ms": mine["infer_step_time"], "sweep_iqr_ms": mine["step_time_iqr_ms"],
                         "bench_ms": 1e3 * p.latency_s, "bench_iqr_ms": 1e3 * p.timing.iqr_s, "ratio": ratio})
            print(f"{m} b{p.batch}: sweep {mine['infer_step_time']:.3f} ms, bench {1e3 * p.latency_s:.3f} ms ({ratio:.3f})", flush=True)
        res["against_bench"] = rows
        save()
    before = []
    for m in a.profiles.split(","):
        t = time.perf_counter()
        effkit.profile(m, device="cuda", batch=[1, 64], dtype="bf16", channels_last=True, cuda_graph=True, min_time_s=0.5,
                       out=out / f"profile_{m}")
        w = time.perf_counter() - t
        before.append({"model": m, "wall_s": w, "per_point_s": w / 2})
        print(f"profile {m} (2 points, per-layer times, report): {w:.1f} s, {w / 2:.1f} s a point", flush=True)
        res["profile_per_point"] = before
        save()


if __name__ == "__main__":
    main()
