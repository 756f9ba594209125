"""The memory prediction of this effkit against measurements already taken on the GPU (issue 20).

The prediction is a meta trace (no device): recomputing it needs no GPU, and the measurements it is set against are
memory_gpu.py's own loop (torch.cuda.max_memory_allocated), taken before the prediction changed. Prints both ratios.

    python3 benchmarks/memory_repredict.py benchmarks/results/h200/memory/run1_memory_gpu.json [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import effkit  # noqa: E402
from effkit.trace.memory import predict_memory  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("measured")
    ap.add_argument("--out")
    a = ap.parse_args()
    d = json.loads(Path(a.measured).read_text())
    rows = []
    print(f"{'model':16s} {'batch':>5s} {'mode':5s} {'measured MB':>12s} {'then MB':>10s} {'ratio':>7s} {'now MB':>10s} {'ratio':>7s}")
    for r in d["rows"]:
        p = predict_memory(effkit.resolve(r["model"]), r["batch"], precision="bf16", mode=r["mode"],
                           optimizer="adamw" if r["mode"] == "train" else None)
        m = r["measured_bytes"]
        row = {**{k: r[k] for k in ("model", "batch", "mode", "measured_bytes", "predicted_bytes")}, "predicted_now": p.peak_bytes,
               "ratio_then": m / r["predicted_bytes"], "ratio_now": m / p.peak_bytes, "peak_path_now": p.peak_path}
        rows.append(row)
        print(f"{r['model']:16s} {r['batch']:5d} {r['mode']:5s} {m / 1e6:12,.1f} {r['predicted_bytes'] / 1e6:10,.1f} {row['ratio_then']:7.4f} "
              f"{p.peak_bytes / 1e6:10,.1f} {row['ratio_now']:7.4f}", flush=True)
    beyond = [r for r in rows if abs(r["ratio_now"] - 1) > 0.05]
    print(f"beyond 5 % now: {len(beyond)} of {len(rows)}; largest |ratio - 1|: {max(abs(r['ratio_now'] - 1) for r in rows):.4f}")
    if a.out:
        Path(a.out).write_text(json.dumps({"measured_from": a.measured, "torch": __import__("torch").__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
