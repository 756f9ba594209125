"""torch.autocast's CUDA op policy, applied by the tracer itself on meta (fake) tensors.

Autocast does not act on meta tensors, and a CPU build of torch cannot make fake CUDA
tensors, so a meta trace of a mixed precision applies the policy itself. Autocast acts on
the operators a model calls (conv2d, linear, matmul, layer_norm, softmax ...), before their
own dtype checks, so the emulation is a TorchFunctionMode that sees those calls: it casts
their floating tensor arguments as CUDA autocast would and then calls them. The casts go
down to the recorder as `aten._to_copy` ops marked as casts, each a row with its bytes.
Traces on real tensors (--device cpu or cuda) run under torch.autocast instead and record
the casts it makes; that is exact, and on the CPU it is the CPU's policy, which differs
(the CPU runs layer_norm on low-precision input, CUDA in float32).

The lists are PyTorch's (aten/src/ATen/autocast_mode.h: AT_FORALL_LOWER_PRECISION_FP,
AT_FORALL_FP32, AT_FORALL_FP32_SET_OPT_DTYPE, AT_FORALL_PROMOTE), by the names the Python
API gives those operators. Weights (leaf tensors that require grad) are cast once per
forward, as autocast's cast cache does.
"""
from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

# run in the lower precision (bf16 or fp16)
LOWER = frozenset((
    "conv1d", "conv2d", "conv3d", "conv_tbc", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "convolution", "_convolution",
    "prelu", "addmm", "addmv", "addr", "matmul", "__matmul__", "__rmatmul__", "einsum", "mm", "mv", "linalg_vecdot", "linear", "addbmm",
    "baddbmm", "bmm", "chain_matmul", "multi_dot", "lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell", "scaled_dot_product_attention",
))
# run in float32 (and give float32 outputs); the second group are fp32_set_opt_dtype ops
FP32 = frozenset((
    "acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p", "reciprocal", "rsqrt", "sinh", "tan", "pow",
    "__pow__", "__rpow__", "softplus", "layer_norm", "group_norm", "frobenius_norm", "nuclear_norm", "cosine_similarity", "poisson_nll_loss",
    "cosine_embedding_loss", "nll_loss", "hinge_embedding_loss", "kl_div", "l1_loss", "smooth_l1_loss", "huber_loss", "mse_loss",
    "margin_ranking_loss", "multilabel_margin_loss", "soft_margin_loss", "triplet_margin_loss", "multi_margin_loss",
    "binary_cross_entropy_with_logits", "dist", "pdist", "cdist", "renorm", "logsumexp", "interpolate", "upsample", "upsample_nearest",
    "upsample_bilinear", "cross_entropy",
    "prod", "softmax", "log_softmax", "cumprod", "cumsum", "vector_norm", "matrix_norm", "norm", "sum",
))
# run in the widest floating dtype among their arguments
PROMOTE = frozenset(("addcdiv", "addcmul", "atan2", "bilinear", "cross", "dot", "vdot", "grid_sample", "index_put", "tensordot", "scatter_add"))


def _eligible(t) -> bool:
    return isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64


def policy_of(name: str) -> str | None:
    """'lower', 'fp32', 'promote' or None (the op runs in whatever dtypes it is given)."""
    name = name.rstrip("_") if not name.startswith("__") else name
    return "lower" if name in LOWER else "fp32" if name in FP32 else "promote" if name in PROMOTE else None


class CudaAutocastEmulation(TorchFunctionMode):
    """Cast the floating arguments of each operator the model calls as CUDA autocast would.

    `recorder.casting` is set while a cast runs, so the recorder marks the copy as autocast's."""

    def __init__(self, dtype: torch.dtype, recorder):
        super().__init__()
        self.dtype = dtype
        self.recorder = recorder
        self.cache: dict[int, torch.Tensor] = {}  # weight casts, once per forward

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        policy = policy_of(name)
        if policy is None or name.endswith("_") and not name.startswith("__"):  # in-place ops do not autocast
            return func(*args, **kwargs)
        tensors = [t for t in _flat(args) + _flat(list(kwargs.values())) if _eligible(t)]
        if policy == "lower":
            to = self.dtype
        elif policy == "fp32":
            to = torch.float32
        else:
            to = max((t.dtype for t in tensors), key=lambda d: torch.finfo(d).bits, default=None)
        if to is None:
            return func(*args, **kwargs)
        args = tuple(self._walk(a, to) for a in args)
        kwargs = {k: self._walk(v, to) for k, v in kwargs.items()}
        return func(*args, **kwargs)

    def _walk(self, a, to):
        if isinstance(a, torch.Tensor):
            return self._cast(a, to)
        if isinstance(a, (list, tuple)) and any(isinstance(x, torch.Tensor) for x in a):
            return type(a)(self._walk(x, to) for x in a)
        return a

    def _cast(self, t: torch.Tensor, to: torch.dtype) -> torch.Tensor:
        if not _eligible(t) or t.dtype == to:
            return t
        weight = t.is_leaf and t.requires_grad
        hit = self.cache.get(id(t)) if weight else None
        if hit is not None and hit.dtype == to:
            return hit
        self.recorder.casting = True
        try:
            out = t.to(to)
        finally:
            self.recorder.casting = False
        if weight:
            self.cache[id(t)] = out
        return out


def _flat(xs) -> list:
    out = []
    for x in xs:
        if isinstance(x, (list, tuple)):
            out += _flat(x)
        else:
            out.append(x)
    return out
