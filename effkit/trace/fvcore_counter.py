"""fvcore's per-module counts, for showing beside ours.

fvcore's convention: its "flops" are MACs of the ops it has handlers for (conv, linear,
matmul, einsum, batchnorm/groupnorm/layernorm/upsample at 1 per element...), and ops
without a handler are skipped (listed in `unsupported`). It needs real tensors (it
runs torch.jit.trace).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn as nn

from effkit.errors import UserInputError

from effkit.trace.result import FVCORE_CONVENTION as CONVENTION  # noqa: F401


@dataclass(frozen=True)
class FvcoreCounts:
    flops: dict  # module path ('' = whole model) -> fvcore flops (MACs), children included
    acts: dict  # module path -> fvcore activation count, children included
    unsupported: dict  # op -> count

    def direct(self, table: dict, path: str, children: list[str]) -> int:
        """The count of a module minus its children's: its own direct ops."""
        return table.get(path, 0) - sum(table.get(c, 0) for c in children)


def fvcore_counts(model: nn.Module, inputs: tuple) -> FvcoreCounts:
    try:
        from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis
    except ImportError as e:  # pragma: no cover - fvcore is a dependency
        raise UserInputError("--counter fvcore needs fvcore: pip install fvcore") from e
    if any(t.device.type == "meta" or type(t).__name__ == "FakeTensor" for t in inputs):
        raise UserInputError("--counter fvcore needs real tensors (fvcore runs the model); use --device cpu")
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with torch.no_grad():
        fca = FlopCountAnalysis(model, inputs).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        aca = ActivationCountAnalysis(model, inputs).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        flops, acts = dict(fca.by_module()), dict(aca.by_module())
        unsupported = dict(fca.unsupported_ops())
    return FvcoreCounts(flops, acts, unsupported)
