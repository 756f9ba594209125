"""GPU evidence for trustworthy numbers (issue 12) and measuring what users run (issue 13), in one run.

1. ceilings measured three times in a row: each figure's spread across the three;
2. the corrected per-layer kernel sum against device time per step, five core models, batch 1 and 64,
   eager and CUDA graphs (bf16, channels-last);
3. effkit's three timing figures against an independent measurement written here (own loops, not
   effkit's timing code): 5 models x batch 1, 64 x eager, graph x bf16, bf16-mixed, channels-last;
4. the meta trace under CUDA autocast's policy (effkit's emulation) against a real CUDA autocast trace,
   layer by layer: MACs, FLOPs, casts, cast bytes, and the dtype of every product, norm and softmax;
5. the reports: compare examples regenerated, and the bf16-mixed ConvNeXt-T profile;
6. the scale examples regenerated;
7. three convnext_tiny profiles for `effkit diff` (layout, then execution mode).

Every result is written to --out as soon as it exists (JSON rewritten), so a cut-off run keeps what it did.
    python3 benchmarks/trust_precision_gpu.py --out $OUT [--device cuda] [--quick] [--parts 1,2,3,4,5]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import effkit  # noqa: E402
from effkit.config import RunConfig  # noqa: E402
from effkit.device import ceilings as C  # noqa: E402
from effkit.run.runner import run  # noqa: E402

CORE = ["resnet50", "convnext_tiny", "efficientnet_b0", "mobilenet_v2", "vit_b_16"]
RESULTS: dict = {}
MODES = ["eager", "graph"]  # part 3's execution modes (--modes)


def save(out: Path):
    (out / "trust_precision.json").write_text(json.dumps(RESULTS, indent=1, default=str))


def log(*a):
    print(*a, flush=True)


# ----------------------------------------------------------------------------- 1. ceilings three times
def part_ceilings(device, out, quick):
    runs = []
    for i in range(3):
        c = C.measure(device, sizes={"fp32": 1024, "fp16": 512, "bf16": 512, "copy_bytes": 64 << 20} if quick else None)
        runs.append({"peak_flops": c.peak_flops, "bandwidth": c.bandwidth_bytes_per_s, "launch_floor_s": c.launch_floor_s, "issues": list(c.issues),
                     "rounds": c.rounds})
        log(f"ceilings {i + 1}: " + ", ".join(f"{k} {v / 1e12:.1f} TF/s" for k, v in c.peak_flops.items() if v)
            + f", bandwidth {c.bandwidth_bytes_per_s / 1e12:.3f} TB/s, launch floor {1e6 * c.launch_floor_s:.2f} us, issues {list(c.issues)}")
    spread = {}
    for k in runs[0]["peak_flops"]:
        v = [r["peak_flops"][k] for r in runs if r["peak_flops"][k]]
        if v:
            spread[k] = (max(v) - min(v)) / max(v)
    v = [r["bandwidth"] for r in runs]
    spread["bandwidth"] = (max(v) - min(v)) / max(v)
    v = [r["launch_floor_s"] for r in runs]
    spread["launch_floor"] = (max(v) - min(v)) / max(v)
    RESULTS["ceilings"] = {"runs": runs, "spread_over_three": spread}
    log("ceilings spread over three runs: " + ", ".join(f"{k} {100 * v:.2f} %" for k, v in spread.items()))
    save(out)


# ----------------------------------------------------------------------------- 2. the ladder adds up
def part_ladder(device, out, quick, models):
    rows = []
    for m in models:
        for b in ((1, 8) if quick else (1, 64)):
            for graph in (False, True):
                if graph and not device.startswith("cuda"):
                    continue
                cfg = RunConfig(device=device, precision="bf16", batches=(b,), layout="channels_last", cuda_graph=graph, min_time_s=0.5)
                p = run(effkit.resolve(m), cfg).points[0]
                lt = p.layers
                spread = p.timing.iqr_s + (lt.total_iqr_s or 0)
                r = {"model": m, "batch": b, "cuda_graph": graph, "device_time_ms": 1e3 * p.latency_s, "iqr_ms": 1e3 * p.timing.iqr_s,
                     "kernel_sum_ms": 1e3 * lt.total_s, "kernel_iqr_ms": 1e3 * (lt.total_iqr_s or 0), "ratio": lt.total_s / p.latency_s,
                     "kernels_above_e2e_beyond_spread": lt.total_s - p.latency_s > spread, "profiler_overhead": lt.profiler_overhead,
                     "unprofiled_step_ms": 1e3 * lt.unprofiled_step_s, "correction": lt.correction, "what": lt.what, "note": lt.note}
                rows.append(r)
                log(f"ladder {m} b{b} {'graph' if graph else 'eager'}: device {r['device_time_ms']:.3f} ms (IQR {r['iqr_ms']:.3f}), "
                    f"kernels {r['kernel_sum_ms']:.3f} ms, ratio {r['ratio']:.3f}, beyond spread: {r['kernels_above_e2e_beyond_spread']}"
                    + (f" [{lt.note}]" if lt.note else ""))
                RESULTS["ladder"] = rows
                save(out)
                torch.cuda.empty_cache() if device.startswith("cuda") else None


# ----------------------------------------------------------------------------- 3. three figures vs own loops
def independent(model, x, device, graph, mixed):
    """Three figures with loops written here: events around back-to-back steps; one synchronised step at a
    time; a back-to-back loop's wall time."""
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    ac = (lambda: torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16)) if mixed else contextlib.nullcontext

    def fwd():
        with torch.no_grad(), ac():
            return model(x)

    for _ in range(10):
        fwd()
    sync()
    step = fwd
    if graph:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                fwd()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fwd()
        step = g.replay
        for _ in range(10):
            step()
        sync()
    # device time per step: an event pair around each of 200 steps issued back to back, one synchronisation
    if cuda:
        ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(200)]
        for a, b in ev:
            a.record()
            step()
            b.record()
        torch.cuda.synchronize()
        device_s = statistics.median(a.elapsed_time(b) / 1e3 for a, b in ev)
    else:
        ts = []
        for _ in range(50):
            t = time.perf_counter()
            step()
            ts.append(time.perf_counter() - t)
        device_s = statistics.median(ts)
    # synchronous latency: one step, then wait for it, 100 times
    ts = []
    for _ in range(100 if cuda else 30):
        t = time.perf_counter()
        step()
        sync()
        ts.append(time.perf_counter() - t)
    sync_s = statistics.median(ts)
    # throughput: 5 loops of n steps back to back, each loop's wall time
    n = max(5, int(0.1 / max(device_s, 1e-5)))
    rates = []
    for _ in range(5):
        sync()
        t = time.perf_counter()
        for _ in range(n):
            step()
        sync()
        rates.append(x.shape[0] * n / (time.perf_counter() - t))
    return device_s, sync_s, statistics.median(rates)


def part_figures(device, out, quick, models):
    rows = []
    for m in models:
        ref = effkit.resolve(m)
        for b in ((1, 8) if quick else (1, 64)):
            for graph in ((False,) if not device.startswith("cuda") else tuple(m == "graph" for m in MODES)):
                for prec in ("bf16", "bf16-mixed"):
                    cfg = RunConfig(device=device, precision=prec, batches=(b,), layout="channels_last", cuda_graph=graph, layers=False,
                                    min_time_s=0.5)
                    mixed = prec.endswith("mixed")
                    net = ref.build(device, torch.float32 if mixed else torch.bfloat16).to(memory_format=torch.channels_last).eval()
                    x = torch.randn(b, *ref.input_shape, device=device, dtype=torch.float32 if mixed else torch.bfloat16)
                    x = x.contiguous(memory_format=torch.channels_last)
                    # own loops before and after effkit's run: their disagreement is the run-to-run spread that a
                    # ratio effkit/own has to be read against
                    before = independent(net, x, device, graph, mixed)
                    p = run(ref, cfg).points[0]
                    after = independent(net, x, device, graph, mixed)
                    dev_s, sync_s, tput = (statistics.fmean(v) for v in zip(before, after))
                    r = {"model": m, "batch": b, "cuda_graph": graph, "precision": prec,
                         "effkit_device_ms": 1e3 * p.latency_s, "own_device_ms": 1e3 * dev_s, "device_ratio": p.latency_s / dev_s,
                         "effkit_sync_ms": 1e3 * p.sync_latency_s, "own_sync_ms": 1e3 * sync_s, "sync_ratio": p.sync_latency_s / sync_s,
                         "effkit_samples_per_s": p.throughput_samples_per_s, "own_samples_per_s": tput,
                         "throughput_ratio": p.throughput_samples_per_s / tput, "effkit_iqr_rel": p.timing.iqr_rel,
                         "own_after_over_before": {"device": after[0] / before[0], "sync": after[1] / before[1],
                                                   "throughput": after[2] / before[2]}}
                    rows.append(r)
                    log(f"figures {m} b{b} {'graph' if graph else 'eager'} {prec}: device {r['effkit_device_ms']:.3f}/{r['own_device_ms']:.3f} ms "
                        f"({r['device_ratio']:.3f}), sync {r['effkit_sync_ms']:.3f}/{r['own_sync_ms']:.3f} ({r['sync_ratio']:.3f}), "
                        f"throughput {r['effkit_samples_per_s']:,.0f}/{r['own_samples_per_s']:,.0f} ({r['throughput_ratio']:.3f}); "
                        "own after/before " + " ".join(f"{k} {v:.3f}" for k, v in r["own_after_over_before"].items()))
                    RESULTS["figures"] = rows
                    save(out)
                    del net, x
                    if device.startswith("cuda"):
                        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- 4. autocast trace: emulation vs real
def _kind(op: str) -> str | None:
    name = op.split(".")[1]
    if "convolution" in name:
        return "conv"
    if name in ("mm", "addmm", "bmm", "baddbmm"):
        return "matmul"
    if "scaled_dot_product" in name:
        return "attention"
    if "norm" in name:
        return "norm"
    if "softmax" in name:
        return "softmax"
    return None


def _signature(t):
    by = {}
    for o in t.ops:
        if o.phase != "forward":
            continue
        if o.cast:
            d = by.setdefault(o.path, {"casts": 0, "cast_bytes": 0, "ops": []})
            d["casts"] += 1
            d["cast_bytes"] += o.bytes_read + o.bytes_written
        k = _kind(o.op)
        if k and not o.cast:
            by.setdefault(o.path, {"casts": 0, "cast_bytes": 0, "ops": []})["ops"].append((k, o.out_dtypes[0]))
    return by


def part_trace(device, out, quick, models):
    rows = []
    for m in models:
        meta = effkit.trace(m, batch=8, dtype="bf16-mixed", device="meta")
        real = effkit.trace(m, batch=8, dtype="bf16-mixed", device=device)
        a, b = _signature(meta), _signature(real)
        diffs = []
        for path in sorted(set(a) | set(b)):
            if a.get(path) != b.get(path):
                diffs.append({"layer": path, "meta": a.get(path), "real": b.get(path)})
        la, lb = {l.path: l for l in meta.layers}, {l.path: l for l in real.layers}
        flop_diffs = [p for p in la if p in lb and (la[p].macs, la[p].flops) != (lb[p].macs, lb[p].flops)]
        r = {"model": m, "macs_equal": meta.totals.macs == real.totals.macs, "flops_equal": meta.totals.flops == real.totals.flops,
             "layers_with_other_flops": flop_diffs, "meta_casts": meta.totals.casts, "real_casts": real.totals.casts,
             "meta_cast_bytes": meta.totals.cast_bytes, "real_cast_bytes": real.totals.cast_bytes,
             "meta_bytes": meta.totals.bytes, "real_bytes": real.totals.bytes, "layers_compared": len(set(a) | set(b)),
             "layers_differing": len(diffs), "differences": diffs[:20]}
        rows.append(r)
        log(f"autocast trace {m}: MACs equal {r['macs_equal']}, FLOPs equal {r['flops_equal']}, casts {r['meta_casts']}/{r['real_casts']}, "
            f"cast bytes {r['meta_cast_bytes']}/{r['real_cast_bytes']}, layers differing {r['layers_differing']} of {r['layers_compared']}")
        for d in diffs[:5]:
            log(f"   {d['layer']}: meta {d['meta']} real {d['real']}")
        RESULTS["autocast_trace"] = rows
        save(out)


# ----------------------------------------------------------------------------- 5. reports
def part_reports(device, out, quick, models):
    from effkit.profiling import compare, profile

    rep = out / "reports"
    b = 8 if quick else 64
    t = time.perf_counter()
    compare(models, device=device, batch=b, dtype="bf16", out=rep / "compare_h200_bf16_b64")
    log(f"compare (NCHW eager) written in {time.perf_counter() - t:.0f} s")
    if device.startswith("cuda"):
        t = time.perf_counter()
        compare(models, device=device, batch=b, dtype="bf16", channels_last=True, cuda_graph=True, out=rep / "compare_h200_bf16_b64_nhwc_graph")
        log(f"compare (NHWC graph) written in {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    r = profile("convnext_tiny", device=device, batch=b, dtype="bf16-mixed", channels_last=True, cuda_graph=device.startswith("cuda"),
                out=rep / "convnext_tiny_h200_bf16-mixed_b64_nhwc_graph")
    cast = profile("convnext_tiny", device=device, batch=b, dtype="bf16", channels_last=True, cuda_graph=device.startswith("cuda"),
                   out=rep / "convnext_tiny_h200_bf16_b64_nhwc_graph")
    from effkit.report.headline import headline

    RESULTS["convnext_mixed"] = {"mixed": r.analyses[-1].summary_row(), "cast": cast.analyses[-1].summary_row(),
                                 "headline_mixed": headline(r.analyses[-1]), "headline_cast": headline(cast.analyses[-1])}
    log(f"convnext_tiny bf16-mixed vs bf16 profiles in {time.perf_counter() - t:.0f} s")
    for h in headline(r.analyses[-1]):
        log("  " + h)
    save(out)


# ----------------------------------------------------------------------------- 6. scale examples regenerated
def part_scale(device, out, quick, models):
    rep = out / "reports"
    for graph, name in ((False, "scale_regnety_400mf_h200_bf16_b64"), (True, "scale_regnety_400mf_h200_bf16_b64_graph")):
        t = time.perf_counter()
        r = effkit.scale("regnety_400mf", ["d", "w", "r", "dwr", "dWr"], [1, 2, 4] if quick else [1, 2, 4, 8, 16], device=device,
                         batch=8 if quick else 64, dtype="bf16", out=rep / name, cuda_graph=graph, channels_last=graph)
        RESULTS.setdefault("scale", {})[name] = {"fits": r.fits, "latency_vs": r.latency_vs()}
        log(f"scale {name} in {time.perf_counter() - t:.0f} s: {r.latency_vs()}")
        save(out)


# ----------------------------------------------------------------------------- 7. profiles for `effkit diff` (issue 16)
def part_diff_inputs(device, out, quick, models):
    """convnext_tiny at batch 64, bf16: NCHW eager, channels-last eager, channels-last with CUDA graphs, each a profile
    run folder, for `effkit diff` to compare (the layout change, then the execution-mode change)."""
    from effkit.profiling import profile

    rep = out / "reports"
    b = 8 if quick else 64
    graph_ok = device.startswith("cuda")
    for name, cl, graph in (("nchw_eager", False, False), ("nhwc_eager", True, False), ("nhwc_graph", True, graph_ok)):
        t = time.perf_counter()
        profile("convnext_tiny", device=device, batch=b, dtype="bf16", channels_last=cl, cuda_graph=graph,
                out=rep / f"diff_convnext_tiny_h200_bf16_b64_{name}")
        log(f"profile convnext_tiny {name} in {time.perf_counter() - t:.0f} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a dry run on the CPU")
    ap.add_argument("--parts", default="1,2,3,4,5")
    ap.add_argument("--models", default=",".join(CORE))
    ap.add_argument("--modes", default="eager,graph", help="part 3: eager, graph or both")
    a = ap.parse_args()
    out = Path(a.out)
    MODES[:] = a.modes.split(",")
    out.mkdir(parents=True, exist_ok=True)
    models = a.models.split(",")
    RESULTS["meta"] = {"torch": torch.__version__, "device": torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu",
                       "effkit": effkit.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}
    parts = {"1": part_ceilings, "2": part_ladder, "3": part_figures, "4": part_trace, "5": part_reports, "6": part_scale, "7": part_diff_inputs}
    for k in a.parts.split(","):
        t = time.perf_counter()
        try:
            fn = parts[k]
            fn(a.device, out, a.quick) if k == "1" else fn(a.device, out, a.quick, models)
        except Exception as e:  # report and go on: the other parts still count
            import traceback

            traceback.print_exc()
            RESULTS.setdefault("errors", []).append(f"part {k}: {type(e).__name__}: {e}")
            save(out)
        log(f"== part {k} took {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
