"""GPU evidence for issue 20: the meta-trace memory prediction against the CUDA allocator.

For the five core models at batch 1, 64 and 256, bf16: an inference step and a training step with AdamW
(foreach, as on CUDA), each measured by this script's own loop: reset the peak statistics, run the step
(a warm-up step first: in training so the optimizer's state exists, as in the prediction's steady state),
read torch.cuda.max_memory_allocated. Then the largest batch `effkit trace --fits 40GB` predicts for
resnet50 training is run, and that batch plus 25 %.

    python3 benchmarks/memory_gpu.py --out $OUT
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import effkit  # noqa: E402
from effkit.trace.memory import largest_batch, predict_memory, usable  # noqa: E402

CORE = ["resnet50", "convnext_tiny", "efficientnet_b0", "mobilenet_v2", "vit_b_16"]


def measured(ref, batch: int, mode: str) -> int | str:
    """max_memory_allocated of one step (after a warm-up step in training), or 'oom'."""
    net = xs = opt = None
    try:
        net = ref.build("cuda", torch.bfloat16)
        net.train(mode == "train")
        xs = ref.inputs(batch, torch.bfloat16, "cuda")
        if mode == "infer":
            with torch.no_grad():  # a warm-up step: the libraries' first-call workspaces exist before the measured step
                ref.call(net, xs)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            with torch.no_grad():
                out = ref.call(net, xs)
            torch.cuda.synchronize()
            del out
            return torch.cuda.max_memory_allocated() - base + _static(net, xs)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, foreach=True)

        def step():
            opt.zero_grad(set_to_none=True)
            out = ref.call(net, xs)
            out = out if isinstance(out, torch.Tensor) else out[0]
            out.backward(torch.ones_like(out))
            opt.step()

        step()  # the optimizer's state now exists
        torch.cuda.synchronize()
        opt.zero_grad(set_to_none=True)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base + _static(net, xs, opt)
    except torch.OutOfMemoryError:
        return "oom"
    finally:
        del net, xs, opt
        gc.collect()
        torch.cuda.empty_cache()


def _static(net, xs, opt=None) -> int:
    """What was allocated before the measured step and lives through it: parameters, buffers, inputs, optimizer state
    (counted as the prediction counts them; the measurement above is the growth over them)."""
    seen, total = set(), 0
    ts = list(net.parameters()) + list(net.buffers()) + list(xs)
    if opt is not None:
        ts += [t for s in opt.state.values() for t in s.values() if isinstance(t, torch.Tensor) and t.is_cuda]
    for t in ts:
        st = t.untyped_storage()
        if st.data_ptr() not in seen:
            seen.add(st.data_ptr())
            total += st.nbytes()
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default=",".join(CORE))
    ap.add_argument("--batches", default="1,64,256")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    meta = {"torch": torch.__version__, "device": torch.cuda.get_device_name(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv)}
    for m in a.models.split(","):
        ref = effkit.resolve(m)
        for b in (int(x) for x in a.batches.split(",")):
            for mode in ("infer", "train"):
                pred = predict_memory(ref, b, precision="bf16", mode=mode, optimizer="adamw" if mode == "train" else None)
                meas = measured(ref, b, mode)
                r = {"model": m, "batch": b, "mode": mode, "predicted_bytes": pred.peak_bytes, "measured_bytes": meas,
                     "ratio": meas / pred.peak_bytes if isinstance(meas, int) else None, "at_peak": pred.at_peak,
                     "peak_phase": pred.peak_phase, "peak_path": pred.peak_path}
                rows.append(r)
                print(f"{m} b{b} {mode}: predicted {pred.peak_bytes / 1e6:,.1f} MB, measured "
                      f"{meas / 1e6 if isinstance(meas, int) else meas} MB, ratio {r['ratio']}", flush=True)
                (out / "memory_gpu.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    # --fits 40GB for resnet50 training with AdamW: that batch runs, and 1.25 x it does not fit or comes within 10 % of 40 GB
    ref = effkit.resolve("resnet50")
    budget = 40 * 10**9
    best, tried = largest_batch(lambda b: predict_memory(ref, b, precision="bf16", mode="train", optimizer="adamw").peak_bytes, budget)
    fit = {"budget_bytes": budget, "usable_bytes": usable(budget), "largest_batch": best, "tried": tried}
    for b in (best, int(best * 1.25)):
        fit[f"measured_at_{b}"] = measured(ref, b, "train")
        print(f"fits: batch {b}: measured {fit[f'measured_at_{b}']}", flush=True)
    (out / "memory_gpu.json").write_text(json.dumps({"meta": meta, "rows": rows, "fits": fit}, indent=1))


if __name__ == "__main__":
    main()
