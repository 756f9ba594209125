"""Check the zoo against torchvision itself (run where torchvision imports: the GPU machine).

For each core zoo model:
  * leaf modules equal: (path, type, extra_repr) of every leaf, torchvision's against ours
    (nn.MultiheadAttention's out_proj type, NonDynamicallyQuantizableLinear, reads as Linear);
  * state_dict keys and shapes equal, torchvision's weights load into ours (strict) and the
    two models give the same output on the same random input (fp32, CPU, eval);
  * parameter count and MACs against torchvision's published meta (num_params, _ops);
  * effkit's trace on CUDA gives the CPU trace's MACs and FLOPs (other kernels, same counts);
  * for the record: effkit tracing the torchvision instance itself (its totals and any
    uncovered ops; torchvision's ViT uses nn.MultiheadAttention, a different op path).

    python benchmarks/torchvision_check.py --out benchmarks/results/h100/torchvision_check.json
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torchvision

import effkit
from effkit.models import build_model

MODELS = ["resnet18", "resnet50", "convnext_tiny", "convnext_small", "convnext_base", "efficientnet_b0", "mobilenet_v2", "vit_b_16"]


def leaves(m):
    out = []
    for name, mod in m.named_modules():
        if not any(True for _ in mod.children()):
            t = type(mod).__name__.replace("NonDynamicallyQuantizableLinear", "Linear")
            out.append((name, t, mod.extra_repr()))
    return out


def check(name: str, cuda: bool) -> dict:
    tv = torchvision.models.get_model(name, weights=None).eval()
    ours = build_model(name).model.eval()
    meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    row = {"model": name, "tv_num_params": meta["num_params"], "tv_gmacs": meta["_ops"]}
    lt, lo = leaves(tv), leaves(ours)
    row["leaves"] = len(lo)
    row["leaves_equal"] = lt == lo
    if lt != lo:
        row["first_leaf_difference"] = next(([a, b] for a, b in zip(lt, lo) if a != b), [len(lt), len(lo)])
    with torch.no_grad():  # random weights everywhere (torchvision zero-inits some heads)
        for p in tv.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    sd_t, sd_o = tv.state_dict(), ours.state_dict()
    row["state_dict_equal"] = [(k, tuple(v.shape)) for k, v in sd_t.items()] == [(k, tuple(v.shape)) for k, v in sd_o.items()]
    ours.load_state_dict(sd_t, strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        a, b = tv(x), ours(x)
    row["output_max_abs_diff"] = (a - b).abs().max().item()
    row["output_rel_diff"] = ((a - b).norm() / a.norm()).item()
    row["params"] = sum(p.numel() for p in ours.parameters())
    row["params_equal"] = row["params"] == meta["num_params"] == sum(p.numel() for p in tv.parameters())
    from effkit.models import get_entry

    res = get_entry(name).published.get("gmacs_resolution")  # torchvision counts _ops at its eval crop
    r = effkit.trace(name, device="meta", resolution=res)
    row["effkit_gmacs"] = r.totals.macs / 1e9
    row["gmacs_rel_err"] = abs(row["effkit_gmacs"] - meta["_ops"]) / meta["_ops"]
    row["effkit_acts"] = r.totals.acts
    if cuda:
        rc, rcpu = effkit.trace(name, device="cuda", batch=2), effkit.trace(name, device="cpu", batch=2)
        row["cuda_macs_equal_cpu"] = rc.totals.macs == rcpu.totals.macs
        row["cuda_flops_equal_cpu"] = rc.totals.flops == rcpu.totals.flops
        row["cuda_bytes_rel_diff"] = (rc.totals.bytes - rcpu.totals.bytes) / rcpu.totals.bytes
        row["cuda_uncovered"] = [u.op for u in rc.uncovered]
        row["cuda_ops"] = sorted({o.op for o in rc.ops} - {o.op for o in rcpu.ops})
    rt = effkit.trace(tv, (3, 224, 224))
    row["effkit_on_torchvision_instance_gmacs"] = rt.totals.macs / 1e9
    row["effkit_on_torchvision_instance_uncovered"] = [f"{u.op} x{u.count}" for u in rt.uncovered]
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/torchvision_check.json")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    rows = []
    for name in MODELS:
        t = time.perf_counter()
        rows.append(check(name, cuda))
        rows[-1]["seconds"] = round(time.perf_counter() - t, 1)
        print(json.dumps(rows[-1]), flush=True)
    info = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "device": torch.cuda.get_device_name() if cuda else "cpu", "rows": rows}
    with open(args.out, "w") as f:
        json.dump(info, f, indent=2)
    print(f"\n{'model':16s} {'params':>11s} {'tv params':>11s} {'GMACs':>8s} {'tv _ops':>8s} {'err %':>6s} leaves state out-diff  cuda=cpu")
    for r in rows:
        print(f"{r['model']:16s} {r['params']:>11,d} {r['tv_num_params']:>11,d} {r['effkit_gmacs']:8.4f} {r['tv_gmacs']:8.3f} "
              f"{100 * r['gmacs_rel_err']:6.3f} {str(r['leaves_equal']):6s} {str(r['state_dict_equal']):5s} {r['output_rel_diff']:.1e} "
              f"{r.get('cuda_macs_equal_cpu', '-')}/{r.get('cuda_flops_equal_cpu', '-')}")
    ok = all(r["leaves_equal"] and r["state_dict_equal"] and r["params_equal"] and r["gmacs_rel_err"] < 0.005 and r["output_rel_diff"] < 1e-5 for r in rows)
    print("ALL EQUAL" if ok else "DIFFERENCES: see the rows above")


if __name__ == "__main__":
    main()
