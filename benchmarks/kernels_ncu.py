"""Hardware counters for issue 19: the block-fused kernels and torch.compile's kernels under Nsight Compute (ncu).

kernels_gpu.py times the kernels; this script reads what they do on the chip, which timing cannot show: the DRAM bytes
actually moved (against the compulsory bytes the fused rooflines use), the L2 traffic (the weights every program
streams: l2_to_sm_bytes, the bytes L2 sent to the SMs; l2_read_bytes counts L2 lookups, one for a sector several SMs
ask for at once, run 31c), the occupancy achieved, the tensor pipes' and issue slots' use, and why warps stall. For each distinct block
shape of the networks at --batch (64), two items, each run once: the fused block (the defaults) and the unfused block
under torch.compile (default mode; with --eager-blocks also eager: bf16, channels-last, nothing folded); with
--networks each whole network fused, compiled and eager (hundreds of kernels), its DRAM bytes beside effkit's trace of
the same network. The kernels of an item are the ones between two marker launches (`_ncu_marker_kernel`), so no
kernel is attributed by its name or its order alone. ncu needs a machine whose runtime lets it read the counters (on
the lent H200s: Firecracker, not gVisor; the device notes' KINDS.md).

How it reads them. The script runs itself under ncu (`--target`), which profiles only between cudaProfilerStart and
cudaProfilerStop: each item is built and run twice first (Triton's and inductor's compiles, autotuning), then once
between the two calls. ncu replays every kernel once a group of counters, with the caches flushed before each replay
(its default --cache-control all) and the clocks left alone (--clock-control none, as the device notes ask), so:
- each kernel starts with a cold L2: its input is read from DRAM, as the compulsory bytes assume (in the network the
  block before may leave it in the 60 MB L2, so these are the cold-cache bytes, an upper bound for the reads);
- writes still in L2 when the kernel ends are written back after it and not counted: a kernel's DRAM writes can be
  below its output bytes. The bytes the SMs wrote into L2 (lts__t_sectors_op_write) are kept too, but on the H200 they
  came to 1.5x the output bytes of every fused kernel (run 29, not explained), so they are not a count of bytes written;
- times under ncu (gpu__time_duration) are one kernel alone, cold, after a flush: they are not kernels_gpu.py's
  back-to-back CUDA-graph medians and are given for the stall and occupancy figures' context, not as latencies.

Outputs in --out: ncu_raw.csv (ncu's raw page, every metric, one row a kernel), ncu_report.ncu-rep, ncu.json (per item:
its kernels with the chosen metrics, the totals, the compulsory and unfused bytes), ncu_log.txt (ncu's own output).
With --source, instead: the fused kernels alone with ncu's instruction-level stall sampling (SourceCounters),
ncu_sass.csv (every SASS instruction with its samples) and ncu_source.json (`source_stalls`: the samples by opcode and
by opcode and reason).

    python3 benchmarks/kernels_ncu.py --out $OUT [--batch 64] [--nets convfirst_net,mbconv_net] [--networks] [--shapes c48,c192]
    python3 benchmarks/kernels_ncu.py --out $OUT --source --nets convfirst_net --shapes c48,c96,c192,c384

`--smoke` builds and runs the items on the CPU (Triton's interpreter, fp32, small networks, no ncu) to check this
script before it spends device time:

    TRITON_INTERPRET=1 python3 benchmarks/kernels_ncu.py --smoke --out /tmp/n
"""
from __future__ import annotations

import argparse
import copy
import csv
import glob
import io
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import triton
import triton.language as tl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import effkit  # noqa: E402
import kernels_gpu as kg  # noqa: E402
from effkit.kernels import fuse_blocks  # noqa: E402

MARKER = "_ncu_marker_kernel"
FUSED_KERNELS = "|".join((*kg.BLOCK_KERNELS, "_conv_act_kernel"))  # effkit.kernels' Triton kernels
SECTIONS = ("SpeedOfLight", "Occupancy", "LaunchStats", "WarpStateStats")  # run 29a: six sections (with the memory and compute
# workload analyses) over both networks' blocks and networks did not finish in 270 s a network
METRICS = ("dram__bytes_read.sum", "dram__bytes_write.sum", "lts__t_bytes.sum", "lts__t_sectors_op_read.sum", "lts__t_sectors_op_write.sum",
           "l1tex__m_xbar2l1tex_read_bytes.sum", "gpu__time_duration.sum", "launch__registers_per_thread",
           "sm__warps_active.avg.pct_of_peak_sustained_active")
# Which counter is "the bytes the SMs read from L2" (run 31c, benchmarks/l2_check.py): 98 programs each reading the same
# 2,359,296 B once made l1tex__m_xbar2l1tex_read_bytes 231,211,008 B, exactly 98 times it, but lts__t_sectors_op_read
# only 66.6 MB: the L2 serves a sector that several SMs ask for at once with one lookup, and counts it once. So
# l2_to_sm_bytes (each SM's reads) is the weights-streamed-per-program figure, and l2_read_bytes counts L2 lookups.
# the metrics ncu.json keeps a kernel (the raw CSV keeps all): name in ncu -> key
KEEP = {"gpu__time_duration.sum": "time_ns", "dram__bytes_read.sum": "dram_read_bytes", "dram__bytes_write.sum": "dram_write_bytes",
        "lts__t_bytes.sum": "l2_bytes", "lts__t_sectors_op_read.sum": "l2_read_sectors", "lts__t_sectors_op_write.sum": "l2_write_sectors",
        "l1tex__m_xbar2l1tex_read_bytes.sum": "l2_to_sm_bytes",
        "launch__registers_per_thread": "registers", "launch__grid_size": "grid", "launch__block_size": "threads",
        "launch__occupancy_limit_registers": "blocks_per_sm_by_registers", "launch__occupancy_limit_shared_mem": "blocks_per_sm_by_shared",
        "sm__maximum_warps_per_active_cycle_pct": "theoretical_occupancy_pct",
        "sm__warps_active.avg.pct_of_peak_sustained_active": "achieved_occupancy_pct",
        "sm__throughput.avg.pct_of_peak_sustained_elapsed": "sm_throughput_pct",
        "gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed": "memory_throughput_pct",
        "dram__throughput.avg.pct_of_peak_sustained_elapsed": "dram_throughput_pct",
        "sm__issue_active.avg.pct_of_peak_sustained_elapsed": "issue_active_pct",
        "smsp__average_warp_latency_per_inst_issued.ratio": "warp_cycles_per_issue",
        "launch__shared_mem_per_block_dynamic": "dynamic_shared_bytes", "launch__shared_mem_per_block_static": "static_shared_bytes"}
STALL = re.compile(r"^smsp__average_warps_issue_stalled_(\w+?)_per_issue_active\.ratio$")
TENSOR = re.compile(r"^sm__pipe_tensor\w*cycles_active\.avg\.pct_of_peak_sustained_(active|elapsed)$")


@triton.jit
def _ncu_marker_kernel(ptr):
    """A one-value store between items: the kernels of an item are those between two of these."""
    tl.store(ptr, 1.0)


def number(s: str):
    """An ncu CSV value as a number where it is one ('1,234.5' -> 1234.5), else the string."""
    t = s.replace(",", "").strip()
    try:
        return int(t)
    except ValueError:
        try:
            return float(t)
        except ValueError:
            return s


def parse_raw(text: str) -> tuple[list[dict], dict]:
    """ncu's `--csv --page raw` output: a header row of column names, a row of units, then one row a kernel (lines that
    ncu prints before the header, starting '==', are skipped). Returns (rows as name -> value, units by name)."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("==")]
    table = list(csv.reader(io.StringIO("\n".join(lines))))
    if len(table) < 2:
        raise ValueError("ncu's raw page has no header and units rows")
    head, units = table[0], dict(zip(table[0], table[1]))
    return [{k: number(v) for k, v in zip(head, r)} for r in table[2:]], units


def split_items(rows: list[dict], names: list[str]) -> dict[str, list[dict]]:
    """The kernels of each item: rows come in launch order, each item bracketed by two marker rows (one before, one
    after). A count that does not match the manifest is an error, not a guess."""
    out, cur, at = {}, None, 0
    for r in rows:
        if MARKER in str(r.get("Kernel Name", "")):
            if cur is None:
                if at >= len(names):
                    raise ValueError(f"more marker pairs than the {len(names)} items in the manifest")
                cur = []
            else:
                out[names[at]] = cur
                cur, at = None, at + 1
        elif cur is not None:
            cur.append(r)
        else:
            raise ValueError(f"kernel {r.get('Kernel Name')!r} (ID {r.get('ID')}) outside an item's markers")
    if at != len(names) or cur is not None:
        raise ValueError(f"{at} complete items between markers, the manifest has {len(names)}")
    return out


def kernel_summary(r: dict) -> dict:
    """The chosen metrics of one kernel, the bytes in bytes, and its five largest stall reasons (warp cycles per issued
    instruction spent in each) and tensor pipes' use."""
    s = {"kernel": str(r.get("Kernel Name", ""))[:120]}
    s.update({key: r[m] for m, key in KEEP.items() if isinstance(r.get(m), (int, float))})
    for k in ("l2_read_sectors", "l2_write_sectors"):
        if k in s:
            s[k.replace("sectors", "bytes")] = 32 * s.pop(k)  # an L2 sector is 32 bytes
    stalls = {STALL.match(m).group(1): v for m, v in r.items() if STALL.match(m) and isinstance(v, (int, float))}
    s["top_stalls"] = dict(sorted(stalls.items(), key=lambda kv: -kv[1])[:5])
    s["tensor_pipes_pct"] = {m.split("__")[1].split(".")[0]: v for m, v in r.items() if TENSOR.match(m) and isinstance(v, (int, float))}
    return s


def item_totals(kernels: list[dict]) -> dict:
    """Sums over an item's kernels (time, DRAM and L2 bytes) and its kernel count."""
    tot = {"kernels": len(kernels)}
    for k in ("time_ns", "dram_read_bytes", "dram_write_bytes", "l2_bytes", "l2_read_bytes", "l2_write_bytes", "l2_to_sm_bytes"):
        vals = [x[k] for x in kernels if k in x]
        if vals:
            tot[k] = sum(vals)
    return tot


def source_stalls(text: str, top: int = 10) -> list[dict]:
    """ncu's `--page source --csv --print-source sass` output (for each kernel a line '"Kernel Name","NAME",', then a
    table of its SASS instructions with their warp-stall samples) as, per kernel: the samples in all, the share taken by
    each opcode (its mnemonic, predicate and modifiers dropped: '@!P0 LDGSTS.E.128' is LDGSTS) and by each opcode and
    stall reason (the table's stall_* columns, all samples), the largest `top` of each, in %."""
    out, block = [], None
    for ln in text.splitlines():
        if ln.startswith('"Kernel Name"'):
            block = {"kernel": next(csv.reader([ln]))[1], "lines": []}
            out.append(block)
        elif block is not None and ln.strip():
            block["lines"].append(ln)
    res = []
    for b in out:
        table = list(csv.reader(b["lines"]))
        head = table[0]
        reasons = [h for h in head if h.startswith("stall_") and "Not Issued" not in h]
        by_op, by_reason = {}, {}
        for r in table[1:]:
            row = dict(zip(head, r))
            op = re.sub(r"^@!?U?P[T0-9]+\s+", "", row.get("Source", "").strip()).split(" ")[0].split(".")[0]
            by_op[op] = by_op.get(op, 0) + int(number(row.get("Warp Stall Sampling (All Samples)", "") or "0") or 0)
            for c in reasons:
                v = number(row.get(c, "") or "0")
                if isinstance(v, (int, float)) and v:
                    key = f"{op} {c[len('stall_'):]}"
                    by_reason[key] = by_reason.get(key, 0) + v
        total = sum(by_op.values()) or 1
        pct = lambda d: {k: round(100 * v / total, 1) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]}  # noqa: E731
        res.append({"kernel": b["kernel"], "samples": sum(by_op.values()), "opcode_pct": pct(by_op), "opcode_stall_pct": pct(by_reason)})
    return res


def find_ncu() -> str | None:
    return shutil.which("ncu") or next(iter(sorted(glob.glob("/opt/nvidia/nsight-compute/*/ncu"))[::-1]), None)


def unfused_bytes(hw: int, b: int, blk) -> int:
    """The bytes the unfused block's layers read and write in bf16 if each layer's input, output and weight crossed DRAM
    once (BatchNorms folded, each conv with its activation as one layer): convs in order, each reading its input and
    writing its output, and the residual add reading two tensors and writing one. For the fused block's bytes beside
    it: kg.block_cost's compulsory bytes."""
    side, total = hw, 0
    for m in blk.body:
        conv = m[0]
        out_side = (side - 1) // conv.stride[0] + 1
        total += 2 * (b * conv.in_channels * side * side + b * conv.out_channels * out_side * out_side + conv.weight.numel() + conv.out_channels)
        side = out_side
    c_out = blk.body[-1][0].out_channels
    if blk.shortcut is not None:
        conv = blk.shortcut[0]
        total += 2 * (b * conv.in_channels * hw * hw + b * conv.out_channels * side * side + conv.weight.numel() + conv.out_channels)
    return total + 2 * 3 * b * c_out * side * side


def profiled(fn, x, flag) -> None:
    """fn(x) twice (compiles, autotuning), then once between cudaProfilerStart and Stop, bracketed by marker launches
    (flag: a one-value tensor for them), so that ncu, started with --profile-from-start off, reads that launch alone."""
    with torch.no_grad():
        for _ in range(2):
            fn(x)
        kg.sync()
        if kg.DEV == "cuda":
            torch.cuda.profiler.start()
        _ncu_marker_kernel[(1,)](flag)
        fn(x)
        _ncu_marker_kernel[(1,)](flag)
        kg.sync()
        if kg.DEV == "cuda":
            torch.cuda.profiler.stop()


def output_check(fn, ref_module: torch.nn.Module, x: torch.Tensor, tol: float) -> dict:
    """fn(x) against the unfused module in fp32 on the same input, channels-last as profiled: max |difference| over the
    reference's max |value|, and whether it is within tol (kernels_gpu.TOL for a block, NET_TOL for a network). The
    counters of a kernel that computes the wrong thing are no evidence of the right one's (run 51's c384 block was
    wrong in every channels-last network this script had profiled)."""
    with torch.no_grad():
        want = copy.deepcopy(ref_module).float().to(memory_format=torch.channels_last)(x.float())
        got = fn(x).float()
    diff = ((got - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()
    return {"max_rel_diff_vs_fp32": diff, "output_ok": diff <= tol, "output_tol": tol}


def target(a) -> None:
    """Under ncu: build every item, run it twice, then once between cudaProfilerStart/Stop, bracketed by markers."""
    dev = kg.DEV
    flag = torch.zeros(1, device=dev)
    _ncu_marker_kernel[(1,)](flag)
    manifest = []
    nets = {n: kg.randomise_bn(effkit.build_model(n, width=kg.WIDTH, resolution=kg.RES).model).to(dev) for n in a.nets.split(",")}

    def run(name, fn, x, ref=None, tol=kg.TOL, **info):
        """Profile fn(x); given the unfused module `ref`, check fn's outputs first (`output_check`), recorded beside its
        counters and flagged in the log when over tol."""
        chk = output_check(fn, ref, x, tol) if ref is not None else {}
        profiled(fn, x, flag)
        manifest.append({"item": name, **info, **chk})
        note = "" if not chk else f"; outputs {chk['max_rel_diff_vs_fp32']:.1e} from fp32" + ("" if chk["output_ok"] else
                                                                                              f", OVER TOLERANCE {tol:g}: its counters describe a wrong kernel")
        print(f"[{time.perf_counter() - t0:5.0f} s] ran {name}{note}", flush=True)

    t0 = time.perf_counter()
    for name, net in nets.items():
        for key, (path, blk, hw) in ({} if a.skip_blocks else kg.distinct_shapes(net, kg.fusable_blocks(net))).items():
            if a.shapes and key not in a.shapes.split(","):
                continue
            c = blk.body[0][0].in_channels
            x = torch.randn(a.batch, c, hw, hw, device=dev, dtype=kg.DT).to(memory_format=torch.channels_last)
            flops, comp = kg.block_cost(hw, a.batch, blk)
            info = {"net": name, "shape": key, "block": path, "hw": hw, "batch": a.batch, "flops": flops, "compulsory_bytes": comp,
                    "unfused_layer_bytes": unfused_bytes(hw, a.batch, blk)}
            for cfg in a.configs_list:  # the defaults ({}), or each --configs entry over them
                label = f"{name} {key} fused" + (f" {json.dumps(cfg, separators=(',', ':'))}" if cfg else "")
                run(label, kg.fused_copy(blk, cfg or None), x, ref=blk, what="fused", config=cfg, **info)
            if a.fused_only:
                continue
            eager = copy.deepcopy(blk).to(kg.DT).to(memory_format=torch.channels_last)
            run(f"{name} {key} compile", kg.compiled(copy.deepcopy(eager)), x, what="compile", **info)
            if a.eager_blocks:
                run(f"{name} {key} eager", eager, x, what="eager", **info)
        if not a.networks:
            continue
        x = torch.randn(a.batch, 3, kg.RES, kg.RES, device=dev, dtype=kg.DT).to(memory_format=torch.channels_last)
        eager = copy.deepcopy(net).to(kg.DT).to(memory_format=torch.channels_last)
        fused = copy.deepcopy(net).float()
        fuse_blocks(fused, strided=kg.STRIDED)
        fused = fused.to(kg.DT).to(memory_format=torch.channels_last)
        tr = effkit.trace(name, batch=a.batch, dtype="bf16" if kg.DT == torch.bfloat16 else "fp32", device="meta", resolution=kg.RES, width=kg.WIDTH)
        info = {"net": name, "batch": a.batch, "trace_bytes_read": tr.totals.bytes_read, "trace_bytes_written": tr.totals.bytes_written}
        run(f"{name} network fused", fused, x, ref=net, tol=kg.NET_TOL, what="fused", **info)
        run(f"{name} network compile", kg.compiled(copy.deepcopy(eager)), x, what="compile", **info)
        run(f"{name} network eager", eager, x, what="eager", **info)
    Path(a.out, "manifest.json").write_text(json.dumps(manifest, indent=1))


def report(out: Path, raw: str) -> dict:
    """ncu.json from the raw page and the manifest, and a table on stdout."""
    manifest = json.loads((out / "manifest.json").read_text())
    rows, units = parse_raw(raw)
    items = split_items(rows, [m["item"] for m in manifest])
    res = {"meta": {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "units": {m: units.get(m) for m in KEEP},
                    "note": "cold L2 before each kernel (ncu --cache-control all); clocks not locked (--clock-control none); DRAM writes "
                            "still in L2 at a kernel's end are not counted (l2_write_bytes: what the SMs wrote)"},
           "items": []}
    for m in manifest:
        ks = [kernel_summary(r) for r in items[m["item"]]]
        row = {**m, "totals": item_totals(ks), "kernels": ks}
        res["items"].append(row)
        t = row["totals"]
        ref = m.get("compulsory_bytes") or (m.get("trace_bytes_read", 0) + m.get("trace_bytes_written", 0))
        print(f"{m['item']:<38} {t['kernels']:>3} kernels  {t.get('time_ns', 0) / 1e3:8.1f} us  DRAM read {t.get('dram_read_bytes', 0) / 1e6:8.2f} MB"
              f"  write {t.get('dram_write_bytes', 0) / 1e6:8.2f} MB  L2 {t.get('l2_bytes', 0) / 1e6:9.2f} MB  L2 to SMs {t.get('l2_to_sm_bytes', 0) / 1e6:9.2f} MB"
              f"  (compulsory/trace {ref / 1e6:8.2f} MB)", flush=True)
        if m["what"] == "fused" and len(ks) == 1:
            k = ks[0]
            print(f"{'':<40}regs {k.get('registers')}, occupancy {k.get('achieved_occupancy_pct', float('nan')):.1f} % of "
                  f"{k.get('theoretical_occupancy_pct', float('nan')):.1f} %, issue slots {k.get('issue_active_pct', float('nan')):.1f} % of cycles, "
                  f"tensor pipes {k['tensor_pipes_pct'].get('pipe_tensor_cycles_active', float('nan')):.1f} % of cycles, stalls (cycles between a "
                  f"warp's instructions, of {k.get('warp_cycles_per_issue', float('nan')):.1f}) {k['top_stalls']}", flush=True)
    (out / "ncu.json").write_text(json.dumps(res, indent=1))
    return res


def source_report(out: Path, sass: str) -> list[dict]:
    """ncu_source.json: `source_stalls` of each fused kernel, named by the manifest's fused items (in launch order: the
    kernel filter profiled nothing else), and a line a kernel on stdout."""
    manifest = [m for m in json.loads((out / "manifest.json").read_text()) if m["what"] == "fused"]
    res = source_stalls(sass)
    if len(res) != len(manifest):
        raise ValueError(f"{len(res)} kernels in ncu's source page, {len(manifest)} fused items in the manifest")
    for m, r in zip(manifest, res):
        r["item"] = m["item"]
        print(f"{m['item']:<34} {r['samples']:>6} samples; opcodes {r['opcode_pct']}; opcode and stall {r['opcode_stall_pct']}", flush=True)
    (out / "ncu_source.json").write_text(json.dumps(res, indent=1))
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--nets", default="convfirst_net,mbconv_net")
    ap.add_argument("--target", action="store_true", help="(internal) the program ncu runs")
    ap.add_argument("--smoke", action="store_true", help="the items on the CPU (TRITON_INTERPRET=1), fp32, small, without ncu")
    ap.add_argument("--stride-1-only", action="store_true")
    ap.add_argument("--networks", action="store_true", help="the whole networks too (fused, compiled, eager: hundreds of kernels)")
    ap.add_argument("--shapes", default="", help="comma-separated block shapes (e.g. c48,c192); default all")
    ap.add_argument("--fused-only", action="store_true", help="the fused blocks alone (no compiled or eager block items)")
    ap.add_argument("--source", action="store_true", help="the fused kernels' stall samples by instruction (SourceCounters), not the counters")
    ap.add_argument("--skip-blocks", action="store_true", help="no block items (with --networks: the networks alone)")
    ap.add_argument("--eager-blocks", action="store_true", help="each block eager too (the networks are always run eager)")
    ap.add_argument("--configs", default="[{}]", help="JSON list of tile configs over each shape's default, one fused item each "
                    "(e.g. '[{}, {\"swap_ab\": true, \"num_stages\": 2}]'); default the defaults alone")
    a = ap.parse_args()
    try:
        a.configs_list = json.loads(a.configs)
        if not (isinstance(a.configs_list, list) and a.configs_list and all(isinstance(c, dict) for c in a.configs_list)):
            raise ValueError("not a non-empty list of objects")
    except ValueError as e:
        print(f"error: --configs {a.configs!r} must be a JSON list of tile configs, e.g. '[{{}}]' ({e})", file=sys.stderr)
        sys.exit(2)
    kg.STRIDED = not a.stride_1_only
    if a.smoke:
        kg.DEV, kg.DT, kg.RES, kg.WIDTH = "cpu", torch.float32, 32, 0.5
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.target or a.smoke:
        target(a)
        return
    ncu = find_ncu()
    if ncu is None:
        sys.exit("error: ncu (Nsight Compute) was not found on PATH or under /opt/nvidia/nsight-compute")
    rep = out / "ncu_report"
    a.fused_only = a.fused_only or a.source
    me = [sys.executable, str(Path(__file__).resolve()), "--target", "--out", str(out), "--batch", str(a.batch), "--nets", a.nets]
    me += ["--stride-1-only"] * a.stride_1_only + ["--eager-blocks"] * a.eager_blocks + ["--networks"] * a.networks + ["--skip-blocks"] * a.skip_blocks + ["--fused-only"] * a.fused_only
    me += ["--shapes", a.shapes] if a.shapes else []
    me += ["--configs", a.configs]
    base = [ncu, "--clock-control", "none", "--profile-from-start", "off", "--target-processes", "application-only", "-f", "-o", str(rep)]
    if a.source:  # the fused kernels alone (no markers: nothing else is profiled), their instructions' stall samples
        base += ["--section", "SourceCounters", "--section", "WarpStateStats", "--kernel-name", f"regex:{FUSED_KERNELS}"]
        log = open(out / "ncu_log.txt", "w")
        r = subprocess.run(base + me, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if r.returncode:
            sys.exit(f"error: ncu exited {r.returncode}; see {out / 'ncu_log.txt'}")
        sass = subprocess.run([ncu, "--import", str(rep) + ".ncu-rep", "--page", "source", "--csv", "--print-source", "sass"], capture_output=True,
                              text=True, check=True).stdout
        (out / "ncu_sass.csv").write_text(sass)
        source_report(out, sass)
        return
    base += [x for s in SECTIONS for x in ("--section", s)]
    log = open(out / "ncu_log.txt", "w")
    r = subprocess.run(base + ["--metrics", ",".join(METRICS)] + me, stdout=log, stderr=subprocess.STDOUT)
    if r.returncode:  # a metric this ncu does not know: the sections alone
        print(f"ncu with --metrics exited {r.returncode}; again with the sections alone", flush=True)
        r = subprocess.run(base + me, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    if r.returncode:
        sys.exit(f"error: ncu exited {r.returncode}; see {out / 'ncu_log.txt'}")
    raw = subprocess.run([ncu, "--import", str(rep) + ".ncu-rep", "--csv", "--page", "raw", "--print-units", "base"], capture_output=True, text=True,
                         check=True).stdout
    (out / "ncu_raw.csv").write_text(raw)
    report(out, raw)


if __name__ == "__main__":
    main()
