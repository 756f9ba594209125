"""Whether convfirst_net, fused, gives the unfused model's outputs in both memory layouts: the check that would have
caught the c384 block reading a weight re-laid by `model.to(memory_format=torch.channels_last)` (runs 51-52).

On the CPU the fused blocks run their Triton kernels in Triton's interpreter (fp32), so this needs no GPU. Printed: the
max |fused - unfused| over the unfused outputs' max |value|, for the fused model as built and made channels-last.

    python3 benchmarks/fused_layout_check.py [--resolution 224]      (about a minute at 224 on 2 cores)
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "1"  # before Triton is first imported: its jit decides then whether to interpret
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402

from effkit.kernels import fuse_blocks  # noqa: E402
from effkit.models.ref import resolve  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--model", default="convfirst_net")
    a = ap.parse_args()
    torch.manual_seed(0)
    ref = resolve(a.model, resolution=a.resolution)
    net = ref.build("cpu", torch.float32).eval()
    x = ref.inputs(1, torch.float32, "cpu")[0]
    t0 = time.perf_counter()
    with torch.no_grad():
        want = net(x)
        fused = fuse_blocks(copy.deepcopy(net))[0]
        plain = fused(x)
        cl = copy.deepcopy(fused).to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    scale = want.abs().max()
    print(f"{a.model} at {a.resolution}x{a.resolution}, batch 1, fp32, kernels in Triton's interpreter: fused vs unfused, "
          f"as built {((plain - want).abs().max() / scale).item():.2e}, channels-last {((cl - want).abs().max() / scale).item():.2e} "
          f"of the outputs' largest magnitude ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
