"""How far a configuration's outputs are from the unfused model's in fp32: the numerical cost of a precision, of the
block-fused kernels and of a layout, measured on the same weights and input as the run that is timed."""
from __future__ import annotations

import copy

import torch


def output_difference(ref, precision: str, device: str, batch: int = 1, seed: int = 0, fused: bool = False,
                      channels_last: bool = False) -> tuple[float, float, float | None]:
    """Max absolute and max relative difference of the outputs at `precision` (with `fused`, of the model with its blocks
    swapped for effkit.kernels' fused ones; with `channels_last`, of the model and its 4-D inputs in channels-last memory,
    as a channels-last run holds them) against the unfused model's in fp32, same weights (seeded), same input; and the
    fp32 outputs' largest magnitude (None for fp32 itself, unfused and in its own layout).
    The layout is checked because it once mattered: the fused c384 kernel read a weight that `model.to(memory_format=
    torch.channels_last)` had re-laid, and was wrong by 0.26 of its output's scale, which a check of the contiguous
    model alone did not see."""
    from effkit.config import get_precision
    from effkit.run.runner import first_float

    if precision == "fp32" and not fused and not channels_last:
        return 0.0, 0.0, None
    prec = get_precision(precision)
    torch.manual_seed(seed)
    net = ref.build(device, torch.float32).eval()
    xs = ref.inputs(batch, torch.float32, device)
    with torch.no_grad():
        ref_out = first_float(ref.call(net, xs)).float()
        if fused:  # the same weights, the BatchNorms folded in fp32 (as fused_build does), before any cast
            from effkit.kernels import fuse_blocks

            net = fuse_blocks(copy.deepcopy(net))[0]
        if channels_last:  # the model and its 4-D inputs as a channels-last run holds them; a copy, since a user's module
            # is built as itself (`ModelRef.build`) and must keep its own layout
            net = copy.deepcopy(net).to(memory_format=torch.channels_last)
            xs = [x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x for x in xs]
        if prec.mixed:
            with prec.autocast(device):
                out = first_float(ref.call(net, xs)).float()
        elif precision == "tf32":
            from effkit.config import tf32_switches

            with tf32_switches(True, True):
                out = first_float(ref.call(net, xs)).float()
        else:
            low = copy.deepcopy(net).to(prec.param_torch)  # a user's module is built as itself: leave it in fp32
            lx = [x.to(prec.input_torch) if x.is_floating_point() else x for x in xs]
            out = first_float(ref.call(low, lx)).float()
    diff = (out - ref_out).abs()
    ref_max = ref_out.abs().max().item()
    return diff.max().item(), diff.max().item() / (ref_max or 1.0), ref_max
