"""`effkit trace torchvision:NAME` / `timm:NAME` against effkit's own zoo model (run where torchvision and
timm import: the GPU machine). Counts compared: params, MACs, FLOPs, acts, bytes; plus any uncovered op.
Also `hf:` on a BERT-base config written locally (effkit never downloads).

    python3 benchmarks/external_check.py --out $OUT/external_check.json
"""
from __future__ import annotations

import argparse
import json
import time

import effkit
from effkit.models.regnet import PARAMS, TIMM

TORCHVISION = ["resnet18", "resnet50", "resnext50_32x4d", "convnext_tiny", "convnext_small", "convnext_base", "efficientnet_b0",
               "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4", "efficientnet_b5", "efficientnet_b6",
               "efficientnet_b7", "efficientnet_v2_s", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "vit_b_16", "swin_t",
               "regnet_x_400mf", "regnet_x_800mf", "regnet_x_1_6gf", "regnet_x_3_2gf", "regnet_x_8gf", "regnet_x_16gf", "regnet_x_32gf",
               "regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf", "regnet_y_3_2gf", "regnet_y_8gf", "regnet_y_16gf", "regnet_y_32gf"]
TIMM_PAIRS = [("vit_ti_16", "deit_tiny_patch16_224"), ("vit_s_16", "deit_small_patch16_224"), ("vit_b_16", "vit_base_patch16_224"),
              ("inception_next_tiny", "inception_next_tiny"), ("resnet50", "resnet50"), ("efficientnet_b0", "efficientnet_b0"),
              ("mobilenet_v2", "mobilenetv2_100"), ("convnext_tiny", "convnext_tiny"), ("swin_t", "swin_tiny_patch4_window7_224")] + \
             [(f"regnet{k}_{s}", f"regnet{k}_{TIMM[s]}") for k in ("x", "y") for s in PARAMS[k]]
KEYS = ("params", "macs", "flops", "acts", "bytes")


def counts(spec: str) -> dict:
    r = effkit.trace(spec, device="meta")
    t = r.totals
    return {"params": r.params, "macs": t.macs, "flops": t.flops, "acts": t.acts, "bytes": t.bytes_read + t.bytes_written,
            "uncovered": [f"{u.op} x{u.count}" for u in r.uncovered], "input": list(r.input_shapes[0])}


def compare(ours: str, theirs: str) -> dict:
    a, b = counts(ours), counts(theirs)
    row = {"ours": ours, "theirs": theirs, "input": a["input"], "their_input": b["input"], "uncovered_theirs": b["uncovered"]}
    for k in KEYS:
        row[k], row[f"{k}_theirs"] = a[k], b[k]
        row[f"{k}_equal"] = a[k] == b[k]
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/external_check.json")
    args = ap.parse_args()
    rows = []
    for name in TORCHVISION:
        rows.append(compare(name, f"torchvision:{name}"))
    for ours, t in TIMM_PAIRS:
        rows.append(compare(ours, f"timm:{t}"))
    print(f"{'ours':22s} {'theirs':38s} " + " ".join(f"{k:>6s}" for k in KEYS) + "  uncovered(theirs)")
    for r in rows:
        print(f"{r['ours']:22s} {r['theirs']:38s} " + " ".join(f"{'=' if r[f'{k}_equal'] else 'DIFF':>6s}" for k in KEYS) + f"  {r['uncovered_theirs']}")
    hf = {}
    try:
        import transformers

        transformers.BertConfig().save_pretrained("/tmp/bert-base-config")  # BERT-base's defaults, saved locally
        r = effkit.trace("hf:/tmp/bert-base-config", seq_len=128, device="meta")
        hf = {"spec": "hf:/tmp/bert-base-config", "params": r.params, "macs": r.totals.macs, "input": list(r.input_shapes[0]),
              "uncovered": [f"{u.op} x{u.count}" for u in r.uncovered]}
        print("hf BERT-base, seq 128:", hf)
    except Exception as e:  # noqa: BLE001 - record what happened
        hf = {"error": f"{type(e).__name__}: {e}"}
        print("hf:", hf)
    json.dump({"date": time.strftime("%Y-%m-%d"), "rows": rows, "hf": hf}, open(args.out, "w"), indent=2)
    diffs = [(r["ours"], r["theirs"], [k for k in KEYS if not r[f"{k}_equal"]]) for r in rows if not all(r[f"{k}_equal"] for k in KEYS)]
    print("ALL IDENTICAL" if not diffs else f"{len(diffs)} pair(s) differ: {diffs}")


if __name__ == "__main__":
    main()
