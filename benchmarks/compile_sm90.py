"""Compile convfirst_net's fused block kernels for the H200 (sm_90) on a machine without a GPU, and report what each
compile holds: registers and spills a thread, shared memory a program, and whether the dots became Hopper's wgmma or
Ampere-style mma.sync. A tile's resources are known before any device time is spent on it.

    python benchmarks/compile_sm90.py                                  # every block shape at its default tiles
    python benchmarks/compile_sm90.py --shapes c384,c192>384/s2 --config '{"swap_ab": true}' --out /tmp/sm90

Each block's launch is the real one (`FusedConvFirst.forward` → `triton_blocks.convfirst`, batch 64 at 224², the
benchmark's shape) with the kernel launch caught: its arguments give the signature and constexprs, and Triton compiles
them for `GPUTarget("cuda", 90, 32)` with pointers (and integer arguments that are multiples of 16) marked 16-aligned,
as a launch on the device specialises them. The SM count is taken as the H200's 132 (the automatic split_h), the SiLU
as on CUDA. The registers come from the cubin's resource usage (cuobjdump, shipped with Triton). Triton here is the
installed one (3.9 at the time of writing), the H200's 3.6: a compile here is evidence of what the code asks for, not
of what the device's Triton makes of it, and the device's `_record` (triton_blocks.last_launch) stays the word there.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import effkit  # noqa: E402
from effkit.kernels import FusedConvFirst, fuse_blocks  # noqa: E402
from effkit.kernels import fold, triton_blocks  # noqa: E402

SMS = 132  # the H200's streaming multiprocessors
TYPES = {torch.bfloat16: "*bf16", torch.float16: "*fp16", torch.float32: "*fp32", torch.int32: "*i32", torch.int8: "*i8"}


def block_inputs(batch: int, res: int) -> list[tuple[str, FusedConvFirst, torch.Size]]:
    """convfirst_net's fused ConvFirst blocks with each one's input shape at `batch` (found by a forward at batch 1)."""
    from benchmarks.kernels_gpu import fused_key

    model = effkit.build_model("convfirst_net", resolution=res).model.eval()
    seen: dict[str, torch.Size] = {}
    fuse_blocks(model, strided=True)
    blocks = [m for m in model.modules() if isinstance(m, FusedConvFirst)]

    def note(m, a):  # a pre-hook's return value would replace the input: none here
        seen.setdefault(id(m), a[0].shape)

    hooks = [m.register_forward_pre_hook(note) for m in blocks]
    fold_use = fold._use_triton
    fold._use_triton = lambda x: False  # the PyTorch path of the same math, to find the shapes
    with torch.no_grad():
        model(torch.randn(1, 3, res, res))
    fold._use_triton = fold_use
    for h in hooks:
        h.remove()
    model.to(torch.bfloat16)  # folded in fp32, run in bf16 (the benchmark's dtype)
    out, keys = [], set()
    for m in blocks:
        key = fused_key(m)
        if key not in keys:
            keys.add(key)
            out.append((key, m, torch.Size((batch, *seen[id(m)][1:]))))
    return out


class _Caught(Exception):
    pass


def catch_launch(module: FusedConvFirst, shape: torch.Size, config: dict) -> tuple[tuple, dict]:
    """The positional arguments and keywords of the block's kernel launch, without running it."""
    caught = {}

    class Fake:
        fn = triton_blocks._convfirst_kernel

        def __getitem__(self, grid):
            def launch(*args, **kw):
                caught.update(args=args, kw=kw, grid=grid)
                raise _Caught
            return launch

    saved = (triton_blocks._convfirst_kernel, triton_blocks._sm_count, triton_blocks._fast_silu, fold._use_triton)
    triton_blocks._convfirst_kernel = Fake()
    triton_blocks._sm_count = lambda x: SMS
    triton_blocks._fast_silu = lambda x, cfg, packed=False: (2 if packed and cfg.get("packed_silu") else 1) if cfg.get("fast_silu", True) else 0
    fold._use_triton = lambda x: True
    try:
        module.config = config or None
        module.forward(torch.empty(shape, dtype=torch.bfloat16).to(memory_format=torch.channels_last))
    except _Caught:
        pass
    finally:
        triton_blocks._convfirst_kernel, triton_blocks._sm_count, triton_blocks._fast_silu, fold._use_triton = saved
    return caught["args"], caught["kw"], caught["grid"]


def compile_launch(args: tuple, kw: dict):
    """Triton's sm_90 compile of _convfirst_kernel for these launch arguments."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = triton_blocks._convfirst_kernel
    kw = dict(kw)
    options = {"num_warps": kw.pop("num_warps"), "num_stages": kw.pop("num_stages")}
    names = fn.arg_names
    signature, constexprs, attrs = {}, {}, {}
    for i, name in enumerate(names):
        if i < len(args):
            a = args[i]
            if isinstance(a, torch.Tensor):
                signature[name] = TYPES[a.dtype]
                attrs[(i,)] = [["tt.divisibility", 16]]
            elif a == 1:  # Triton specialises an integer argument equal to 1 into a constant
                signature[name], constexprs[name] = "constexpr", 1
            else:
                signature[name] = "i32"
                if a % 16 == 0:
                    attrs[(i,)] = [["tt.divisibility", 16]]
        elif name in kw:
            signature[name], constexprs[name] = "constexpr", kw[name]
        else:  # a constexpr left at its default
            default = fn.params[i].default
            signature[name], constexprs[name] = "constexpr", default
    src = ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)


def resources(compiled, out: Path | None, key: str) -> dict:
    """Registers and spills (cuobjdump --dump-resource-usage), shared memory, and the tensor-core instructions."""
    import triton

    ptx, cubin = compiled.asm["ptx"], compiled.asm["cubin"]
    tag = re.sub(r"[^A-Za-z0-9]+", "_", key)
    path = (out or Path("/tmp")) / f"{tag}.cubin"
    path.write_bytes(cubin)
    if out:
        (out / f"{tag}.ptx").write_text(ptx)
        (out / f"{tag}.ttgir").write_text(compiled.asm["ttgir"])
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    usage = subprocess.run([str(tool), "--dump-resource-usage", str(path)], capture_output=True, text=True).stdout
    regs = re.search(r"REG:(\d+)", usage)
    stack = re.search(r"STACK:(\d+)", usage)
    return {"regs": int(regs.group(1)) if regs else None, "stack_bytes": int(stack.group(1)) if stack else None,
            "shared_bytes": compiled.metadata.shared, "wgmma": ptx.count("wgmma.mma_async"), "mma_sync": ptx.count("mma.sync")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="", help="comma-separated block shapes (c96, c192>384/s2, ...); default all")
    ap.add_argument("--config", default="{}", help="JSON tile keys over each shape's default (e.g. '{\"swap_ab\": true}')")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--res", type=int, default=224)
    ap.add_argument("--out", type=Path, default=None, help="folder for each compile's .ptx and .ttgir")
    a = ap.parse_args()
    extra = json.loads(a.config)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
    wanted = [s for s in a.shapes.split(",") if s]
    blocks = block_inputs(a.batch, a.res)
    unknown = sorted(set(wanted) - {k for k, _, _ in blocks})
    if unknown:
        print(f"compile_sm90: unknown shape(s) {', '.join(unknown)}; the shapes are {', '.join(k for k, _, _ in blocks)}", file=sys.stderr)
        return 2
    print(f"{'shape':<14} {'regs':>4} {'stack B':>7} {'shared B':>9} {'wgmma':>5} {'mma.sync':>8}  config (over the default)")
    for key, module, shape in blocks:
        if wanted and key not in wanted:
            continue
        args, kw, grid = catch_launch(module, shape, extra)
        r = resources(compile_launch(args, kw), a.out, key)
        print(f"{key:<14} {r['regs']:>4} {r['stack_bytes']:>7} {r['shared_bytes']:>9,} {r['wgmma']:>5} {r['mma_sync']:>8}  {json.dumps(extra)}"
              f"  grid {tuple(grid)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
