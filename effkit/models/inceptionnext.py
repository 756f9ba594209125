"""InceptionNeXt (Yu et al., 2023): ConvNeXt's meta-block with an Inception depthwise token mixer,
timm's module tree (inception_next_tiny)."""
from __future__ import annotations

import torch
import torch.nn as nn

from effkit.models.layers import init_trunc_normal, scale_depth, scale_width
from effkit.models.registry import register_model


class InceptionDWConv2d(nn.Module):
    """Channels split four ways: identity, 3x3, 1x11 and 11x1 depthwise convs (each 1/8 of the channels)."""

    def __init__(self, c: int, square_k: int = 3, band_k: int = 11, branch_ratio: float = 0.125):
        super().__init__()
        g = int(c * branch_ratio)
        self.dwconv_hw = nn.Conv2d(g, g, square_k, padding=square_k // 2, groups=g)
        self.dwconv_w = nn.Conv2d(g, g, (1, band_k), padding=(0, band_k // 2), groups=g)
        self.dwconv_h = nn.Conv2d(g, g, (band_k, 1), padding=(band_k // 2, 0), groups=g)
        self.split_indexes = (c - 3 * g, g, g, g)

    def forward(self, x):
        ident, hw, w, h = torch.split(x, self.split_indexes, dim=1)
        return torch.cat((ident, self.dwconv_hw(hw), self.dwconv_w(w), self.dwconv_h(h)), dim=1)


class ConvMlp(nn.Module):
    def __init__(self, c: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(c, hidden, 1)
        self.norm = nn.Identity()
        self.act = nn.GELU()
        self.drop = nn.Dropout(0.0)
        self.fc2 = nn.Conv2d(hidden, c, 1)

    def forward(self, x):
        return self.fc2(self.drop(self.act(self.norm(self.fc1(x)))))


class MetaNeXtBlock(nn.Module):
    """token mixer → BN → conv MLP → layer scale, residual."""

    def __init__(self, c: int, mlp_ratio: float, ls_init: float = 1e-6):
        super().__init__()
        self.token_mixer = InceptionDWConv2d(c)
        self.norm = nn.BatchNorm2d(c)
        self.mlp = ConvMlp(c, int(mlp_ratio * c))
        self.gamma = nn.Parameter(ls_init * torch.ones(c))
        self.drop_path = nn.Identity()

    def forward(self, x):
        y = self.mlp(self.norm(self.token_mixer(x)))
        return self.drop_path(y.mul(self.gamma.reshape(1, -1, 1, 1))) + x


class MetaNeXtStage(nn.Module):
    def __init__(self, c_in, c_out, downsample: bool, depth: int, mlp_ratio: float):
        super().__init__()
        self.downsample = nn.Sequential(nn.BatchNorm2d(c_in), nn.Conv2d(c_in, c_out, 2, stride=2)) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[MetaNeXtBlock(c_out, mlp_ratio) for _ in range(depth)])

    def forward(self, x):
        return self.blocks(self.downsample(x))


class MlpClassifierHead(nn.Module):
    """global average pool → fc (3x) → GELU → LayerNorm → fc."""

    def __init__(self, c: int, num_classes: int, mlp_ratio: float = 3):
        super().__init__()
        hidden = int(mlp_ratio * c)
        self.fc1 = nn.Linear(c, hidden)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(hidden, eps=1e-6)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.drop = nn.Dropout(0.0)

    def forward(self, x):
        return self.fc2(self.drop(self.norm(self.act(self.fc1(x.mean((2, 3)))))))


class InceptionNeXt(nn.Module):
    def __init__(self, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), mlp_ratios=(4, 4, 4, 3), num_classes=1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, stride=4), nn.BatchNorm2d(dims[0]))
        stages, c = [], dims[0]
        for i, (d, w, r) in enumerate(zip(depths, dims, mlp_ratios)):
            stages.append(MetaNeXtStage(c, w, i > 0, d, r))
            c = w
        self.stages = nn.Sequential(*stages)
        self.head = MlpClassifierHead(c, num_classes)
        init_trunc_normal(self)

    def forward(self, x):
        return self.head(self.stages(self.stem(x)))


@register_model("inceptionnext", "timm inception_next_tiny (Yu et al., 2023)", aliases=("inceptionnext_t",),
                published={"params": 28055680, "top1": 82.3, "source": "params: timm inception_next_tiny (read on the GPU machine); top-1: InceptionNeXt paper, Table 2"})
def inception_next_tiny(width=1.0, depth=1.0, resolution=224, num_classes=1000):
    m = InceptionNeXt(tuple(scale_depth(d, depth) for d in (3, 3, 9, 3)), tuple(scale_width(c, width) for c in (96, 192, 384, 768)), num_classes=num_classes)
    m.input_shape = (3, resolution, resolution)
    return m
