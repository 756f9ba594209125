"""Which weight dtypes do effkit's block-fused kernels run in on CUDA? (Evidence for RunConfig's refusal of --fused with
32-bit weights.)

For each model and dtype, the model is fused (`fused_build`: folded in fp32, then cast), and every fused module is run
once, eagerly, on the input it gets in the model (captured by a forward pre-hook on an unfused PyTorch reference pass).
Each fused module's fate is printed: ok with its max error against the folded math in PyTorch (`reference_*`, the
module's own CPU path) relative to the output's scale, or the first line of its error. No torch.compile: what fails
here fails in the kernels themselves.

    python3 benchmarks/fused_dtype_check.py --out $OUT [--models convfirst_net,mbconv_net] [--batch 64]   (on the GPU)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from effkit.kernels import FusedConvAct, FusedConvFirst, FusedMBConv, fold, fused_build  # noqa: E402
from effkit.models.ref import resolve  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
FUSED = (FusedConvFirst, FusedMBConv, FusedConvAct)


@contextlib.contextmanager
def folded_math():
    """The fused modules run the folded math in PyTorch (their CPU path) inside the block, on any device."""
    use = fold._use_triton
    fold._use_triton = lambda t: False
    try:
        yield
    finally:
        fold._use_triton = use


def block_inputs(net: torch.nn.Module, x: torch.Tensor, paths) -> dict[str, torch.Tensor]:
    """The input each module at `paths` gets in a pass of `net` on x with the folded math in PyTorch (forward pre-hooks)."""
    seen: dict[str, torch.Tensor] = {}
    mods = dict(net.named_modules())
    hooks = [mods[p].register_forward_pre_hook(lambda m, a, p=p: seen.setdefault(p, a[0].detach().clone())) for p in paths]
    try:
        with torch.no_grad(), folded_math():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def check(model: str, dtype: str, batch: int) -> list[dict]:
    ref = resolve(model)
    net, _ = fused_build(ref, "cuda", DTYPES[dtype])
    net = net.to(memory_format=torch.channels_last)
    x = ref.inputs(batch, DTYPES[dtype], "cuda", channels_last=True)[0]
    seen = block_inputs(net, x, [path for path, m in net.named_modules() if isinstance(m, FUSED)])
    rows = []
    for path, m in net.named_modules():
        if not isinstance(m, FUSED):
            continue
        xi = seen[path]
        row = {"model": model, "dtype": dtype, "path": path, "kind": type(m).__name__, "input_shape": list(xi.shape)}
        try:
            with torch.no_grad():
                got = m(xi)
                torch.cuda.synchronize()
                with folded_math():
                    want = m(xi)
            row["error"] = ((got.float() - want.float()).abs().max() / want.float().abs().max().clamp_min(1e-30)).item()
            row["status"] = "ok"
        except Exception as e:  # noqa: BLE001 - every module's fate is the point
            row["status"] = "failed"
            row["why"] = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"
        rows.append(row)
        print(f"{model} {dtype} {path} ({row['kind']}, input {tuple(xi.shape)}): "
              + (f"ok, error {row['error']:.1e} of the output's scale" if row["status"] == "ok" else row["why"]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default="convfirst_net,mbconv_net")
    ap.add_argument("--dtypes", default="fp32,bf16,fp16")
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    bad = [d for d in a.dtypes.split(",") if d not in DTYPES]
    if bad:
        ap.error(f"dtypes {', '.join(bad)}: choose from {', '.join(DTYPES)}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"meta": {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "torch": torch.__version__,
                    "device": torch.cuda.get_device_name()}, "rows": []}
    for model in a.models.split(","):
        for dtype in a.dtypes.split(","):
            res["rows"] += check(model, dtype, a.batch)
            tmp = out / "fused_dtype_check.tmp"
            tmp.write_text(json.dumps(res, indent=1))
            tmp.replace(out / "fused_dtype_check.json")
    for model in a.models.split(","):
        for dtype in a.dtypes.split(","):
            rows = [r for r in res["rows"] if r["model"] == model and r["dtype"] == dtype]
            ok = [r for r in rows if r["status"] == "ok"]
            print(f"{model} {dtype}: {len(ok)} of {len(rows)} fused modules ran" + (f", max error {max(r['error'] for r in ok):.1e}" if ok else ""))


if __name__ == "__main__":
    main()
