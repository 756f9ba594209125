"""BatchNorm folding, the fused blocks' math in PyTorch, and the module swap.

Folding (inference, running statistics): a conv with weight W and bias b followed by BatchNorm(γ, β, μ, σ², ε) is one
conv with W' = W · s and b' = (b − μ) · s + β, where s = γ / √(σ² + ε), per output channel.

A ConvFirst block, folded: y1 = conv_k×k(x; W1', b1', groups C/8); e = SiLU(W2' y1 + b2'); out = W3' e + b3' + x.
An MBConv block, folded: e = SiLU(W1' x + b1'); d = SiLU(depthwise_k×k(e; Wd', bd')); out = W3' d + b3' + x.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from effkit.errors import UserInputError
from effkit.kernels.layout import block_diagonal_dense_parts, block_diagonal_pairs, channel_parts, im2col_weight, kernel_input_parts


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(W', b') of the conv with the BatchNorm folded in (running statistics: inference only)."""
    s = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    w = conv.weight.detach() * s.reshape(-1, 1, 1, 1)
    b = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    return w, (b - bn.running_mean) * s + bn.bias.detach()


def reference_convfirst(x, w1, b1, w2, b2, w3, b3, group_width: int, stride: int = 1, ws=None, bs=None):
    """The folded ConvFirst block in PyTorch (NCHW in, NCHW out); w1 [C, group_width, k, k], w2 [hidden, C], w3 [C_out,
    hidden]; a strided or width-changing block has its shortcut's folded 1x1 conv ws [C_out, C], bs."""
    c, k = w1.shape[0], w1.shape[-1]
    y1 = F.conv2d(x, w1, b1, stride=stride, padding=k // 2, groups=c // group_width)
    e = F.silu(F.conv2d(y1, w2[:, :, None, None], b2))
    return F.conv2d(e, w3[:, :, None, None], b3) + (x if ws is None else F.conv2d(x, ws[:, :, None, None], bs, stride=stride))


def reference_mbconv(x, w1, b1, wd, bd, w3, b3):
    """The folded MBConv block in PyTorch; w1 [hidden, C], wd [hidden, 1, k, k] (depthwise), w3 [C, hidden]."""
    k = wd.shape[-1]
    e = F.silu(F.conv2d(x, w1[:, :, None, None], b1))
    d = F.silu(F.conv2d(e, wd, bd, padding=k // 2, groups=wd.shape[0]))
    return F.conv2d(d, w3[:, :, None, None], b3) + x


def _use_triton(x: torch.Tensor) -> bool:
    return triton_available() and (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1")


class _RowMajorBuffers(nn.Module):
    """A fused module whose kernels read their weights by flat, row-major offsets. `model.to(memory_format=
    torch.channels_last)` (what a channels-last run does to the whole model) re-lays every 4-D buffer, which gave wrong
    outputs without an error: convfirst_net's c384 block (the grouped conv's pairs layout [k², C/16, 16, 16]) was off
    by 0.26 of its output's scale on the H100, in bf16 and fp16. So every buffer is made row-major again after any such
    conversion; the PyTorch path (conv2d) takes any layout, and the kernels read these tensors only."""

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        for name, b in self._buffers.items():
            if b is not None and not b.is_contiguous():
                self._buffers[name] = b.contiguous()
        return self


class FusedConvFirst(_RowMajorBuffers):
    """A ConvFirst block as one kernel (Triton on CUDA), BatchNorms folded; a strided or width-changing one (stride,
    and its shortcut's folded 1x1 conv ws, bs) too."""

    def __init__(self, w1, b1, w2, b2, w3, b3, group_width: int, config: dict | None = None, stride: int = 1, ws=None, bs=None):
        super().__init__()
        self.group_width, self.stride = group_width, stride
        self.config = config  # the kernel's tiles (see triton_blocks.default_config); None: the defaults
        for name, t in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2), ("w3", w3), ("b3", b3), ("ws", ws), ("bs", bs)):
            self.register_buffer(name, t.contiguous() if t is not None else None)
        parts = channel_parts(w1.shape[0])  # the kernel's two channel parts (a, b)
        self.register_buffer("w1bd", block_diagonal_pairs(w1, sum(parts)) if 16 % group_width == 0 else None)
        # the dense layout for the kernel's default input parts (k²·(a² + b²) weights: 0.1 MB at 96 channels, 1.5 MB at 384,
        # in bf16; three parts where they are the default); a config that asks for other parts gets its own, made once
        self._parts = kernel_input_parts(w1.shape[0], max(w1.shape[0], w3.shape[0]), stride, None)
        self.register_buffer("w1dense", block_diagonal_dense_parts(w1, self._parts) if 16 % group_width == 0 else None)
        self._w1dense_other = None

    def forward(self, x):
        if _use_triton(x):
            from effkit.kernels.triton_blocks import convfirst

            cfg = self.config if self.w1bd is not None else {**(self.config or {}), "group_conv": "fma"}
            dense = self.w1dense
            if self.w1bd is not None:
                wanted = kernel_input_parts(self.w1.shape[0], max(self.w1.shape[0], self.w3.shape[0]), self.stride, cfg)
                if wanted != self._parts:
                    other = self._w1dense_other  # made at the first call (a warm-up, before any CUDA graph is captured)
                    if other is None or other.dtype != self.w1.dtype or other.device != self.w1.device or other.numel() != \
                            self.w1.shape[-1] ** 2 * sum(q * q for q in wanted):
                        self._w1dense_other = other = block_diagonal_dense_parts(self.w1, wanted)
                    dense = other
            return convfirst(x, self.w1, self.b1, self.w2, self.b2, self.w3, self.b3, self.group_width, w1bd=self.w1bd, config=cfg,
                             w1dense=dense, stride=self.stride, ws=self.ws, bs=self.bs)
        return reference_convfirst(x, self.w1, self.b1, self.w2, self.b2, self.w3, self.b3, self.group_width, self.stride, self.ws, self.bs)


class FusedMBConv(_RowMajorBuffers):
    """A stride-1, equal-width MBConv block (depthwise) as one kernel (Triton on CUDA), BatchNorms folded."""

    def __init__(self, w1, b1, wd, bd, w3, b3, config: dict | None = None):
        super().__init__()
        self.config = config
        for name, t in (("w1", w1), ("b1", b1), ("wd", wd), ("bd", bd), ("w3", w3), ("b3", b3)):
            self.register_buffer(name, t.contiguous())

    def forward(self, x):
        if _use_triton(x):
            from effkit.kernels.triton_blocks import mbconv

            return mbconv(x, self.w1, self.b1, self.wd, self.bd, self.w3, self.b3, config=self.config)
        return reference_mbconv(x, self.w1, self.b1, self.wd, self.bd, self.w3, self.b3)


STEM_COLUMNS = 64  # the stem kernel's im2col tile: at most this many input values an output pixel (C_in·k²; 27 for a 3×3 RGB stem)
_ACTS = {nn.SiLU: "silu", nn.ReLU: "relu"}


def reference_conv_act(x, w, b, stride: int, padding: int, act: str = "silu"):
    """The folded stem in PyTorch: a dense conv (BatchNorm folded into w, b), then SiLU, ReLU or nothing."""
    y = F.conv2d(x, w, b, stride=stride, padding=padding)
    return {"silu": F.silu, "relu": F.relu, "none": lambda t: t}[act](y)


class FusedConvAct(_RowMajorBuffers):
    """An image network's stem (a dense k×k conv on few input channels → BatchNorm → SiLU/ReLU/none) as one kernel
    (Triton on CUDA), the BatchNorm folded: the conv's output is written once, activated, instead of once by the conv
    and twice more by the BatchNorm and the activation (three times in eager)."""

    def __init__(self, w, b, stride: int, padding: int, act: str = "silu", config: dict | None = None):
        super().__init__()
        self.stride, self.padding, self.act, self.config = stride, padding, act, config
        self.register_buffer("w", w.contiguous())
        self.register_buffer("b", b.contiguous())
        self.register_buffer("wmat", im2col_weight(w))

    def forward(self, x):
        if _use_triton(x):
            from effkit.kernels.triton_blocks import conv_act

            return conv_act(x, self.w, self.wmat, self.b, self.stride, self.padding, self.act, config=self.config)
        return reference_conv_act(x, self.w, self.b, self.stride, self.padding, self.act)


def _match_stem(m) -> bool:
    """A conv → BN [→ SiLU | ReLU] Sequential whose conv is dense (groups 1), square k×k with k > 1, one stride both ways,
    symmetric padding, no dilation, and reads at most STEM_COLUMNS input values an output pixel (C_in·k²)."""
    parts = _conv_bn(m, strides=None)
    if parts is None or (parts[2] is not None and type(parts[2]) not in _ACTS):
        return False
    conv = parts[0]
    k = conv.kernel_size[0]
    return (conv.kernel_size == (k, k) and k > 1 and conv.groups == 1 and conv.stride[0] == conv.stride[1]
            and conv.padding[0] == conv.padding[1] and isinstance(conv.padding[0], int) and conv.padding_mode == "zeros"
            and conv.in_channels * k * k <= STEM_COLUMNS)


def _fused_stem(m) -> FusedConvAct:
    conv, bn, act = _conv_bn(m, strides=None)
    w, b = fold_bn(conv, bn)
    return FusedConvAct(w, b, conv.stride[0], conv.padding[0], "none" if act is None else _ACTS[type(act)])


def _conv_bn(m, strides=((1, 1),)) -> tuple[nn.Conv2d, nn.BatchNorm2d, nn.Module | None] | None:
    """(conv, bn, activation) of a conv → BN [→ act] Sequential whose stride is one of `strides` (None: any) and whose
    conv has no dilation, or None."""
    if not isinstance(m, nn.Sequential) or len(m) not in (2, 3):
        return None
    conv, bn = m[0], m[1]
    if (not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d) or (strides is not None and conv.stride not in strides)
            or conv.dilation != (1, 1)):
        return None
    act = m[2] if len(m) == 3 else None
    return conv, bn, act


def _convfirst_body(parts) -> bool:
    """The three (conv, bn, act) stages of a ConvFirst body: grouped k×k (group width 8, same width, no activation) →
    1x1 expand with SiLU → 1x1 project, no activation."""
    (c1, _, a1), (c2, _, a2), (c3, _, a3) = parts
    k = c1.kernel_size[0]
    return (c1.kernel_size == (k, k) and k % 2 == 1 and c1.padding == (k // 2, k // 2) and a1 is None and c1.in_channels == c1.out_channels
            and c1.groups > 1 and c1.in_channels // c1.groups == 8 and c2.kernel_size == (1, 1) and isinstance(a2, nn.SiLU)
            and c3.kernel_size == (1, 1) and a3 is None and c2.groups == c3.groups == 1)


def _strided_convfirst(block) -> bool:
    """A ConvFirst block whose grouped conv strides (1 or 2) and whose shortcut is a 1x1 conv → BN of the same stride."""
    body, sc = getattr(block, "body", None), getattr(block, "shortcut", None)
    if not isinstance(body, nn.Sequential) or len(body) != 3 or sc is None:
        return False
    parts, short = [_conv_bn(body[0], ((1, 1), (2, 2)))] + [_conv_bn(m) for m in body[1:]], _conv_bn(sc, ((1, 1), (2, 2)))
    if short is None or any(p is None for p in parts) or not _convfirst_body(parts):
        return False
    (c1, _, _), _, (c3, _, _) = parts
    cs, _, as_ = short
    return (cs.kernel_size == (1, 1) and cs.groups == 1 and cs.padding == (0, 0) and as_ is None and cs.stride == c1.stride
            and cs.in_channels == c1.in_channels and cs.out_channels == c3.out_channels)


def _match(block, strided: bool = False) -> str | None:
    """'convfirst' or 'mbconv' for a residual block `body` (3 conv-BN stages) with an identity shortcut, else None;
    with strided=True also 'convfirst' for a ConvFirst block with a stride or a width change (a 1x1 conv shortcut)."""
    if strided and _strided_convfirst(block):
        return "convfirst"
    body = getattr(block, "body", None)
    if getattr(block, "shortcut", "missing") is not None or not isinstance(body, nn.Sequential) or len(body) != 3:
        return None
    parts = [_conv_bn(m) for m in body]
    if any(p is None for p in parts):
        return None
    if _convfirst_body(parts) and parts[2][0].out_channels == parts[0][0].in_channels:
        return "convfirst"
    (c1, _, a1), (c2, _, a2), (c3, _, a3) = parts
    silu = lambda a: isinstance(a, nn.SiLU)  # noqa: E731
    k = c2.kernel_size[0]
    if (c1.kernel_size == (1, 1) and silu(a1) and c1.groups == 1 and c2.kernel_size == (k, k) and k % 2 == 1 and c2.padding == (k // 2, k // 2)
            and c2.groups == c2.in_channels == c2.out_channels and silu(a2) and c3.kernel_size == (1, 1) and a3 is None and c3.groups == 1
            and c3.out_channels == c1.in_channels):
        return "mbconv"
    return None


def _fused(block, kind: str) -> nn.Module:
    (c1, n1, _), (c2, n2, _), (c3, n3, _) = [_conv_bn(m, ((1, 1), (2, 2))) for m in block.body]
    w1, b1 = fold_bn(c1, n1)
    w2, b2 = fold_bn(c2, n2)
    w3, b3 = fold_bn(c3, n3)
    if kind == "convfirst":
        ws = bs = None
        if block.shortcut is not None:
            cs, ns, _ = _conv_bn(block.shortcut, ((1, 1), (2, 2)))
            ws, bs = fold_bn(cs, ns)
            ws = ws[:, :, 0, 0]
        return FusedConvFirst(w1, b1, w2[:, :, 0, 0], b2, w3[:, :, 0, 0], b3, group_width=c1.in_channels // c1.groups, stride=c1.stride[0],
                              ws=ws, bs=bs)
    return FusedMBConv(w1[:, :, 0, 0], b1, w2, b2, w3[:, :, 0, 0], b3)


def _plan(model: nn.Module, strided: bool, stem: bool) -> list[tuple[nn.Module, str, str, str | None, str | None]]:
    """What fuse_blocks would do, without doing it: (parent, child name, path, kind, why) for every stem that matches
    (kind 'stem') and every residual block (kind 'convfirst' or 'mbconv', or None with why it does not match)."""
    plan = []
    blocks = [name for name, m in model.named_modules() if hasattr(m, "body") and hasattr(m, "shortcut")]
    in_block = lambda path: any(path == b or path.startswith(b + ".") for b in blocks)  # noqa: E731
    for name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            path = f"{name}.{child_name}" if name else child_name
            if stem and not in_block(path) and _match_stem(child):
                plan.append((parent, child_name, path, "stem", None))
                continue
            if not (hasattr(child, "body") and hasattr(child, "shortcut")):
                continue
            kind = _match(child, strided)
            why = None if kind else ("another structure" if getattr(child, "shortcut", None) is None else
                                     "a stride or a width change (a conv on the shortcut)" + ("" if strided else ", strided=False"))
            plan.append((parent, child_name, path, kind, why))
    return plan


def fuse_blocks(model: nn.Module, select=None, strided: bool = True, stem: bool = True, only=None) -> tuple[nn.Module, dict]:
    """Replace each ConvFirst block and each stride-1, equal-width MBConv block of `model` (in eval mode) by its fused
    module, in place. A ConvFirst block that strides or changes width has its 1x1 conv shortcut folded into the same
    kernel (on the H200: within 5.4e-3 of the output's scale on every block shape; the four strided blocks of
    convfirst_net 0.8-2.7x as fast as compile's best mode, benchmarks/README.md); strided=False leaves those unfused.
    MBConv has no strided kernel.
    `select(path, block, kind)`, if given, picks which of the matching blocks to fuse (e.g. only those whose fused kernel
    was measured faster than the unfused block). `only`, if given, names the module paths to fuse, blocks and stems
    (`fusion_units` lists them; the profile's selective configuration fuses those whose kernel beat torch.compile): the
    other matching ones are left, and a path that names no block or stem fuse_blocks would fuse is refused before anything
    is swapped. stem=True also swaps a stem (a dense k×k conv on at most STEM_COLUMNS input values an output pixel → BN →
    SiLU/ReLU, outside any residual block: the 3×3 RGB stem) for `FusedConvAct`.
    Returns the model and {'fused': [paths], 'unfused': [(path, why)], 'stems': [paths]}: fused and unfused name every
    residual block seen, stems the stems fused."""
    if not isinstance(model, nn.Module):
        raise UserInputError(f"fuse_blocks needs an nn.Module, got a {type(model).__name__}")
    if model.training:
        raise UserInputError("fuse_blocks folds BatchNorm running statistics: call model.eval() first (fused blocks are inference only)")
    plan = _plan(model, strided, stem)
    if only is not None:
        only = {only} if isinstance(only, str) else set(only)
        fusable = [path for _, _, path, kind, _ in plan if kind]
        unknown = sorted(only - set(fusable))
        if unknown:
            raise UserInputError(f"fused blocks {', '.join(unknown)}: not a block or stem that fuse_blocks fuses in this model; "
                                 f"those are: {', '.join(fusable) or 'none'}")
    report: dict = {"fused": [], "unfused": [], "stems": []}
    for parent, child_name, path, kind, why in plan:
        child = getattr(parent, child_name)
        if kind == "stem":
            if only is None or path in only:
                setattr(parent, child_name, _fused_stem(child))
                report["stems"].append(path)
            continue
        if kind is None:
            report["unfused"].append((path, why))
        elif only is not None and path not in only:
            report["unfused"].append((path, f"a {kind} block not among the blocks asked for (only)"))
        elif select is not None and not select(path, child, kind):
            report["unfused"].append((path, f"a {kind} block left unfused by select"))
        else:
            setattr(parent, child_name, _fused(child, kind))
            report["fused"].append(path)
    return model, report


def _signature(m: nn.Module) -> tuple:
    """What a block's or a stem's time depends on besides its input shape: each conv's shape, stride, padding and groups."""
    return tuple((type(c).__name__, tuple(c.weight.shape), c.stride, c.padding, c.groups) for c in m.modules() if isinstance(c, nn.Conv2d))


def _unit_name(kind: str, m: nn.Module, shape: tuple[int, ...]) -> str:
    """'mbconv 48→48 (192 wide, 3×3) at 56×56', 'convfirst 48→96 (3×3, stride 2) at 56×56', 'stem 3→32 (3×3, stride 2) at 224×224'."""
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    first = convs[0]
    k, stride = first.kernel_size[0], max(c.stride[0] for c in convs)
    out = convs[2].out_channels if kind != "stem" else first.out_channels
    wide = f"{convs[1].out_channels} wide, " if kind != "stem" else ""
    conv_k = convs[1].kernel_size[0] if kind == "mbconv" else k
    return (f"{kind} {shape[0]}→{out} ({wide}{conv_k}×{conv_k}" + (f", stride {stride}" if stride > 1 else "")
            + f") at {shape[1]}×{shape[2]}")


def fusion_units(model: nn.Module, inputs, strided: bool = True, stem: bool = True, call=None) -> list[dict]:
    """The blocks and stems fuse_blocks would fuse in `model` (eval mode), grouped so that a group's members are the same
    structure at the same input shape: one of them, timed alone, stands for all. The model runs once on `inputs` (a list
    of tensors, batch 1 is enough; `call(model, inputs)` runs it where the model takes them otherwise, e.g. by name) to see
    each one's input shape. Each unit: {'name', 'kind', 'paths', 'input_shape'
    (one sample, C·H·W), 'module' (the first member, unfused)}, in the model's order."""
    plan = [(getattr(parent, name), path, kind) for parent, name, path, kind, _ in _plan(model, strided, stem) if kind]
    shapes: dict[str, tuple[int, ...]] = {}

    def seen(path):  # a pre-hook that returns a value replaces the module's inputs: this one returns None
        def hook(module, args):
            shapes.setdefault(path, tuple(args[0].shape[1:]))
        return hook

    hooks = [m.register_forward_pre_hook(seen(path)) for m, path, _ in plan]
    try:
        with torch.no_grad():
            call(model, inputs) if call is not None else model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    units: dict[tuple, dict] = {}
    for m, path, kind in plan:
        if path not in shapes:  # built but not called in forward
            continue
        key = (kind, shapes[path], _signature(m))
        if key not in units:
            units[key] = {"name": _unit_name(kind, m, shapes[path]), "kind": kind, "paths": [], "input_shape": shapes[path], "module": m}
        units[key]["paths"].append(path)
    return list(units.values())


def fused_build(ref, device: str = "cpu", dtype: torch.dtype = torch.float32, only=None) -> tuple[nn.Module, dict]:
    """A ModelRef's model with its blocks fused (all that match, or the paths `only` names): built and folded in fp32 on
    `device`, then cast to `dtype`; and fuse_blocks' report. A model with nothing to fuse is refused."""
    net = ref.build(device, torch.float32).eval()
    _, report = fuse_blocks(net, only=only)
    if not report["fused"] and not (only is not None and report["stems"]):
        raise UserInputError(f"--fused: {ref.name} has no ConvFirst block, nor stride-1, equal-width MBConv block, to fuse"
                             + (f" ({len(report['unfused'])} residual blocks, each a strided or width-changing MBConv, or of another structure)"
                                if report["unfused"] else ""))
    return net.to(dtype), report
