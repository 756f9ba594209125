"""Analysis of one traced (and possibly measured) model: layer kinds, residual blocks,
measured times joined to the trace's layers, the gap ladder."""
from __future__ import annotations

import fnmatch
import math
from collections import defaultdict

from effkit.analysis.roofline import Block, LayerCost, ModelAnalysis, analyse_layers, fusion_what_if
from effkit.device.roofs import Roof
from effkit.trace.paths import ROOT
from effkit.trace.result import TraceResult

_NORMS = ("batch_norm", "layer_norm", "group_norm", "rms_norm")
_POOLS = ("pool",)
_ATTN = ("scaled_dot_product", "multi_head_attention", "aten.bmm", "aten.baddbmm")


def op_kind(op: str, in_shapes: tuple) -> str:
    """The layer kind an op makes: conv flavours by groups and kernel, products, norms, pools."""
    if op.startswith("aten.convolution.") or op.startswith("aten._convolution."):
        x, w = in_shapes[0], in_shapes[1]
        c_in, c_in_per_group = x[1], w[1]
        groups = c_in // c_in_per_group if c_in_per_group else 1
        if groups == 1:
            return "pointwise conv" if math.prod(w[2:]) == 1 else "dense conv"
        return "depthwise conv" if c_in_per_group == 1 else "grouped conv"
    if any(a in op for a in _ATTN):
        return "attention"
    if op.startswith(("aten.addmm.", "aten.mm.", "aten.mv.")):
        return "linear"
    if any(n in op for n in _NORMS):
        return "norm"
    if any(p in op for p in _POOLS):
        return "pooling"
    return "elementwise"


def layer_kinds(trace: TraceResult) -> dict[str, str]:
    """Each layer's kind: that of its costliest forward op (FLOPs, then bytes)."""
    best: dict[str, tuple] = {}
    for o in trace.ops:
        if o.phase != "forward":
            continue
        key = (o.flops, o.bytes_read + o.bytes_written)
        if o.path not in best or key > best[o.path][0]:
            best[o.path] = (key, op_kind(o.op, o.in_shapes))
    return {p: k for p, (_, k) in best.items()}


_SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "float64": "fp32"}
_CONV_KINDS = ("dense conv", "pointwise conv", "depthwise conv", "grouped conv")


def compute_dtype(op, tf32: tuple[bool, bool]) -> str:
    """The compute dtype an op's FLOPs run at: its floating inputs' dtype; fp32 convolutions in TF32 when cuDNN's
    switch is on, fp32 matmuls and attention products in TF32 when the matmul switch is on."""
    dt = next((d for d in op.in_dtypes if d in _SHORT), None) or next((d for d in op.out_dtypes if d in _SHORT), "float32")
    short = _SHORT[dt]
    if short == "fp32":
        kind = op_kind(op.op, op.in_shapes)
        if (kind in _CONV_KINDS and tf32[1]) or (kind in ("linear", "attention") and tf32[0]):
            return "tf32"
    return short


def layer_costs(trace: TraceResult, tf32: tuple[bool, bool] = (False, False)) -> list[LayerCost]:
    """What each layer asks for, with its FLOPs split by the compute dtype each op runs in (`tf32`: the
    (matmul, cuDNN) TF32 switches in force)."""
    kinds = layer_kinds(trace)
    by_peak: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for o in trace.ops:
        if o.phase == "forward" and o.flops:
            by_peak[o.path][compute_dtype(o, tf32)] += o.flops
    return [LayerCost(l.path, l.module_type, kinds.get(l.path, "other"), l.flops, l.bytes_read + l.bytes_written, l.bytes_read, max(1, l.calls),
                      l.ops, dict(by_peak[l.path]) if l.path in by_peak else None) for l in trace.layers]


def residual_blocks(trace: TraceResult) -> list[str]:
    """Modules that add their own input to a function of that input (found by data flow in the trace)."""
    return list(trace.blocks)


def blocks_for(trace: TraceResult, paths: list[str]) -> list[Block]:
    """Member layers and fused DRAM bytes (input + output + weights + buffers) of each block."""
    itemsize = {"fp32": 4, "fp16": 2, "bf16": 2}.get(trace.dtype, 4)
    out = []
    for b in paths:
        members = tuple(l.path for l in trace.layers if l.path == b or l.path.startswith(b + "."))
        weights = sum(l.params + l.buffers for l in trace.layers if l.path in members)
        ins, outs = (trace.module_inputs or {}).get(b), trace.module_outputs.get(b)
        io = (math.prod(ins) if ins else 0) + (math.prod(outs) if outs else 0)
        out.append(Block(b, members, (io + weights) * itemsize))
    return out


def measured_by_path(layer_times) -> dict:
    """Forward (seconds, kernels) per path from effkit.run LayerTimes."""
    m: dict = defaultdict(lambda: [0.0, 0.0])
    for l in layer_times.layers:
        if l.phase == "forward":
            m[l.path][0] += l.time_s
            m[l.path][1] += l.count
    return {p: tuple(v) for p, v in m.items()}


def analyse(trace: TraceResult, roof: Roof, point=None, fuse: str | None = None, top1: float | None = None,
            tf32: tuple[bool, bool] = (False, False)) -> ModelAnalysis:
    """Join a trace with the ceilings and, if given, a measured bench point (effkit.run.BenchPoint). `tf32` is the
    (matmul, cuDNN) TF32 switches in force on a CUDA device; a measured point's own record of them wins."""
    measured = measured_by_path(point.layers) if point is not None and point.layers is not None else None
    backend = point.environment.backend if point is not None and point.environment is not None else {}
    if backend.get("tf32_matmul") is not None and point.config.device.startswith("cuda"):
        tf32 = (backend["tf32_matmul"], backend["tf32_cudnn"])
    layers = analyse_layers(layer_costs(trace, tf32), roof, measured)
    notes = []
    if measured:
        unmatched = {p: v for p, v in measured.items() if p not in {l.path for l in layers} and v[0] > 0}
        if unmatched:
            notes.append("measured time outside traced layers (free views in the trace, ops outside modules): "
                         + ", ".join(f"{p} {1e3 * v[0]:.3f} ms" for p, v in unmatched.items()))
    if fuse:
        paths = [p for p in trace.module_types if p != ROOT and fnmatch.fnmatchcase(p, fuse)]
        # outermost matches only: a block inside another is part of it
        paths = [p for p in paths if not any(p.startswith(q + ".") for q in paths)]
        pattern = f"modules matching {fuse!r}"
    else:
        paths, pattern = residual_blocks(trace), "residual blocks"
    fusion = fusion_what_if(layers, blocks_for(trace, paths), roof, pattern) if paths else None
    t = trace.totals
    kinds = {l.path: l.kind for l in layers}
    cast_by_kind: dict[str, int] = defaultdict(int)
    for o in trace.ops:
        if o.cast and o.phase == "forward":
            cast_by_kind[kinds.get(o.path, "other")] += o.bytes_read + o.bytes_written
    timing = point.timing if point is not None else None
    lt = point.layers if point is not None else None
    device = point.environment.device_name if point is not None and point.environment is not None else roof.name
    return ModelAnalysis(trace.model, trace.batch, trace.precision or trace.dtype, device, roof, tuple(layers), t.flops, t.macs, trace.params,
                         t.acts, timing.median_s if timing else None, lt.total_s if lt else None, fusion, top1,
                         tuple(f"{u.op} x{u.count}" for u in trace.uncovered), tuple(notes),
                         timing.iqr_s if timing else None, timing.cv if timing else None, len(timing.samples_s) if timing else None,
                         lt.total_iqr_s if lt else None, lt.profiler_overhead if lt else None,
                         point.sync_latency_s if point is not None else None, point.throughput_samples_per_s if point is not None else None,
                         t.casts, t.cast_bytes, dict(cast_by_kind) or None)
