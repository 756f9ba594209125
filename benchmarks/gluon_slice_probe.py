"""Does Gluon's shared-memory slice take an offset that is not a multiple of its length? (a tap of a depthwise conv
read as a shifted slice of the expanded chunk needs offsets of one pixel)."""
import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl

_barrier = getattr(gl, "thread_barrier", None) or gl.barrier


@gluon.jit
def probe(x_ptr, out_ptr, OFF: gl.constexpr, L: gl.constexpr):
    layout: gl.constexpr = gl.BlockedLayout([1, 8], [8, 4], [4, 1], [1, 0])
    rows = gl.arange(0, 64, layout=gl.SliceLayout(1, layout))
    cols = gl.arange(0, 32, layout=gl.SliceLayout(0, layout))
    buf = gl.allocate_shared_memory(gl.bfloat16, [64, 32], gl.SwizzledSharedLayout(1, 1, 1, [1, 0]))
    buf.store(gl.load(x_ptr + rows[:, None] * 32 + cols[None, :]))
    _barrier()
    r = gl.arange(0, L, layout=gl.SliceLayout(1, layout))
    gl.store(out_ptr + r[:, None] * 32 + cols[None, :], buf.slice(OFF, L).load(layout))


x = torch.arange(64 * 32, device="cuda", dtype=torch.float32).to(torch.bfloat16).reshape(64, 32)
print("triton", triton.__version__)
for off, length in ((32, 32), (16, 16), (1, 32), (9, 16), (8, 16)):
    out = torch.zeros(length, 32, device="cuda", dtype=torch.bfloat16)
    try:
        probe[(1,)](x, out, OFF=off, L=length, num_warps=4)
        torch.cuda.synchronize()
        print(f"slice({off}, {length}): compiled; equals rows {off}..{off + length - 1}: {torch.equal(out, x[off:off + length])}")
    except Exception as e:
        msg = [l for l in str(e).splitlines() if "error" in l.lower()]
        print(f"slice({off}, {length}): refused: {msg[0].strip() if msg else type(e).__name__}")
