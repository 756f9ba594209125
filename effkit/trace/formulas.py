"""Per-op cost formulas: one table keyed by aten op, each a small pure function of shapes.

Conventions (stated in every output through `CONVENTIONS`):

* **MACs** are counted for conv, linear/addmm, mm, bmm, baddbmm (einsum and matmul reach
  these at the aten level) and scaled-dot-product attention (its two products). This is
  what torchvision ("GFLOPS"), timm ("gmacs"), fvcore and pycls ("flops") publish.
* **FLOPs** = 2 x MACs, plus the per-element costs written beside each formula below
  (bias adds, elementwise ops, activations, normalisation, softmax, pooling, reductions).
  Comparisons count as FLOPs; casts and copies cost none.
* **acts** are the output elements of conv / linear / matmul / attention products
  (fvcore and timm's convention); attention counts its score matrix and its output.
* **bytes** are compulsory DRAM traffic: every distinct input element read once and every
  output element written once, at the tensors' own dtypes (a broadcast, stride-0 view is
  read at its real size). Views and reshapes are free. Two explicit exceptions: ops that
  only overwrite their first argument (`WRITE_ONLY_SELF`, e.g. copy_, fill_) do not read
  it, and gathers (`GATHERS`, e.g. embedding) read only the elements they gather.

A formula receives the op's arguments with every tensor replaced by its shape (a tuple),
lists of tensors by lists of shapes, other values unchanged, and `out=` the shape of the
op's first output (None when it has none).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

aten = torch.ops.aten

CONVENTIONS = {
    "macs": "multiply-accumulates of conv, linear, matmul/bmm/einsum and attention products (what torchvision, timm, fvcore and pycls publish as 'flops')",
    "flops": "2 x MACs + documented per-element costs of bias adds, elementwise ops, activations, norms, softmax, pooling and reductions; comparisons count, casts and copies do not",
    "acts": "output elements of conv / linear / matmul / attention products (fvcore and timm convention)",
    "activation_bytes": "bytes of every non-view op's outputs",
    "bytes": "every distinct input element read once and every output written once at its dtype; views are free",
    "intensity": "FLOPs / (bytes read + bytes written)",
    "params": "unique learnable parameters (shared weights once); buffers counted separately",
}


@dataclass(frozen=True, slots=True)
class Cost:
    macs: int = 0
    flops: int = 0
    acts: int = 0


Formula = Callable[..., Cost]
FORMULAS: dict[object, Formula] = {}


def _packets(names: tuple[str, ...]) -> list:
    """The aten overload packets of `names` that exist in this torch (others are skipped)."""
    return [getattr(aten, n) for n in names if hasattr(aten, n)]


def formula(*names: str):
    """Register `fn` as the formula of the aten ops `names`; a second formula for an op is refused."""

    def deco(fn: Formula) -> Formula:
        for op in _packets(names):
            if op in FORMULAS:
                raise ValueError(f"a formula for aten.{op.__name__} is already registered")
            FORMULAS[op] = fn
        return fn

    return deco


def numel(shape) -> int:
    return math.prod(shape) if shape is not None else 0


# --------------------------------------------------------------------------- free ops
# Views, reshapes, metadata and allocations without writes: no FLOPs, no bytes.
FREE = frozenset(_packets((
    "view", "_unsafe_view", "reshape", "_reshape_alias", "expand", "expand_as", "permute", "transpose", "t",
    "squeeze", "unsqueeze", "select", "slice", "as_strided", "alias", "detach", "unbind", "split",
    "split_with_sizes", "chunk", "narrow", "unfold", "diagonal", "lift_fresh", "view_as_real",
    "view_as_complex", "view_as", "empty", "empty_like", "new_empty", "new_empty_strided", "empty_strided",
    "is_same_size", "_local_scalar_dense", "sym_size", "sym_stride", "sym_numel", "sym_storage_offset",
    "is_contiguous", "resize_", "set_", "_has_compatible_shallow_copy_type", "record_stream",
    "_conj", "conj", "_neg_view", "resolve_conj", "resolve_neg", "movedim", "flatten", "as_strided_",
))) | frozenset(getattr(torch.ops.prim, n) for n in ("device", "layout", "dtype") if hasattr(torch.ops.prim, n))


# --------------------------------------------------------------------------- products
@formula("convolution", "_convolution")
def conv(x, w, bias, stride, padding, dilation, transposed, *_, out):
    # normal: each output element is a dot product over (C_in/groups) x kernel = prod(w[1:])
    # transposed: each *input* element is scattered through prod(w[1:]) weights
    macs = (numel(x) if transposed else numel(out)) * numel(w[1:])
    return Cost(macs, 2 * macs + (numel(out) if bias is not None else 0), numel(out))


@formula("convolution_backward")
def conv_backward(grad_out, x, w, bias_sizes, stride, padding, dilation, transposed, output_padding, groups, mask, *, out):
    # grad_input and grad_weight each cost the forward's MACs; grad_bias sums grad_out.
    fwd = (numel(x) if transposed else numel(grad_out)) * numel(w[1:])
    macs = fwd * (int(mask[0]) + int(mask[1]))
    return Cost(macs, 2 * macs + (numel(grad_out) if mask[2] else 0))


@formula("mm")
def mm(a, b, *, out):
    m, k = a
    n = b[-1]
    return Cost(m * k * n, 2 * m * k * n, m * n)


@formula("addmm")
def addmm(bias, a, b, *_, out, **__):
    m, k = a
    n = b[-1]
    return Cost(m * k * n, 2 * m * k * n + m * n, m * n)  # + one add per output for the bias


@formula("bmm")
def bmm(a, b, *, out):
    bs, m, k = a
    n = b[-1]
    return Cost(bs * m * k * n, 2 * bs * m * k * n, bs * m * n)


@formula("baddbmm")
def baddbmm(bias, a, b, *_, out, **__):
    bs, m, k = a
    n = b[-1]
    return Cost(bs * m * k * n, 2 * bs * m * k * n + bs * m * n, bs * m * n)


@formula("mv")
def mv(a, v, *, out):
    m, n = a
    return Cost(m * n, 2 * m * n, m)


@formula("dot", "vdot")
def dot(a, b, *, out):
    return Cost(a[0], 2 * a[0])


# --------------------------------------------------------------------------- attention
SOFTMAX_FLOPS = 5  # per element: max, subtract, exp, sum, divide


def _attn_dims(q, k, v):
    # q (..., L, E), k (..., S, E), v (..., S, Ev); leading dims are batch x heads
    return numel(q[:-2]), q[-2], k[-2], q[-1], v[-1]


@formula("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
         "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
         "_scaled_dot_product_fused_attention_overrideable")
def sdpa(q, k, v, *_, out, **__):
    # QK^T: B*L*S*E MACs, PV: B*L*S*Ev; per score: 1 scale + softmax. Causal masks are
    # counted dense (what the model asks, not what a kernel may skip).
    b, L, S, E, Ev = _attn_dims(q, k, v)
    macs = b * L * S * (E + Ev)
    return Cost(macs, 2 * macs + (1 + SOFTMAX_FLOPS) * b * L * S, b * L * S + b * L * Ev)


@formula("_scaled_dot_product_flash_attention_for_cpu_backward", "_scaled_dot_product_flash_attention_backward",
         "_scaled_dot_product_efficient_attention_backward", "_scaled_dot_product_cudnn_attention_backward",
         "_scaled_dot_product_fused_attention_overrideable_backward")
def sdpa_backward(grad_out, q, k, v, *_, out, **__):
    # recompute S=QK^T (E), dV=P^T dO (Ev), dP=dO V^T (Ev), dQ=dS K (E), dK=dS^T Q (E);
    # per score: softmax recompute (1 + 5) and dS = P * (dP - rowsum) (2)
    b, L, S, E, Ev = _attn_dims(q, k, v)
    macs = b * L * S * (3 * E + 2 * Ev)
    return Cost(macs, 2 * macs + 8 * b * L * S)


@formula("_native_multi_head_attention")
def native_mha(q, k, v, embed_dim, num_heads, qkv_w, qkv_b, proj_w, proj_b, *_, out, **__):
    # nn.MultiheadAttention's fused inference path: q/k/v projections, the two attention
    # products, the output projection; counted as those linears + SDPA would be.
    b, L, E = q
    S = k[1]
    macs_proj = b * L * E * E + 2 * b * S * E * E + b * L * E * E  # q, k, v, out projections
    scores = b * num_heads * L * S
    macs_attn = b * L * S * 2 * E  # QK^T and PV over all heads (E = heads x head dim)
    bias = (b * L * E + 2 * b * S * E if qkv_b is not None else 0) + (b * L * E if proj_b is not None else 0)
    macs = macs_proj + macs_attn
    acts = (b * L * E + 2 * b * S * E) + scores + b * L * E + b * L * E  # q, k, v; scores; attention out; projection
    return Cost(macs, 2 * macs + bias + (1 + SOFTMAX_FLOPS) * scores, acts)


# --------------------------------------------------------------------------- elementwise
def _pointwise(cost: int) -> Formula:
    def f(*_, out, **__):
        return Cost(flops=cost * numel(out))

    f.__doc__ = f"{cost} FLOP(s) per output element"
    return f


# FLOPs per output element. Transcendentals (exp, log, erf, tanh, sqrt) count 1; compound
# activations count the arithmetic of their defining formula.
POINTWISE_COSTS: dict[int, tuple[str, ...]] = {
    0: ("clone", "_to_copy", "copy", "contiguous", "cat", "stack", "constant_pad_nd", "zeros", "ones", "full",
        "zeros_like", "ones_like", "full_like", "new_zeros", "new_ones", "new_full", "fill", "scalar_tensor",
        "arange", "index_select", "gather", "index", "_unsafe_index", "index_put", "index_put_", "scatter",
        "scatter_", "repeat", "roll", "flip", "slice_scatter", "select_scatter", "as_strided_scatter",
        "tril", "triu", "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "lift_fresh_copy",
        "_unsafe_view_copy", "masked_scatter", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle",
        "native_channel_shuffle", "_pin_memory", "copy_", "embedding", "bitwise_not", "logical_not", "randn", "rand", "normal",
        "uniform", "uniform_", "normal_", "randn_like", "rand_like", "randint", "embedding_dense_backward",
        "select_backward", "slice_backward", "index_select_backward", "diagonal_backward", "unfold_backward",
        "as_strided_backward", "new_zeros_with_same_feature_meta"),  # copies, fills, gathers, view backwards
    # one add / multiply / compare / select / transcendental per element
    1: ("add", "add_", "sub", "sub_", "rsub", "mul", "mul_", "div", "div_", "neg", "neg_", "abs", "abs_",
        "relu", "relu_", "threshold", "threshold_", "threshold_backward", "clamp", "clamp_", "clamp_min",
        "clamp_min_", "clamp_max", "clamp_max_", "hardtanh", "hardtanh_", "hardtanh_backward", "maximum",
        "minimum", "eq", "ne", "lt", "le", "gt", "ge", "where", "masked_fill", "masked_fill_", "sign",
        "exp", "exp_", "log", "log_", "sqrt", "sqrt_", "rsqrt", "rsqrt_", "reciprocal", "reciprocal_",
        "erf", "erf_", "tanh", "tanh_", "sin", "cos", "pow", "pow_", "square", "floor", "ceil", "round",
        "trunc", "fmod", "remainder", "logical_and", "logical_or", "bernoulli", "bernoulli_", "relu6",
        "log1p", "expm1", "exp2", "logical_xor", "isnan", "isinf", "nan_to_num", "fill_", "zero_"),
    2: ("leaky_relu", "leaky_relu_", "leaky_relu_backward", "native_dropout", "native_dropout_backward",
        "hardsigmoid_backward", "lerp", "lerp_"),  # compare+scale; mask+scale
    3: ("addcmul", "addcmul_", "addcdiv", "addcdiv_", "sigmoid_backward", "tanh_backward", "hardsigmoid",
        "hardsigmoid_", "softplus", "elu_backward"),  # e.g. sigmoid': g*y*(1-y); hardsigmoid: relu6(x+3)/6
    4: ("sigmoid", "sigmoid_", "hardswish", "hardswish_", "hardswish_backward", "elu", "elu_"),  # 1/(1+exp(-x)); x*relu6(x+3)/6
    5: ("silu", "silu_", "softplus_backward"),  # x * sigmoid(x)
    9: ("silu_backward", "mish", "mish_"),  # sigmoid (4) + s*(1 + x*(1-s)) (5)
}
for _cost, _names in POINTWISE_COSTS.items():
    formula(*_names)(_pointwise(_cost))


@formula("gelu", "gelu_")
def gelu(x, approximate="none", *, out):
    # erf form 0.5*x*(1+erf(x/sqrt2)): scale, erf, add, mul, mul = 5;
    # tanh form 0.5*x*(1+tanh(c*(x+0.044715x^3))): cube (2), mul, add, mul, tanh, add, mul, mul = 9
    return Cost(flops=(9 if approximate == "tanh" else 5) * numel(out))


@formula("gelu_backward")
def gelu_backward(grad, x, approximate="none", *, out):
    # erf form: cdf (4) + x*pdf (exp, square, 2 mul = 4) + add, mul by grad = 10; tanh form 16
    return Cost(flops=(16 if approximate == "tanh" else 10) * numel(out))


# --------------------------------------------------------------------------- reductions
# 1 FLOP per input element (the adds or compares that fold it in); mean also divides once per output.
@formula("sum", "amax", "amin", "max", "min", "argmax", "argmin", "prod", "any", "all", "cumsum", "logical_any")
def reduce(x, *_, out, **__):
    return Cost(flops=numel(x))


@formula("mean")
def mean(x, *_, out, **__):
    return Cost(flops=numel(x) + numel(out))


@formula("var", "std", "var_mean", "std_mean")
def var(x, *_, out, **__):
    # mean (1/elem) + (x - mean)^2 summed (3/elem)
    return Cost(flops=4 * numel(x))


@formula("linalg_vector_norm", "norm")
def norm(x, *_, out, **__):
    return Cost(flops=2 * numel(x))  # square (or abs) and add per element


@formula("_softmax", "_log_softmax", "_safe_softmax", "softmax", "log_softmax")
def softmax(x, *_, out, **__):
    return Cost(flops=SOFTMAX_FLOPS * numel(x))


@formula("_softmax_backward_data", "_log_softmax_backward_data")
def softmax_backward(grad, y, *_, out, **__):
    return Cost(flops=4 * numel(grad))  # g*y, row sum, y*sum, subtract


@formula("logsumexp")
def logsumexp(x, *_, out, **__):
    return Cost(flops=4 * numel(x) + numel(out))  # max, subtract, exp, add; log per output


# --------------------------------------------------------------------------- normalisation
NORM_STATS_FLOPS = 4  # per element: mean (1 add) + variance (subtract, square, add)
NORM_APPLY_FLOPS = 4  # per element: (x - mean) * rstd * weight + bias (2 without affine)
NORM_BACKWARD_FLOPS = 8  # per element: xhat, two row sums, the dx combination, dweight and dbias folds


def _norm_cost(x, weight, stats: bool) -> Cost:
    apply = NORM_APPLY_FLOPS if weight is not None else NORM_APPLY_FLOPS - 2
    return Cost(flops=(apply + (NORM_STATS_FLOPS if stats else 0)) * numel(x))


@formula("native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_functional")
def batch_norm(x, weight, bias, running_mean, running_var, *rest, out, **__):
    # training flag: native_batch_norm(.., training, momentum, eps); legit(.., rm, rv, training, ...)
    # legit without running stats has signature (x, w, b, training, momentum, eps)
    training = next((r for r in (running_mean, running_var, *rest) if isinstance(r, bool)), True)
    return _norm_cost(x, weight, training)


@formula("_native_batch_norm_legit_no_training", "_batch_norm_no_update")
def batch_norm_eval(x, weight, *_, out, **__):
    return _norm_cost(x, weight, False)


@formula("_batch_norm_with_update", "_batch_norm_with_update_functional", "cudnn_batch_norm", "miopen_batch_norm")
def batch_norm_train(x, weight, *rest, out, **__):
    # cudnn/miopen: (x, w, b, running_mean, running_var, training, ...); the _with_update ops always update
    training = rest[3] if len(rest) > 3 and isinstance(rest[3], bool) else True
    return _norm_cost(x, weight, training)


@formula("native_layer_norm", "native_group_norm", "_fused_rms_norm")
def layer_norm(x, shape_or_weight, *rest, out, **__):
    # layer_norm(x, normalized_shape, weight, bias, eps); group_norm(x, weight, bias, N, C, HxW, groups, eps)
    weight = rest[0] if isinstance(shape_or_weight, (list, tuple)) and shape_or_weight and isinstance(shape_or_weight[0], int) and len(rest) else shape_or_weight
    return _norm_cost(x, weight, True)


@formula("native_batch_norm_backward", "batch_norm_backward", "native_layer_norm_backward",
         "native_group_norm_backward", "cudnn_batch_norm_backward", "miopen_batch_norm_backward", "_fused_rms_norm_backward")
def norm_backward(grad, x, *_, out, **__):
    return Cost(flops=NORM_BACKWARD_FLOPS * numel(x))


# --------------------------------------------------------------------------- pooling
def _window(kernel_size) -> int:
    return numel(kernel_size) if isinstance(kernel_size, (list, tuple)) else kernel_size * kernel_size


@formula("max_pool2d_with_indices", "max_pool2d", "max_pool3d_with_indices", "max_pool1d", "mkldnn_max_pool2d")
def max_pool(x, kernel_size, *_, out, **__):
    return Cost(flops=numel(out) * _window(kernel_size))  # k*k compares per output


@formula("max_pool2d_with_indices_backward", "max_pool3d_with_indices_backward")
def max_pool_backward(grad, x, *_, out, **__):
    return Cost(flops=numel(grad))  # one scatter-add per output gradient


@formula("avg_pool2d", "avg_pool3d", "avg_pool1d")
def avg_pool(x, kernel_size, *_, out, **__):
    return Cost(flops=numel(out) * (_window(kernel_size) + 1))  # k*k adds + one divide per output


@formula("avg_pool2d_backward", "avg_pool3d_backward")
def avg_pool_backward(grad, x, kernel_size, *_, out, **__):
    return Cost(flops=numel(grad) * (_window(kernel_size) + 1))


@formula("_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "adaptive_avg_pool1d", "mkldnn_adaptive_avg_pool2d")
def adaptive_avg_pool(x, output_size, *_, out, **__):
    return Cost(flops=numel(x) + numel(out))  # every input added once, one divide per output


@formula("_adaptive_avg_pool2d_backward", "_adaptive_avg_pool3d_backward", "adaptive_max_pool2d_backward")
def adaptive_pool_backward(grad, x, *_, out, **__):
    return Cost(flops=numel(x))  # each input gradient is one divided (or routed) output gradient


@formula("adaptive_max_pool2d")
def adaptive_max_pool(x, output_size, *_, out, **__):
    return Cost(flops=numel(x))


@formula("upsample_bilinear2d", "_upsample_bilinear2d_aa")
def upsample_bilinear(x, *_, out, **__):
    return Cost(flops=11 * numel(out))  # 4 weights (4), 4 multiplies - fold to 3 adds + lerp weights (4)


# --------------------------------------------------------------------------- byte-rule exceptions
# These overwrite their first argument without reading it.
WRITE_ONLY_SELF = frozenset(_packets(("copy_", "fill_", "zero_", "uniform_", "normal_", "bernoulli_")))
# These read from their first argument only the elements they gather (as many as they write).
GATHERS = frozenset(_packets(("embedding", "index_select", "gather", "index", "_unsafe_index")))
