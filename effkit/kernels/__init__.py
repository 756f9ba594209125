"""Block-fused kernels that test the fusion what-if against reality (an optional extra: `pip install effkit[kernels]`).

`fuse_blocks(model)` replaces every ConvFirst block and every stride-1, equal-width MBConv residual block (effkit's
`convfirst_net` and `mbconv_net`, or a user's model with the same structure) by a module that runs the whole block
as one Triton kernel on CUDA, with the BatchNorms folded into the convolutions (`fold_bn`). Without Triton, or on the
CPU, the fused module computes the same folded math in PyTorch (`reference_convfirst`, `reference_mbconv`), so a
model can be swapped and checked anywhere. A ConvFirst block that strides or changes width (a 1x1 conv on the
shortcut: the first block of each of the zoo's four stages) is fused with its shortcut in the same kernel
(`strided=False` leaves it); an MBConv block of that kind stays unfused (no strided MBConv kernel). The network's
stem (a dense k×k conv on few input channels → BN → activation: the 3×3 RGB stem) becomes `FusedConvAct`, one im2col
dot a tile of pixels (`stem=False` leaves it). `fuse_blocks(model, only=paths)` fuses only the blocks and stems named;
`fusion_units(model, inputs)` lists what it would fuse, grouped by structure and input shape (one of each timed alone
stands for all: `effkit profile --fused` does so to pick the blocks whose kernel beats torch.compile).
"""
from effkit.kernels.fold import (FusedConvAct, FusedConvFirst, FusedMBConv, block_diagonal_pairs, fold_bn, fuse_blocks, fused_build,
                                 fusion_units, reference_conv_act, reference_convfirst, reference_mbconv, triton_available)

__all__ = ["FusedConvAct", "FusedConvFirst", "FusedMBConv", "block_diagonal_pairs", "fold_bn", "fuse_blocks", "fused_build", "fusion_units",
           "reference_conv_act", "reference_convfirst", "reference_mbconv", "triton_available"]
