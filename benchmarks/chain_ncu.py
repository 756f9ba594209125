"""Nsight Compute on the expansion chain's kernels: why `tl`, Gluon and warp-specialised Gluon reach what they reach (issue 19, run 36).

mlp_ceiling.py, gluon_chain.py and gluon_ws_chain.py time three ways of writing the same chain (1x1 expand, SiLU, 1x1
project, on chip). This reads what each does on the chip, at each width's fastest tile: the tensor pipes' share of the
cycles (what the roofline's FLOP ceiling is made of), the issue slots', the achieved occupancy, the L2-to-SM bytes (the
weights each program streams) and the five largest stall reasons. The counters and their reading are kernels_ncu.py's
(its SECTIONS, METRICS and kernel_summary; the same caveats: ncu runs each kernel cold, after a cache flush, with the
clocks left alone, so its times are one cold kernel and not the CUDA-graph medians the other scripts give). Each kernel
is checked against PyTorch before it is profiled, and is bracketed by marker launches, so none is named by its order alone.

    python3 benchmarks/chain_ncu.py --out $OUT [--widths 128] [--ws-json $OUT/ws/gluon_ws_chain.json] [--source]

Without --ws-json the warp-specialised kernel runs at WS_DEFAULT's tile; with it, at that sweep's fastest tile of each
consumer mode a width. With --source, each kernel's stall samples by instruction instead (ncu_source.json).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import kernels_ncu as kn  # noqa: E402

GLUON_BEST = {64: {"block_p": 64, "block_h": 64, "warps": 4, "stages": 2}, 128: {"block_p": 64, "block_h": 64, "warps": 4, "stages": 3},
              256: {"block_p": 64, "block_h": 32, "warps": 4, "stages": 2}}  # gluon_chain.py's fastest tiles, runs 35f and 35g
WS_DEFAULT = {"block_h": 128, "stages": 2, "mode": "plain"}  # run 36's fastest warp-specialised tile at 128 channels


def ws_best(path: str | None, c: int) -> list[dict]:
    """The warp-specialised tiles to profile at width c: the fastest timed tile of each consumer mode and consumer count
    in gluon_ws_chain.py's JSON, ablations left out (WS_DEFAULT without one)."""
    if not path:
        return [WS_DEFAULT]
    for s in json.loads(Path(path).read_text())["shapes"]:
        if s["width"] == c:
            best = {}
            for t in (t for t in s["tiles"] if "ms" in t and not t.get("ablation")):
                key = (t["mode"], t.get("ncons", 2))
                if key not in best or t["ms"] < best[key]["ms"]:
                    best[key] = t
            return [{k: b[k] for k in (*WS_DEFAULT, "ncons") if k in b} for b in best.values()] or [WS_DEFAULT]
    return [WS_DEFAULT]


def target(a) -> None:
    """Under ncu: each kernel checked, then profiled once (kernels_ncu.profiled: run twice, then once between
    cudaProfilerStart/Stop, bracketed by markers)."""
    import gluon_chain
    import gluon_ws_chain
    import mlp_ceiling

    flag = torch.zeros(1, device="cuda")
    kn._ncu_marker_kernel[(1,)](flag)
    manifest = []
    for c in (int(w) for w in a.widths.split(",")):
        side = mlp_ceiling.MAPS[c]
        npix = a.batch * side * side
        d = mlp_ceiling.make(npix, c, "cuda", torch.bfloat16)
        ref = mlp_ceiling.reference(d)
        flops, nbytes = mlp_ceiling.cost(npix, c)
        items = [("tl", gluon_chain.TL_BEST[c], lambda cfg: mlp_ceiling.fused(d, cfg, fast=True)[0]),
                 ("gluon", GLUON_BEST[c], lambda cfg: gluon_chain.fused(d, cfg)[0])]
        items += [(f"ws {cfg['mode']}" + (f" x{cfg['ncons']}" if "ncons" in cfg else ""), cfg, lambda cfg: gluon_ws_chain.fused(d, cfg)[0])
                  for cfg in ws_best(a.ws_json, c)]
        for what, cfg, make in items:
            name = f"C={c} {what}"
            try:
                f = make(cfg)
                with torch.no_grad():
                    err = (f(d["x"]).float() - ref).abs().max().item() / ref.abs().max().item()
                if err > mlp_ceiling.TOL:
                    raise ValueError(f"error {err:.2e} over the tolerance")
                kn.profiled(f, d["x"], flag)
            except Exception as e:  # noqa: BLE001 - a kernel that fails here is reported, the others still run
                print(f"{name} {cfg}: skipped ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})", flush=True)
                continue
            manifest.append({"item": name, "what": what, "width": c, "map": side, "npix": npix, "config": cfg, "error": err,
                             "flops": flops, "compulsory_bytes": nbytes})
            print(f"ran {name} {cfg} (error {err:.1e})", flush=True)
    Path(a.out, "manifest.json").write_text(json.dumps(manifest, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--widths", default="128")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--ws-json", default=None, help="gluon_ws_chain.py's JSON: profile each width's fastest tile")
    ap.add_argument("--source", action="store_true", help="instead of the counters, each kernel's warp-stall samples by "
                    "instruction (ncu's SourceCounters): ncu_source.json, kernels_ncu.source_stalls of them")
    ap.add_argument("--target", action="store_true", help="(internal) the program ncu runs")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.target:
        return target(a)
    ncu = kn.find_ncu()
    if ncu is None:
        sys.exit("error: ncu (Nsight Compute) was not found on PATH or under /opt/nvidia/nsight-compute")
    rep = out / "ncu_report"
    me = [sys.executable, str(Path(__file__).resolve()), "--target", "--out", str(out), "--widths", a.widths, "--batch", str(a.batch)]
    me += ["--ws-json", a.ws_json] if a.ws_json else []
    base = [ncu, "--clock-control", "none", "--profile-from-start", "off", "--target-processes", "application-only", "-f", "-o", str(rep)]
    if a.source:  # the chain kernels alone (the markers are filtered out), their instructions' stall samples
        base += ["--section", "SourceCounters", "--section", "WarpStateStats", "--kernel-name", "regex:_mlp_kernel|_chain_kernel|_ws_chain_kernel|_ws_persist_kernel"]
        with open(out / "ncu_log.txt", "w") as log:
            r = subprocess.run(base + me, stdout=log, stderr=subprocess.STDOUT)
        if r.returncode:
            sys.exit(f"error: ncu exited {r.returncode}; see {out / 'ncu_log.txt'}")
        sass = subprocess.run([ncu, "--import", str(rep) + ".ncu-rep", "--page", "source", "--csv", "--print-source", "sass"],
                              capture_output=True, text=True, check=True).stdout
        manifest = json.loads((out / "manifest.json").read_text())
        res = kn.source_stalls(sass, top=14)
        if len(res) != len(manifest):
            sys.exit(f"error: {len(res)} kernels in ncu's source page, {len(manifest)} items in the manifest")
        for m, r in zip(manifest, res):
            r.update(item=m["item"], config=m["config"])
            print(f"{m['item']:<16} {r['samples']:>6} samples; opcodes {r['opcode_pct']}; opcode and stall {r['opcode_stall_pct']}", flush=True)
        (out / "ncu_source.json").write_text(json.dumps(res, indent=1))
        return
    base += [x for s in kn.SECTIONS for x in ("--section", s)]
    with open(out / "ncu_log.txt", "w") as log:
        r = subprocess.run(base + ["--metrics", ",".join(kn.METRICS)] + me, stdout=log, stderr=subprocess.STDOUT)
    if r.returncode:
        sys.exit(f"error: ncu exited {r.returncode}; see {out / 'ncu_log.txt'}")
    raw = subprocess.run([ncu, "--import", str(rep) + ".ncu-rep", "--csv", "--page", "raw", "--print-units", "base"], capture_output=True,
                         text=True, check=True).stdout
    (out / "ncu_raw.csv").write_text(raw)
    manifest = json.loads((out / "manifest.json").read_text())
    rows, _ = kn.parse_raw(raw)
    items = kn.split_items(rows, [m["item"] for m in manifest])
    res = {"meta": {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv),
                    "note": "one cold kernel each (ncu --cache-control all, --clock-control none): times are not the CUDA-graph medians"},
           "items": []}
    for m in manifest:
        ks = [kn.kernel_summary(r) for r in items[m["item"]]]
        res["items"].append({**m, "kernels": ks})
        for k in ks:
            print(f"{m['item']:<16} {str(m['config']):<60} {k.get('time_ns', 0) / 1e3:7.1f} us cold; regs {k.get('registers')}, "
                  f"{k.get('threads')} threads, occupancy {k.get('achieved_occupancy_pct', float('nan')):.1f} % of "
                  f"{k.get('theoretical_occupancy_pct', float('nan')):.1f} %; issue slots {k.get('issue_active_pct', float('nan')):.1f} %; "
                  f"tensor pipes {k['tensor_pipes_pct']}; L2 to SMs {k.get('l2_to_sm_bytes', 0) / 1e6:.1f} MB; "
                  f"stalls (cycles an issue, of {k.get('warp_cycles_per_issue', float('nan')):.1f}) {k['top_stalls']}", flush=True)
    (out / "ncu.json").write_text(json.dumps(res, indent=1))
    print(f"wrote {out / 'ncu.json'}")


if __name__ == "__main__":
    main()
