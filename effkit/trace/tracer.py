"""`trace()`: run one forward (and, in training mode, backward) under the recorder."""
from __future__ import annotations

import contextlib
import dataclasses
import re
from collections import defaultdict

import torch
import torch.nn as nn

from effkit.config import get_precision
from effkit.devices import parse_device
from effkit.errors import CoverageError, ModelRunError, UserInputError, check_choice, check_positive
from effkit.models.ref import ModelRef, quiet_fake_tensor_log, resolve
from effkit.trace.paths import AUTOGRAD, ROOT
from effkit.trace.autocast import CudaAutocastEmulation
from effkit.trace.recorder import Recorder, outputs
from effkit.trace.result import Layer, TraceResult, Uncovered

MODES = ("infer", "train")
COUNTERS = ("effkit", "fvcore")


def fake_mode():
    from torch._subclasses.fake_tensor import FakeTensorMode

    return FakeTensorMode(allow_non_fake_inputs=True)


def trace(
    model,
    input_shape: tuple[int, ...] | list[tuple[int, ...]] | None = None,
    *,
    batch: int = 1,
    resolution: int | None = None,
    dtype: str = "fp32",
    device: str = "cpu",
    mode: str = "infer",
    strict: bool = False,
    counter: str = "effkit",
    seq_len: int | None = None,
    **model_kwargs,
) -> TraceResult:
    """Trace a model: per-layer MACs, FLOPs, params, activations and bytes.

    `model` is a zoo name, a spec (file.py:factory, torchvision:NAME, ...), an nn.Module or a
    ModelRef. `input_shape` is one sample's shape without the batch dimension (a list of
    shapes for models with several inputs); by default the model's own. `dtype` is a
    precision name. `device="meta"` traces on fake tensors: shapes and dtypes only, no
    memory, no arithmetic, the same counts.
    """
    check_positive("batch", batch)
    ref = resolve(model, input_shape, resolution=resolution, seq_len=seq_len, **model_kwargs)
    return trace_ref(ref, [batch], precision=dtype, device=device, mode=mode, strict=strict, counter=counter)[0]


def trace_ref(ref: ModelRef, batches, *, precision: str = "fp32", device: str = "cpu", mode: str = "infer", strict: bool = False,
              counter: str = "effkit") -> list[TraceResult]:
    """Trace a resolved model at each batch size, building it once."""
    batches = [batches] if isinstance(batches, int) else list(batches)
    for b in batches:
        check_positive("batch", b)
    prec = get_precision(precision)
    if prec.cuda_only and device != "meta" and not device.startswith("cuda"):
        raise UserInputError(f"precision {prec.name} cannot run on {device}: {prec.unsupported(device)}; trace it with --device meta or cuda")
    check_choice("mode", mode, MODES)
    check_choice("counter", counter, COUNTERS)
    device = parse_device(device)
    if counter == "fvcore" and device == "meta":
        raise UserInputError("--counter fvcore needs real tensors (fvcore runs the model); use --device cpu")
    fake = fake_mode() if device == "meta" else None
    run_device = "cpu" if device == "meta" else device  # fake tensors behave as CPU tensors
    if prec.mixed and fake is not None and mode == "train":
        raise ModelRunError(f"a training trace under {prec.name} needs real tensors (autocast's backward casts cannot be emulated on meta); "
                            "trace it with --device cpu or cuda")
    net = ref.build(run_device, prec.param_torch, fake=fake)
    net.train(mode == "train")
    autocast = "" if not prec.mixed else ("CUDA autocast's op policy, applied by effkit on fake tensors" if fake is not None else
                                          f"torch.autocast on {run_device.split(':')[0]}")
    results = []
    for b in batches:
        rec = Recorder(net, train=mode == "train", autocast_real=prec.mixed and fake is None)
        emulate = CudaAutocastEmulation(prec.autocast_torch, rec) if prec.mixed and fake is not None else contextlib.nullcontext()
        with fake if fake is not None else contextlib.nullcontext():
            inputs = ref.inputs(b, prec.input_torch, run_device)
            rec.attach()
            try:
                with torch.enable_grad() if mode == "train" else torch.no_grad(), rec, quiet_fake_tensor_log(), \
                        (prec.autocast(run_device) if fake is None else contextlib.nullcontext()), emulate:
                    output = _run_forward(net, inputs, rec, prec.name, device, ref)
                    if mode == "train":
                        _run_backward(output, rec)
            finally:
                rec.detach_hooks()
        result = dataclasses.replace(_assemble(ref.name, net, rec, tuple((b, *s) for s in ref.input_shapes), b, prec, device, mode),
                                     autocast=autocast)
        if counter == "fvcore":
            from effkit.trace.fvcore_counter import fvcore_counts

            result = dataclasses.replace(result, fvcore=fvcore_counts(net, tuple(inputs)))
        if strict and result.uncovered:
            raise CoverageError("ops without a formula (--strict): " + ", ".join(f"{u.op} x{u.count}" for u in result.uncovered))
        results.append(result)
    return results


def trace_counts(ref: ModelRef, batches, *, precision: str = "fp32") -> list[TraceResult]:
    """The counts on meta tensors (no memory, no arithmetic), or on real CPU tensors for a model that cannot run on fake
    ones: what profile, compare, sweep and the fusion check analyse."""
    try:
        return trace_ref(ref, batches, precision=precision, device="meta")
    except ModelRunError:
        return trace_ref(ref, batches, precision=precision, device="cpu")


def _run_forward(net, inputs, rec: Recorder, precision: str, device: str, ref: ModelRef):
    try:
        return ref.call(net, inputs)
    except ModelRunError as e:
        cause = e.__cause__
        if precision != "fp32" and re.search(r"Half|BFloat16|not implemented for|[Ll]ow precision", str(cause)):
            alt = "" if device == "meta" else " or --device meta"
            raise UserInputError(f"precision {precision} cannot run on {device}: {e}; use --precision fp32{alt}") from e
        if type(cause).__name__ in ("DataDependentOutputException", "DynamicOutputShapeException", "UnsupportedOperatorException"):
            raise ModelRunError(f"this model cannot be traced without compute (--device meta): {e}; trace it with --device cpu") from e
        raise
    except Exception as e:
        path = rec.stack[-1] if rec.stack else ROOT
        raise ModelRunError(f"layer {path!r} raised in its forward (outside any aten op): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e


def _run_backward(output, rec: Recorder):
    outs = [t for t in outputs(output) if t.requires_grad]
    if not outs:
        raise ModelRunError("training mode: the model's outputs do not require grad, so there is no backward to trace")
    with torch.utils._python_dispatch._disable_current_modes():
        grads = [torch.ones_like(t) for t in outs]  # the loss gradient is not part of the model
    rec.phase = "backward"
    torch.autograd.backward(outs, grads)


def _assemble(name, net: nn.Module, rec: Recorder, input_shapes, batch, prec, device, mode) -> TraceResult:
    types = {(p or ROOT): type(m).__name__ for p, m in net.named_modules()}
    direct_params: dict[str, int] = defaultdict(int)
    direct_buffers: dict[str, int] = defaultdict(int)
    seen: set[int] = set()
    for p, m in net.named_modules():
        for t in m.parameters(recurse=False):
            if id(t) not in seen:
                seen.add(id(t))
                direct_params[p or ROOT] += t.numel()
        direct_buffers[p or ROOT] += sum(b.numel() for b in m.buffers(recurse=False))

    sums: dict[str, dict[str, int]] = {}
    order: list[str] = []

    def acc(path) -> dict:
        if path not in sums:
            sums[path] = defaultdict(int)
            order.append(path)
        return sums[path]

    leaves = {(p or ROOT) for p, m in net.named_modules() if not any(True for _ in m.children())}
    for r in rec.records:
        s = acc(r.path)
        if r.phase == "forward":
            if r.cast:
                s["casts"] += 1
                s["cast_bytes"] += r.bytes_read + r.bytes_written
            s["macs"] += r.macs
            s["flops"] += r.flops
            s["acts"] += r.acts
            s["activation_bytes"] += r.out_bytes
            s["bytes_read"] += r.bytes_read
            s["bytes_written"] += r.bytes_written
            s["ops"] += 1
        else:
            s["bwd_macs"] += r.macs
            s["bwd_flops"] += r.flops
            s["bwd_bytes_read"] += r.bytes_read
            s["bwd_bytes_written"] += r.bytes_written
    for path, b in rec.saved_bytes.items():
        acc(path)["saved_bytes"] += b
    # leaves that ran without ops (Identity, eval Dropout), then modules owning params that never ran
    for path in rec.module_calls:
        if path in leaves:
            acc(path)
    for path in list(direct_params) + list(direct_buffers):
        if direct_params[path] or direct_buffers[path]:
            acc(path)

    order.sort(key=rec.execution_key)  # stable: backward-only and never-run rows keep their relative order, last
    layers = tuple(
        Layer(path, types.get(path, "autograd" if path == AUTOGRAD else "?"), rec.module_calls.get(path, 0), rec.module_outputs.get(path),
              direct_params.get(path, 0), direct_buffers.get(path, 0), **sums[path])
        for path in order
    )
    uncovered = tuple(Uncovered(op, u["count"], tuple(u["layers"])) for op, u in sorted(rec.uncovered.items(), key=lambda kv: -kv[1]["count"]))
    return TraceResult(name, input_shapes, batch, prec.param_dtype, device, mode, layers, tuple(rec.records), uncovered,
                       sum(direct_params.values()), sum(direct_buffers.values()), types, dict(rec.module_outputs), dict(rec.module_calls),
                       module_inputs=dict(rec.module_inputs), precision=prec.name,
                       blocks=tuple(rec.blocks))
