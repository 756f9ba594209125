"""Compile convfirst_net's fused block kernels for the H200 (sm_90) on a machine without a GPU, and report what each
compile holds: registers and spills a thread, shared memory a program, and whether the dots became Hopper's wgmma or
Ampere-style mma.sync. A tile's resources are known before any device time is spent on it.

    python benchmarks/compile_sm90.py                                  # every block shape at its default tiles
    python benchmarks/compile_sm90.py --shapes c384,c192>384/s2 --config '{"swap_ab": true}' --out /tmp/sm90
    python benchmarks/compile_sm90.py --smoke                          # each kernel and ConvFirst way once (a CPU test)

Each block's launch is the real one (`FusedConvFirst.forward` → `triton_blocks.convfirst`, batch 64 at 224², the
benchmark's shape) with the kernel launch caught: its arguments give the signature and constexprs, and Triton compiles
them for `GPUTarget("cuda", 90, 32)` with pointers (and integer arguments that are multiples of 16) marked 16-aligned,
as a launch on the device specialises them. The SM count is taken as the H200's 132 (the automatic split_h), the SiLU
as on CUDA. The registers come from the cubin's resource usage (cuobjdump, shipped with Triton). Triton here is the
installed one (3.9 at the time of writing), the H200's 3.6: a compile here is evidence of what the code asks for, not
of what the device's Triton makes of it, and the device's `_record` (triton_blocks.last_launch) stays the word there.
Run 31 compared them: the shared memory of ten launches (c384 and c192>384/s2, defaults and swap_ab) was the H200's to
the byte; the registers were not (c384's default: 198 here, 186 there).
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


# every Triton kernel of triton_blocks (a jitted function, compiled or interpreted, whose name ends in _kernel; the
# @triton.jit helpers it calls do not): a kernel added there is caught here without a list to keep
KERNELS = tuple(sorted(name for name, v in vars(triton_blocks).items() if name.endswith("_kernel") and hasattr(v, "fn") and hasattr(v, "run")))


def catch_launch(call) -> tuple[str, tuple, dict, tuple]:
    """The kernel, positional arguments, keywords and grid of the first kernel launch `call()` makes, without running
    it: every block kernel of `triton_blocks` is replaced by a stand-in for the call, the SM count is the H200's, the
    SiLU's form that of a CUDA launch, and the fused modules take the kernel path on the CPU."""
    caught = {}

    class Fake:
        def __init__(self, name):
            self.name, self.fn = name, getattr(triton_blocks, name)

        def __getitem__(self, grid):
            def launch(*args, **kw):
                caught.update(name=self.name, args=args, kw=kw, grid=grid)
                raise _Caught
            return launch

    saved = {name: getattr(triton_blocks, name) for name in KERNELS}
    saved_fns = (triton_blocks._sm_count, triton_blocks._fast_silu, fold._use_triton)
    for name in KERNELS:
        setattr(triton_blocks, name, Fake(name))
    triton_blocks._sm_count = lambda x: SMS
    triton_blocks._fast_silu = lambda x, cfg, packed=False: (2 if packed and cfg.get("packed_silu") else 1) if cfg.get("fast_silu", True) else 0
    fold._use_triton = lambda x: True
    try:
        call()
    except _Caught:
        pass
    finally:
        for name, k in saved.items():
            setattr(triton_blocks, name, k)
        triton_blocks._sm_count, triton_blocks._fast_silu, fold._use_triton = saved_fns
    if not caught:
        raise RuntimeError("the call launched no block kernel")
    return caught["name"], caught["args"], caught["kw"], caught["grid"]


def block_launch(module: FusedConvFirst, shape: torch.Size, config: dict):
    """`catch_launch` of a fused block's forward on a bf16, channels-last input of `shape`, with the tiles `config`."""
    def call():
        module.config = config or None
        module.forward(torch.empty(shape, dtype=torch.bfloat16).to(memory_format=torch.channels_last))
    return catch_launch(call)


def compile_launch(name: str, args: tuple, kw: dict):
    """Triton's sm_90 compile of the kernel `name` for these launch arguments."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = getattr(triton_blocks, name)
    if not isinstance(fn, triton.runtime.jit.JITFunction):
        raise RuntimeError(f"{name} is not a compiled kernel here ({type(fn).__name__}): unset TRITON_INTERPRET")
    kw = dict(kw)
    options = {"num_warps": kw.pop("num_warps"), "num_stages": kw.pop("num_stages"), **({"maxnreg": kw.pop("maxnreg")} if "maxnreg" in kw else {})}
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
            signature[name], constexprs[name] = "constexpr", fn.params[i].default
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


def _convfirst_call(c: int, c_out: int, stride: int, config: dict):
    def call():
        r = lambda *shape: torch.randn(*shape).to(torch.bfloat16)  # noqa: E731
        hid = 4 * c_out
        ws, bs = (r(c_out, c), r(c_out)) if stride > 1 or c_out != c else (None, None)
        x = r(2, c, 8, 8).to(memory_format=torch.channels_last)
        triton_blocks.convfirst(x, r(c, 8, 3, 3), r(c), r(hid, c), r(hid), r(c_out, hid), r(c_out), group_width=8, config=config,
                                stride=stride, ws=ws, bs=bs)
    return call


def _mbconv_call(c: int, config: dict):
    def call():
        r = lambda *shape: torch.randn(*shape).to(torch.bfloat16)  # noqa: E731
        hid = 4 * c
        x = r(2, c, 14, 14).to(memory_format=torch.channels_last)
        triton_blocks.mbconv(x, r(hid, c), r(hid), r(hid, 1, 3, 3), r(hid), r(c, hid), r(c), config=config)
    return call


def _stem_call():
    from effkit.kernels.layout import im2col_weight

    w = torch.randn(32, 3, 3, 3).to(torch.bfloat16)
    return lambda: triton_blocks.conv_act(torch.randn(2, 3, 16, 16).to(torch.bfloat16), w, im2col_weight(w), torch.randn(32).to(torch.bfloat16),
                                          stride=2, padding=1)


# --smoke: one launch of each kernel and of each way through the ConvFirst kernel's constexpr branches, at the networks'
# widths (what a compile depends on), on tiny inputs. Triton's interpreter, which the kernel tests use, does not compile:
# a kernel can pass there and fail here (a helper whose constexpr branches return tensors of different shapes did, in
# the commit that made swap_ab), so a test runs this on the CPU.
SMOKE = (
    ("convfirst c48", lambda: _convfirst_call(48, 48, 1, {})),
    ("convfirst c96 join_parts", lambda: _convfirst_call(96, 96, 1, {"join_parts": True})),
    ("convfirst c48 dense_tma", lambda: _convfirst_call(48, 48, 1, {"group_conv": "dense_tma"})),
    ("convfirst c48>96/s2 split_h", lambda: _convfirst_call(48, 96, 2, {"split_h": 2})),
    ("convfirst c384 swap_ab", lambda: _convfirst_call(384, 384, 1, {"swap_ab": True, "block_h": 64, "num_stages": 2})),  # run 31's tile
    ("mbconv c48 staged", lambda: _mbconv_call(48, {})),
    ("mbconv c48 dw_gather", lambda: _mbconv_call(48, {"dw_gather": True})),
    ("mbconv c48 recompute", lambda: _mbconv_call(48, {"halo": "recompute"})),
    ("mbconv c192 shift", lambda: _mbconv_call(192, {"halo": "shift"})),  # three input chunks, two output programs
    ("stem 3>32/s2", _stem_call),
)
SHARED_LIMIT = 232_448  # bytes of shared memory a program may take on the H200 (Triton's out-of-resource limit, run 31)


def smoke(out: Path | None) -> int:
    """Compile every SMOKE launch; 1 if any fails to compile or asks for more shared memory than the H200 has."""
    bad = 0
    print(f"{'launch':<30} {'regs':>4} {'stack B':>7} {'shared B':>9} {'wgmma':>5} {'mma.sync':>8}")
    for label, make in SMOKE:
        try:
            name, args, kw, _ = catch_launch(make())
            r = resources(compile_launch(name, args, kw), out, label)
        except Exception as e:  # noqa: BLE001 - every launch is tried, each failure named
            cause = e  # a CompilationError's message is the source line; its innermost cause says what is wrong
            while cause.__cause__ is not None:
                cause = cause.__cause__
            print(f"{label:<30} FAILED {type(e).__name__}: {type(cause).__name__}: {str(cause).strip().splitlines()[-1][:300]}")
            bad = 1
            continue
        over = r["shared_bytes"] > SHARED_LIMIT
        bad |= over
        print(f"{label:<30} {r['regs']:>4} {r['stack_bytes']:>7} {r['shared_bytes']:>9,} {r['wgmma']:>5} {r['mma_sync']:>8}"
              f"{'  OVER THE SHARED-MEMORY LIMIT' if over else ''}")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="", help="comma-separated block shapes (c96, c192>384/s2, ...); default all")
    ap.add_argument("--config", default="{}", help="JSON tile keys over each shape's default (e.g. '{\"swap_ab\": true}')")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--res", type=int, default=224)
    ap.add_argument("--out", type=Path, default=None, help="folder for each compile's .ptx and .ttgir")
    ap.add_argument("--smoke", action="store_true", help="compile one launch of each kernel and ConvFirst way (tiny inputs); exit 1 on a failure")
    a = ap.parse_args()
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
    if a.smoke:
        return smoke(a.out)
    try:
        extra = json.loads(a.config)
    except json.JSONDecodeError as e:
        print(f"compile_sm90: --config {a.config!r} is not JSON ({e})", file=sys.stderr)
        return 2
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
        try:
            name, args, kw, grid = block_launch(module, shape, extra)
        except ValueError as e:  # the launcher refused the config (an unknown key, a bad value): its one line
            print(f"compile_sm90: {e}", file=sys.stderr)
            return 2
        r = resources(compile_launch(name, args, kw), a.out, key)
        print(f"{key:<14} {r['regs']:>4} {r['stack_bytes']:>7} {r['shared_bytes']:>9,} {r['wgmma']:>5} {r['mma_sync']:>8}  {json.dumps(extra)}"
              f"  grid {tuple(grid)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
