"""Weight layouts the Triton kernels read, made in PyTorch (no Triton needed: the modules build them at swap time)."""
from __future__ import annotations

import torch


def block_c_of(c: int) -> int:
    """The channel tile: the block's width rounded up to a power of two (at least 16, a tensor-core dot's minimum)."""
    return max(16, 1 << (c - 1).bit_length())


def block_diagonal_pairs(w1: torch.Tensor, block_c: int) -> torch.Tensor:
    """The grouped conv's weight [C, GW, k, k] as [k², block_c/16, 16, 16]: for each tap and each chunk q of 16 channels,
    the 16x16 matrix from input channel q·16 + i to output channel q·16 + o, zero outside a group (GW must divide 16).
    The tensor-core grouped conv multiplies the input's chunks by these (twice the MACs for GW = 8, half of them zeros)."""
    c, gw, k, _ = w1.shape
    if 16 % gw:
        raise ValueError(f"block_diagonal_pairs needs a group width dividing 16, got {gw}")
    out = torch.zeros(k * k, block_c // 16, 16, 16, dtype=w1.dtype, device=w1.device)
    c_out = torch.arange(c, device=w1.device)
    for j in range(gw):
        c_in = (c_out // gw) * gw + j  # the j-th input of c_out's group, in the same chunk of 16
        out[:, c_out // 16, c_in % 16, c_out % 16] = w1[:, j].reshape(c, k * k).T
    return out
