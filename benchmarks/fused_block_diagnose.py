"""Where one fused block disagrees with its folded math on the GPU, and what changes it: the error's location (images,
pixels, channels), the kernel against an fp32 reference (so that a wrong reference shows as such), on the block's real
input (captured from a pass of the network) and on random inputs of the same spread, at several batches, and under
other kernel configs. Written for fused_dtype_check's finding on the H100 (convfirst_net stages.3.1, c384 at 7x7: 0.26
of the output's scale in bf16 and fp16, where every other block is within 7e-3).

    python3 benchmarks/fused_block_diagnose.py --out $OUT [--model convfirst_net] [--path stages.3.1] [--dtype bf16]   (on the GPU)
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from effkit.kernels import fused_build, triton_blocks  # noqa: E402
from fused_dtype_check import DTYPES, block_inputs, folded_math  # noqa: E402
from effkit.models.ref import resolve  # noqa: E402

CONFIGS = ({}, {"num_stages": 1}, {"block_h": 64}, {"block_h": 64, "num_stages": 3}, {"group_conv": "dense"},
           {"group_conv": "dense_loop", "tap_stages": 3, "block_h": 64}, {"fast_silu": False}, {"split_h": 2})


def where(got: torch.Tensor, want: torch.Tensor) -> dict:
    """The error relative to the output's scale, and where it lies: how many elements are off by more than 2e-2 of the
    scale, in how many images, pixels (of a map) and channels, and the worst element's place."""
    err = (got.float() - want.float()).abs()
    scale = want.float().abs().max().clamp_min(1e-30)
    rel = err / scale
    bad = rel > 2e-2
    n, c, h, w = rel.shape
    i = int(rel.argmax())
    return {"error": rel.max().item(), "bad_elements": int(bad.sum()), "of": rel.numel(),
            "bad_images": int(bad.any(dim=(1, 2, 3)).sum()), "bad_channels": int(bad.any(dim=(0, 2, 3)).sum()),
            "bad_pixels": int(bad.any(dim=(0, 1)).sum()), "worst_at_nchw": [i // (c * h * w), i // (h * w) % c, i // w % h, i % w],
            "bad_channel_list": [int(k) for k in bad.any(dim=(0, 2, 3)).nonzero().flatten()[:32]],
            "bad_pixel_list": [[int(a), int(b)] for a, b in bad.any(dim=(0, 1)).nonzero()[:16]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="convfirst_net")
    ap.add_argument("--path", default="stages.3.1")
    ap.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    ap.add_argument("--batches", default="64,8,1")
    ap.add_argument("--device", default="cuda", help="cpu: the kernels in Triton's interpreter (TRITON_INTERPRET=1, fp32; a check of this script)")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    dt = DTYPES[a.dtype]
    res = {"meta": {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "torch": torch.__version__,
                    "device": torch.cuda.get_device_name() if a.device == "cuda" else a.device}, "rows": []}

    def save(row):
        res["rows"].append(row)
        print(json.dumps(row), flush=True)
        tmp = out / "fused_block_diagnose.tmp"
        tmp.write_text(json.dumps(res, indent=1))
        tmp.replace(out / "fused_block_diagnose.json")

    ref = resolve(a.model)
    torch.manual_seed(0)
    net, _ = fused_build(ref, a.device, dt)
    net = net.to(memory_format=torch.channels_last)
    m = dict(net.named_modules())[a.path]
    m32 = copy.deepcopy(m).float()
    for batch in (int(b) for b in a.batches.split(",")):
        xi = block_inputs(net, ref.inputs(batch, dt, a.device, channels_last=True)[0], [a.path])[a.path]
        inputs = {"captured": xi, "random": (torch.randn(xi.shape, device=a.device) * xi.float().std()).to(dt).contiguous(
            memory_format=torch.channels_last), "captured_contiguous_copy": xi.contiguous(memory_format=torch.channels_last).clone()}
        for name, xin in inputs.items():
            with torch.no_grad():
                with folded_math():
                    want = m(xin)
                    want32 = m32(xin.float())
                for cfg in (CONFIGS if name == "captured" else CONFIGS[:1]):
                    m.config = cfg or None
                    row = {"batch": batch, "input": name, "config": cfg, "input_shape": list(xin.shape),
                           "input_strides": list(xin.stride()), "input_absmax": xin.float().abs().max().item(),
                           "input_std": xin.float().std().item()}
                    try:
                        got = m(xin)
                        again = m(xin)
                        row["vs_folded_same_dtype"] = where(got, want)
                        row["vs_folded_fp32"] = where(got, want32)["error"]
                        row["folded_same_dtype_vs_fp32"] = where(want, want32)["error"]
                        row["repeat_differs"] = (got.float() - again.float()).abs().max().item()
                        row["launch"] = {k: v for k, v in triton_blocks.last_launch.get("_convfirst_kernel", {}).items() if k != "config"}
                    except Exception as e:  # noqa: BLE001 - a config that does not compile is a row too
                        row["failed"] = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"
                    m.config = None
                    save(row)


if __name__ == "__main__":
    main()
