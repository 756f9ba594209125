"""ConvNeXt, torchvision's module tree."""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from effkit.models.layers import Conv2dNormActivation, LayerNorm2d, Permute, StochasticDepth, init_trunc_normal, scale_depth, scale_width
from effkit.models.registry import register_model

_SRC = "torchvision.models.{} (weights meta: num_params, _ops in GMACs)"


class CNBlock(nn.Module):
    """dw7x7 → LN → 1x1 (4x) → GELU → 1x1 → layer scale, residual."""

    def __init__(self, dim: int, layer_scale: float, sd_prob: float):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = StochasticDepth(sd_prob, "row")

    def forward(self, x):
        out = self.stochastic_depth(self.layer_scale * self.block(x))
        out += x
        return out


class ConvNeXt(nn.Module):
    def __init__(self, depths, dims, sd_prob=0.0, layer_scale=1e-6, num_classes=1000):
        super().__init__()
        norm = partial(LayerNorm2d, eps=1e-6)
        layers: list[nn.Module] = [Conv2dNormActivation(3, dims[0], kernel_size=4, stride=4, padding=0, norm_layer=norm, activation_layer=None, bias=True)]
        total, block_id = sum(depths), 0
        for i, (d, dim) in enumerate(zip(depths, dims)):
            stage = []
            for _ in range(d):
                stage.append(CNBlock(dim, layer_scale, sd_prob * block_id / (total - 1.0) if total > 1 else 0.0))
                block_id += 1
            layers.append(nn.Sequential(*stage))
            if i + 1 < len(dims):
                layers.append(nn.Sequential(norm(dim), nn.Conv2d(dim, dims[i + 1], kernel_size=2, stride=2)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(norm(dims[-1]), nn.Flatten(1), nn.Linear(dims[-1], num_classes))
        init_trunc_normal(self)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)))


def _convnext(depths, dims, sd_prob, width=1.0, depth=1.0, resolution=224, num_classes=1000):
    # resolution changes only the input: a ConvNeXt's parameters do not depend on it.
    return ConvNeXt(tuple(scale_depth(d, depth) for d in depths), tuple(scale_width(c, width) for c in dims), sd_prob, num_classes=num_classes)


@register_model("convnext", "torchvision.models.convnext_tiny", aliases=("convnext_t",),
                published={"params": 28589128, "gmacs": 4.456, "top1": 82.520, "source": _SRC.format("ConvNeXt_Tiny_Weights.IMAGENET1K_V1")})
def convnext_tiny(**kw):
    return _convnext((3, 3, 9, 3), (96, 192, 384, 768), 0.1, **kw)


@register_model("convnext", "torchvision.models.convnext_small", aliases=("convnext_s",),
                published={"params": 50223688, "gmacs": 8.684, "top1": 83.616, "source": _SRC.format("ConvNeXt_Small_Weights.IMAGENET1K_V1")})
def convnext_small(**kw):
    return _convnext((3, 3, 27, 3), (96, 192, 384, 768), 0.4, **kw)


@register_model("convnext", "torchvision.models.convnext_base", aliases=("convnext_b",),
                published={"params": 88591464, "gmacs": 15.355, "top1": 84.062, "source": _SRC.format("ConvNeXt_Base_Weights.IMAGENET1K_V1")})
def convnext_base(**kw):
    return _convnext((3, 3, 27, 3), (128, 256, 512, 1024), 0.5, **kw)
