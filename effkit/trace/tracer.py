"""`trace()`: run one forward (and, in training mode, backward) under the recorder."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import re
from collections import defaultdict

import torch
import torch.nn as nn

from effkit.errors import CoverageError, ModelRunError, UserInputError, check_choice, check_positive
from effkit.devices import parse_device
from effkit.models.registry import BuiltModel, build_model, declared_input_shape
from effkit.trace.recorder import Recorder
from effkit.trace.result import AUTOGRAD, ROOT, Layer, TraceResult, Uncovered

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MODES = ("infer", "train")
COUNTERS = ("effkit", "fvcore")


def _fake_mode():
    from torch._subclasses.fake_tensor import FakeTensorMode

    return FakeTensorMode(allow_non_fake_inputs=True)


@contextlib.contextmanager
def _quiet_fake_tensor_log():
    """Fake tensors log a traceback for every op they fail on; effkit reports the error itself."""
    log = logging.getLogger("torch._subclasses.fake_tensor")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def trace(
    model: str | nn.Module | BuiltModel,
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

    `input_shape` is one sample's shape without the batch dimension (a list of shapes for
    models with several inputs); by default the model's own. `device="meta"` traces on
    fake tensors: shapes and dtypes only, no memory, no arithmetic, the same counts.
    """
    check_positive("batch", batch)
    if resolution is not None:
        check_positive("resolution", resolution)
    if seq_len is not None:
        check_positive("seq-len", seq_len)
    check_choice("dtype", dtype, DTYPES)
    check_choice("mode", mode, MODES)
    check_choice("counter", counter, COUNTERS)
    device = parse_device(device)
    if counter == "fvcore" and device == "meta":
        raise UserInputError("--counter fvcore needs real tensors (fvcore runs the model); use --device cpu")
    fake = _fake_mode() if device == "meta" else None
    run_device = "cpu" if device == "meta" else device  # fake tensors behave as CPU tensors

    # Built at the target dtype: fake parameters cannot be converted afterwards.
    kwargs = {**model_kwargs, **({"seq_len": seq_len} if seq_len else {})}
    try:
        with fake if fake is not None else contextlib.nullcontext(), _default_dtype(DTYPES[dtype]), _no_init(fake is not None), _quiet_fake_tensor_log():
            built = _build(model, resolution, DTYPES[dtype] if fake is not None else None, kwargs)
    except _DataDependentBuild:
        # the builder computes its configuration with tensors (torchvision's RegNet does): build on real
        # CPU tensors, initialisers off (the values are never used), then swap in fake parameters
        with _default_dtype(DTYPES[dtype]), _no_init(True):
            built = _build(model, resolution, None, kwargs)
        with fake:
            built = dataclasses.replace(built, model=_fake_copy(built.model, DTYPES[dtype]))
    shapes = _input_shapes(built, input_shape, resolution)
    net = built.model
    if fake is None:
        try:
            net = net.to(device=run_device, dtype=DTYPES[dtype])
        except (RuntimeError, TypeError) as e:
            raise UserInputError(f"model cannot be moved to {device}/{dtype}: {e}") from e
    net.train(mode == "train")

    rec = Recorder(net, train=mode == "train")
    with fake if fake is not None else contextlib.nullcontext():
        if built.vocab_size:  # a text model: token ids
            inputs = [torch.randint(0, built.vocab_size, (batch, *s), device=run_device) for s in shapes]
        else:
            inputs = [torch.randn((batch, *s), dtype=DTYPES[dtype], device=run_device) for s in shapes]
        grad_ctx = torch.enable_grad() if mode == "train" else torch.no_grad()
        rec.attach()
        try:
            with grad_ctx, rec, _quiet_fake_tensor_log():
                output = _run_forward(net, inputs, rec, dtype, device)
                if mode == "train":
                    _run_backward(output, rec)
        finally:
            rec.detach_hooks()
    result = _assemble(built.name, net, rec, tuple((batch, *s) for s in shapes), batch, dtype, device, mode)
    if counter == "fvcore":
        from effkit.trace.fvcore_counter import fvcore_counts

        result = dataclasses.replace(result, fvcore=fvcore_counts(net, tuple(inputs)))
    if strict and result.uncovered:
        raise CoverageError("ops without a formula (--strict): " + ", ".join(f"{u.op} x{u.count}" for u in result.uncovered))
    return result


class _DataDependentBuild(Exception):
    """A builder branched on tensor values while building on fake tensors."""


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(prev)


@contextlib.contextmanager
def _no_init(active: bool):
    """Make torch.nn.init's in-place initialisers no-ops: fake tensors have no values, and
    some initialisers (trunc_normal_'s rejection loop) branch on values."""
    if not active:
        yield
        return
    import torch.nn.init as init

    names = [n for n in dir(init) if n.endswith("_") and not n.startswith("_") and callable(getattr(init, n))]
    saved = {n: getattr(init, n) for n in names}
    try:
        for n in names:
            setattr(init, n, lambda tensor, *a, **k: tensor)
        yield
    finally:
        for n, f in saved.items():
            setattr(init, n, f)


def _build(model, resolution: int | None, fake_dtype: torch.dtype | None, model_kwargs: dict) -> BuiltModel:
    """Build or adopt the model; with `fake_dtype`, as fake tensors of that dtype."""
    fake = fake_dtype is not None
    if model_kwargs and not isinstance(model, str):
        raise UserInputError(f"builder arguments {sorted(model_kwargs)} need a model name, not a built model")
    if isinstance(model, BuiltModel):
        return model
    if isinstance(model, str):
        try:
            return build_model(model, resolution=resolution, **model_kwargs)
        except (UserInputError, ModelRunError):
            raise
        except Exception as e:
            if fake and type(e).__name__ in ("DataDependentOutputException", "DynamicOutputShapeException"):
                raise _DataDependentBuild() from e
            where = "on fake (meta) tensors " if fake else ""
            raise ModelRunError(f"model {model!r} could not be built {where}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    if isinstance(model, nn.Module):
        if fake:
            model = _fake_copy(model, fake_dtype)
        return BuiltModel(model, type(model).__name__, declared_input_shape(model), "module")
    raise UserInputError(f"cannot trace a {type(model).__name__}; give a model name, a spec like file.py:factory, or an nn.Module")


def _fake_copy(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of `model` whose parameters and buffers are fake tensors (the caller's stays untouched)."""
    from torch._guards import active_fake_mode

    mode = active_fake_mode()
    with torch.utils._python_dispatch._disable_current_modes():
        real = copy.deepcopy(model).to(dtype)
    for m in real.modules():
        for name, p in list(m._parameters.items()):
            if p is not None:
                m._parameters[name] = nn.Parameter(mode.from_tensor(p.detach()), requires_grad=p.requires_grad)
        for name, b in list(m._buffers.items()):
            if b is not None:
                m._buffers[name] = mode.from_tensor(b)
    return real


def _input_shapes(built: BuiltModel, input_shape, resolution) -> list[tuple[int, ...]]:
    if input_shape is None:
        if built.input_shape is None:
            raise UserInputError(f"model {built.name!r} does not declare its input shape; give --input-shape, e.g. 3,224,224")
        shapes = [built.input_shape]
    elif input_shape and isinstance(input_shape[0], int):
        shapes = [tuple(input_shape)]
    else:
        shapes = [tuple(s) for s in input_shape]
    for s in shapes:
        if not s or any(d <= 0 for d in s):
            raise UserInputError(f"input shape {','.join(map(str, s))!r} must be positive integers, e.g. 3,224,224")
    if resolution is not None and input_shape is not None and len(shapes[0]) == 3:
        shapes[0] = (shapes[0][0], resolution, resolution)
    return shapes


def _run_forward(net, inputs, rec: Recorder, dtype: str, device: str):
    try:
        return net(*inputs)
    except ModelRunError as e:
        cause = e.__cause__
        if dtype != "fp32" and re.search(r"Half|BFloat16|not implemented for|[Ll]ow precision", str(cause)):
            alt = "" if device == "meta" else " or --device meta"
            raise UserInputError(f"dtype {dtype} cannot run on {device}: {e}; use --dtype fp32{alt}") from e
        if type(cause).__name__ in ("DataDependentOutputException", "DynamicOutputShapeException", "UnsupportedOperatorException"):
            raise ModelRunError(f"this model cannot be traced without compute (--device meta): {e}; trace it with --device cpu") from e
        raise
    except Exception as e:
        path = rec.stack[-1] if rec.stack else ROOT
        raise ModelRunError(f"layer {path!r} raised in its forward (outside any aten op): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e


def _run_backward(output, rec: Recorder):
    from effkit.trace.recorder import _outputs

    outs = [t for t in _outputs(output) if t.requires_grad]
    if not outs:
        raise ModelRunError("training mode: the model's outputs do not require grad, so there is no backward to trace")
    with torch.utils._python_dispatch._disable_current_modes():
        grads = [torch.ones_like(t) for t in outs]  # the loss gradient is not part of the model
    rec.phase = "backward"
    torch.autograd.backward(outs, grads)


def _assemble(name, net: nn.Module, rec: Recorder, input_shapes, batch, dtype, device, mode) -> TraceResult:
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
    return TraceResult(name, input_shapes, batch, dtype, device, mode, layers, tuple(rec.records), uncovered,
                       sum(direct_params.values()), sum(direct_buffers.values()), types, dict(rec.module_outputs), dict(rec.module_calls),
                       module_inputs=dict(rec.module_inputs))
