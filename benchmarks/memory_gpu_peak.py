"""What the CUDA allocator holds at the peak of an inference step that the meta-trace prediction does not (issue 20).

memory_gpu.py found every training step within 5 % of the prediction, but inference steps 8-53 % above it. This script
records the allocator's history (torch.cuda.memory._record_memory_history, Python stacks) over one inference step,
replays the alloc/free events to find the moment of the peak, and lists the blocks alive then, largest first, each with
the innermost frame of the model's code that asked for it. It also measures the same step's peak with cuDNN switched off
(torch.backends.cudnn.enabled = False): a difference there is cuDNN's workspace.

    python3 benchmarks/memory_gpu_peak.py --out $OUT
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
from effkit.trace.memory import predict_memory  # noqa: E402

CASES = [("resnet50", 1), ("resnet50", 64), ("convnext_tiny", 64), ("mobilenet_v2", 64), ("vit_b_16", 64)]


def frame_of(frames: list[dict]) -> str:
    """The innermost frame in effkit's models or torch.nn (where the model asked for the tensor)."""
    for f in frames:
        name = f.get("filename", "")
        if "effkit/models" in name or "torch/nn/modules" in name or "torch/nn/functional" in name:
            return f"{name.split('/')[-1]}:{f.get('line')} {f.get('name')}"
    return f"{frames[0].get('filename', '?').split('/')[-1]}:{frames[0].get('line')}" if frames else "?"


def peak_blocks(trace: list[dict]) -> tuple[int, list[tuple[int, str]]]:
    """Replay alloc/free events: the largest total of live bytes, and the blocks alive at that moment."""
    live: dict[int, tuple[int, str]] = {}
    total = best = 0
    at_best: list[tuple[int, str]] = []
    for e in trace:
        if e["action"] == "alloc":
            live[e["addr"]] = (e["size"], frame_of(e.get("frames", [])))
            total += e["size"]
            if total > best:
                best, at_best = total, sorted(live.values(), reverse=True)
        elif e["action"] == "free_requested" and e["addr"] in live:
            total -= live.pop(e["addr"])[0]
    return best, at_best


def step_peak(net, xs, ref) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    with torch.no_grad():
        out = ref.call(net, xs)
    torch.cuda.synchronize()
    del out
    return torch.cuda.max_memory_allocated() - base


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for m, b in CASES:
        ref = effkit.resolve(m)
        net = ref.build("cuda", torch.bfloat16).eval()
        xs = ref.inputs(b, torch.bfloat16, "cuda")
        pred = predict_memory(ref, b, precision="bf16", mode="infer")
        static = sum(t.untyped_storage().nbytes() for t in list(net.parameters()) + list(net.buffers()) + list(xs))
        step_peak(net, xs, ref)  # warm-up: cuBLAS/cuDNN handles and their workspaces exist before the measured step
        grown = step_peak(net, xs, ref)
        torch.cuda.memory._record_memory_history(max_entries=200000, stacks="python")
        step_peak(net, xs, ref)
        snap = torch.cuda.memory._snapshot()
        torch.cuda.memory._record_memory_history(enabled=None)
        traced, blocks = peak_blocks(snap["device_traces"][torch.cuda.current_device()])
        torch.backends.cudnn.enabled = False
        no_cudnn = step_peak(net, xs, ref)
        torch.backends.cudnn.enabled = True
        r = {"model": m, "batch": b, "predicted_bytes": pred.peak_bytes, "predicted_activations": pred.peak_bytes - static,
             "measured_growth": grown, "traced_peak": traced, "growth_without_cudnn": no_cudnn,
             "blocks_at_peak": [(s, f) for s, f in blocks[:12]]}
        rows.append(r)
        print(f"{m} b{b}: predicted activations {r['predicted_activations'] / 1e6:,.1f} MB; measured growth {grown / 1e6:,.1f} MB "
              f"(traced {traced / 1e6:,.1f}); without cuDNN {no_cudnn / 1e6:,.1f} MB", flush=True)
        for s, f in blocks[:12]:
            print(f"    {s / 1e6:10,.2f} MB  {f}", flush=True)
        (out / "memory_gpu_peak.json").write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "torch": torch.__version__,
                                                              "rows": rows}, indent=1))
        del net, xs
        gc.collect()
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
