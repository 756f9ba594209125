"""Check the scalable families against their references (run where torchvision and timm import):

* torchvision's names (regnet_x_*, regnet_y_*, efficientnet_b0..b7): the torchvision_check
  checks (leaves, state_dict, same outputs with torchvision's weights, num_params, _ops);
* pycls's names (regnetx_200mf .. regnety_32gf, as timm's regnetx_002 .. regnety_320): exact
  parameter count, the same multiset of parameter shapes, and MACs against fvcore run on the
  timm model (an independent counter).

    python3 benchmarks/zoo_scaling_check.py --out $OUT/zoo_scaling_check.json
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import timm
import torch
from fvcore.nn import FlopCountAnalysis

import effkit
from effkit.models import build_model, list_models
from effkit.models.regnet import PARAMS, TIMM

sys.path.insert(0, str(Path(__file__).parent))
from torchvision_check import check  # noqa: E402

logging.getLogger("fvcore").setLevel(logging.ERROR)


def timm_row(kind: str, size: str) -> dict:
    ours = build_model(f"regnet{kind}_{size}").model.eval()
    ref = timm.create_model(f"regnet{kind}_{TIMM[size]}", pretrained=False).eval()
    shapes = lambda m: sorted(tuple(p.shape) for p in m.parameters())  # noqa: E731
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        fv = FlopCountAnalysis(ref, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        fv_macs = fv.by_operator()
    conv_linear = sum(v for k, v in fv_macs.items() if k in ("conv", "linear", "addmm", "matmul"))
    r = effkit.trace(f"regnet{kind}_{size}", device="meta")
    return {"model": f"regnet{kind}_{size}", "timm": f"regnet{kind}_{TIMM[size]}", "params": sum(p.numel() for p in ours.parameters()),
            "timm_params": sum(p.numel() for p in ref.parameters()), "param_shapes_equal": shapes(ours) == shapes(ref),
            "effkit_macs": r.totals.macs, "fvcore_conv_linear_macs_on_timm": conv_linear, "fvcore_by_operator": dict(fv_macs),
            "macs_rel_diff": (r.totals.macs - conv_linear) / conv_linear, "effkit_acts": r.totals.acts}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/zoo_scaling_check.json")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    tv_names = list_models("regnet_*") + [f"efficientnet_b{i}" for i in range(8)]
    tv_rows, timm_rows = [], []
    for name in tv_names:
        t = time.perf_counter()
        tv_rows.append(check(name, cuda=False))
        print(name, json.dumps({k: tv_rows[-1][k] for k in ("params_equal", "leaves_equal", "state_dict_equal", "output_rel_diff", "gmacs_rel_err")}),
              f"{time.perf_counter() - t:.1f}s", flush=True)
    for kind in ("x", "y"):
        for size in PARAMS[kind]:
            timm_rows.append(timm_row(kind, size))
            r = timm_rows[-1]
            print(r["model"], r["params"], r["timm_params"], r["param_shapes_equal"], f"{100 * r['macs_rel_diff']:+.3f}%", flush=True)
    out = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "timm": timm.__version__, "torchvision_rows": tv_rows, "timm_rows": timm_rows}
    Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    ok_tv = all(r["params_equal"] and r["leaves_equal"] and r["state_dict_equal"] and r["gmacs_rel_err"] < 0.005 and r["output_rel_diff"] < 1e-4 for r in tv_rows)
    ok_timm = all(r["params"] == r["timm_params"] and r["param_shapes_equal"] and abs(r["macs_rel_diff"]) < 0.005 for r in timm_rows)
    print("torchvision names:", "ALL EQUAL" if ok_tv else "DIFFERENCES", "| pycls names vs timm:", "ALL EQUAL" if ok_timm else "DIFFERENCES")


if __name__ == "__main__":
    main()
