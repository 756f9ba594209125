"""The two block designs from the convnet-efficiency literature, as blocks and as small
ImageNet-style networks built from them.

* ConvFirst: grouped kxk conv (group width 8) → BN → 1x1 expand → BN → SiLU → 1x1 project → BN → residual.
  The spatial conv runs at the narrow width, before the expansion.
* MBConv: 1x1 expand → BN → SiLU → depthwise (or grouped) kxk conv → BN → SiLU → 1x1 project → BN → residual.
  The spatial conv runs at the expanded width.

A stride or a width change puts a 1x1 conv + BN on the shortcut. The networks: a 3x3 stride-2 stem
(32 channels), four stages of widths (48, 96, 192, 384) and depths (2, 2, 6, 2), each starting with a
stride-2 block, global average pooling and a linear classifier.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from effkit.models.layers import Conv2dNormActivation, init_conv_bn_linear, scale_depth, scale_width
from effkit.models.registry import register_model


def _conv_bn(c_in, c_out, k=1, stride=1, groups=1, act=False) -> nn.Sequential:
    return Conv2dNormActivation(c_in, c_out, kernel_size=k, stride=stride, groups=groups, activation_layer=nn.SiLU if act else None)


class _Residual(nn.Module):
    def _shortcut(self, c_in, c_out, stride):
        return None if stride == 1 and c_in == c_out else _conv_bn(c_in, c_out, 1, stride)

    def forward(self, x):
        y = self.body(x)
        return y + (x if self.shortcut is None else self.shortcut(x))


class ConvFirstBlock(_Residual):
    """grouped kxk (group width 8) → BN → 1x1 expand → BN → SiLU → 1x1 project → BN, + shortcut."""

    def __init__(self, c_in, c_out=None, k=3, expand=4, stride=1, group_width=8):
        super().__init__()
        c_out = c_out or c_in
        hidden = c_in * expand
        self.body = nn.Sequential(
            _conv_bn(c_in, c_in, k, stride, groups=max(1, c_in // group_width)),
            _conv_bn(c_in, hidden, 1, act=True),
            _conv_bn(hidden, c_out, 1),
        )
        self.shortcut = self._shortcut(c_in, c_out, stride)


class MBConvBlock(_Residual):
    """1x1 expand → BN → SiLU → depthwise (group_width None) or grouped kxk → BN → SiLU → 1x1 project → BN, + shortcut."""

    def __init__(self, c_in, c_out=None, k=3, expand=4, stride=1, group_width=None):
        super().__init__()
        c_out = c_out or c_in
        hidden = c_in * expand
        self.body = nn.Sequential(
            _conv_bn(c_in, hidden, 1, act=True),
            _conv_bn(hidden, hidden, k, stride, groups=hidden if group_width is None else max(1, hidden // group_width), act=True),
            _conv_bn(hidden, c_out, 1),
        )
        self.shortcut = self._shortcut(c_in, c_out, stride)


class BlockNet(nn.Module):
    """stem → 4 stages of one block type (first block of each stage strides 2) → pool → linear."""

    def __init__(self, block, widths=(48, 96, 192, 384), depths=(2, 2, 6, 2), stem=32, num_classes=1000, **block_kw):
        super().__init__()
        self.stem = Conv2dNormActivation(3, stem, kernel_size=3, stride=2, activation_layer=nn.SiLU)
        c, stages = stem, []
        for w, d in zip(widths, depths):
            stages.append(nn.Sequential(*[block(c if i == 0 else w, w, stride=2 if i == 0 else 1, **block_kw) for i in range(d)]))
            c = w
        self.stages = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        init_conv_bn_linear(self)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.stages(self.stem(x))), 1))


def _net(block, width, depth, resolution, num_classes, **kw):
    m = BlockNet(block, tuple(scale_width(w, width) for w in (48, 96, 192, 384)), tuple(scale_depth(d, depth) for d in (2, 2, 6, 2)),
                 scale_width(32, width), num_classes, **kw)
    m.input_shape = (3, resolution, resolution)
    return m


@register_model("block-design", "effkit: ConvFirst blocks (k=3, expansion 4, group width 8)")
def convfirst_net(width=1.0, depth=1.0, resolution=224, num_classes=1000):
    return _net(ConvFirstBlock, width, depth, resolution, num_classes)


@register_model("block-design", "effkit: MBConv blocks (k=3, expansion 4, depthwise)")
def mbconv_net(width=1.0, depth=1.0, resolution=224, num_classes=1000):
    return _net(MBConvBlock, width, depth, resolution, num_classes)
