"""GPU evidence for issue 15 (runs 1-5 in benchmarks/README.md: H200 runs 1-4, H100 run 5 with the fused knob).

`effkit advise` for convnext_tiny, resnet50 and mobilenet_v2 at batch 64 and vit_b_16 at batch 1, each inside a 300 s
budget; then the best configuration each reports is re-measured by this script's own loop (CUDA events around
back-to-back steps, written here, not effkit's timing code) and the two medians compared (target: within 3 %).

    python3 benchmarks/advise_gpu.py --out $OUT
    python3 benchmarks/advise_gpu.py --out $OUT --cases convfirst_net:64   # the fused knob (effkit.kernels) among the others

The own loop applies the advised snippet as a user would, `fuse_blocks` included where the fused knob won.
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
from effkit.advising import advise  # noqa: E402

CASES = [("convnext_tiny", 64), ("resnet50", 64), ("mobilenet_v2", 64), ("vit_b_16", 1)]


def own_median_ms(model: str, batch: int, snippet: str) -> float:
    """Apply the advised snippet to a fresh model and input, then time 200 back-to-back steps with CUDA events."""
    ref = effkit.resolve(model)
    scope = {"model": ref.build("cuda", torch.float32), "x": ref.inputs(batch, torch.float32, "cuda")[0]}
    exec(compile(snippet, "<advised>", "exec"), scope)
    graph = scope.get("graph")
    model_, x = scope["model"], scope["x"]
    prec = "autocast" in snippet
    ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16 if "bfloat16" in snippet else torch.float16)) if prec else None

    def step():
        if graph is not None:
            graph.replay()
            return
        with torch.no_grad():
            if ctx:
                with ctx():
                    model_(x)
            else:
                model_(x)

    for _ in range(20):
        step()
    torch.cuda.synchronize()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(200)]
    for a, b in ev:
        a.record()
        step()
        b.record()
    torch.cuda.synchronize()
    return statistics.median(a.elapsed_time(b) for a, b in ev)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=300.0)
    ap.add_argument("--cases", default=",".join(f"{m}:{b}" for m, b in CASES), help="model:batch,...")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for case in a.cases.split(","):
        model, batch = case.split(":")[0], int(case.split(":")[1])
        t = time.perf_counter()
        try:
            r = advise(model, device="cuda", batch=batch, budget_s=a.budget, out=out / f"advise_{model}_b{batch}")
        except Exception as e:  # report and go on: the other cases still count
            rows.append({"model": model, "batch": batch, "error": f"{type(e).__name__}: {e}"})
            print(f"{model} b{batch}: FAILED {type(e).__name__}: {e}", flush=True)
            continue
        wall = time.perf_counter() - t
        best_ms = 1e3 * r.search.best.median_s
        try:
            own = own_median_ms(model, batch, r.snippet)
        except Exception as e:
            print(f"{model} b{batch}: own loop FAILED {type(e).__name__}: {e}\n{r.snippet}", flush=True)
            own = float("nan")
        rows.append({"model": model, "batch": batch, "wall_s": wall, "best": r.search.best.knobs, "effkit_ms": best_ms, "own_ms": own,
                     "ratio": best_ms / own, "ranking": r.ranking})
        print(f"{model} b{batch}: {wall:.0f} s, best {r.search.best.knobs}: effkit {best_ms:.3f} ms, own loop {own:.3f} ms "
              f"({best_ms / own:.3f})", flush=True)
        (out / "advise_gpu.json").write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows}, indent=1, default=str))


if __name__ == "__main__":
    main()
