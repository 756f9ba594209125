"""Block-fused kernels that test the fusion what-if against reality (an optional extra: `pip install effkit[kernels]`).

`fuse_blocks(model)` replaces every stride-1, equal-width ConvFirst and MBConv residual block (effkit's
`convfirst_net` and `mbconv_net`, or a user's model with the same structure) by a module that runs the whole block
as one Triton kernel on CUDA, with the BatchNorms folded into the convolutions (`fold_bn`). Without Triton, or on the
CPU, the fused module computes the same folded math in PyTorch (`reference_convfirst`, `reference_mbconv`), so a
model can be swapped and checked anywhere. Strided blocks and blocks whose width changes (a 1x1 conv on the
shortcut) stay unfused by default: in the zoo's networks that is the first block of each of the four stages.
`fuse_blocks(model, strided=True)` fuses the ConvFirst ones too (checked in Triton's interpreter, not yet on a GPU).
"""
from effkit.kernels.fold import (FusedConvFirst, FusedMBConv, block_diagonal_pairs, fold_bn, fuse_blocks, fused_build, reference_convfirst, reference_mbconv,
                                 triton_available)

__all__ = ["FusedConvFirst", "FusedMBConv", "block_diagonal_pairs", "fold_bn", "fuse_blocks", "fused_build", "reference_convfirst", "reference_mbconv", "triton_available"]
