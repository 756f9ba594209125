"""Which blocks the fusion what-if fuses changes its prediction: the 8 stride-1 blocks that effkit.kernels fuses, or
all 12 residual blocks of convfirst_net and mbconv_net (the 4 strided, width-changing ones too).

Issue 19 quotes fused waterlines of 0.18 ms (convfirst_net) and 0.19 ms (mbconv_net) at batch 64 on the H200; `effkit
profile --fused` reports 0.404 and 0.864 ms. This script computes both from the same trace (meta device: counts only,
bf16, channels-last, batch 64) and the H200 ceilings measured idle (results/h200/ceilings.json), so the difference is
shown rather than guessed. No GPU needed:

    python3 benchmarks/fused_waterline_scope.py [--out results/h200/kernels/fused_waterline_scope.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from effkit.analysis.model import analyse, blocks_for  # noqa: E402
from effkit.analysis.roofline import fusion_what_if  # noqa: E402
from effkit.device.roofs import roof_from_spec  # noqa: E402
from effkit.profiling import _config, _traces, resolve  # noqa: E402

DEPTHS = (2, 2, 6, 2)  # both networks: the first block of each stage strides 2 and changes width


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", help="also write the figures to this JSON file")
    a = ap.parse_args()
    ceilings = ROOT / "benchmarks/results/h200/ceilings.json"
    rows = []
    for net in ("convfirst_net", "mbconv_net"):
        ref = resolve(net)
        base = _config("meta", 64, "bf16", True, False, False, 0.5).replace(layers=False)
        roof = roof_from_spec(str(ceilings), base.prec.compute_dtype)
        trace = {t.batch: t for t in _traces(ref, base)}[64]
        an = analyse(trace, roof)
        every = [f"stages.{i}.{j}" for i, d in enumerate(DEPTHS) for j in range(d)]
        scopes = {"the 8 stride-1 blocks (what the kernels fuse)": [p for p in every if not p.endswith(".0")], "all 12 residual blocks": every}
        for scope, paths in scopes.items():
            f = fusion_what_if(list(an.layers), blocks_for(trace, paths), roof)
            rows.append({"net": net, "batch": 64, "scope": scope, "blocks": len(paths), "waterline_ms": 1e3 * an.waterline_s,
                         "fused_waterline_ms": 1e3 * f.fused_waterline_s})
            print(f"{net} b64, {scope}: waterline {1e3 * an.waterline_s:.4f} ms -> fused waterline {1e3 * f.fused_waterline_s:.4f} ms")
    if a.out:
        Path(a.out).write_text(json.dumps({"ceilings": "results/h200/ceilings.json", "dtype": "bf16, channels-last", "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
