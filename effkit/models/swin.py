"""Swin Transformer (Liu et al., 2021), torchvision's module tree (swin_t): patch embedding,
shifted-window attention with a relative position bias, patch merging."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from effkit.models.layers import Permute, StochasticDepth, init_trunc_normal, scale_depth
from effkit.models.registry import register_model
from effkit.models.vit import MLPBlock


class PatchMerging(nn.Module):
    """2x2 neighbourhoods concatenated (4C), normalised, projected to 2C."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x):  # x: N, H, W, C
        h, w = x.shape[-3], x.shape[-2]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :], x[..., 1::2, 1::2, :]], -1)
        return self.reduction(self.norm(x))


def window_attention(x, qkv, proj, bias, window: int, heads: int, shift: int):
    """Multi-head self-attention inside (shifted) windows of `window` x `window` tokens; x: N, H, W, C."""
    n, h, w, c = x.shape
    pad_r, pad_b = (window - w % window) % window, (window - h % window) % window
    x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    _, ph, pw, _ = x.shape
    sh, sw = (0 if window >= ph else shift), (0 if window >= pw else shift)
    if sh + sw > 0:
        x = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2))
    nw = (ph // window) * (pw // window)
    x = x.view(n, ph // window, window, pw // window, window, c).permute(0, 1, 3, 2, 4, 5).reshape(n * nw, window * window, c)
    t = x.size(1)
    q, k, v = F.linear(x, qkv.weight, qkv.bias).reshape(x.size(0), t, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    attn = (q * (c // heads) ** -0.5).matmul(k.transpose(-2, -1)) + bias
    if sh + sw > 0:  # tokens that the roll brought together from different regions do not attend to each other
        mask = x.new_zeros((ph, pw))
        region = 0
        for hs in ((0, -window), (-window, -sh), (-sh, None)):
            for ws in ((0, -window), (-window, -sw), (-sw, None)):
                mask[hs[0]:hs[1], ws[0]:ws[1]] = region
                region += 1
        mask = mask.view(ph // window, window, pw // window, window).permute(0, 2, 1, 3).reshape(nw, t)
        mask = mask.unsqueeze(1) - mask.unsqueeze(2)
        mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
        attn = (attn.view(x.size(0) // nw, nw, heads, t, t) + mask.unsqueeze(1).unsqueeze(0)).view(-1, heads, t, t)
    x = F.softmax(attn, dim=-1).matmul(v).transpose(1, 2).reshape(x.size(0), t, c)
    x = F.linear(x, proj.weight, proj.bias)
    x = x.view(n, ph // window, pw // window, window, window, c).permute(0, 1, 3, 2, 4, 5).reshape(n, ph, pw, c)
    if sh + sw > 0:
        x = torch.roll(x, shifts=(sh, sw), dims=(1, 2))
    return x[:, :h, :w, :].contiguous()


class ShiftedWindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, shift: int, heads: int):
        super().__init__()
        self.window_size, self.shift_size, self.num_heads = [window, window], [shift, shift], heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        coords = torch.stack([ys.flatten(), xs.flatten()])  # 2, T
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)  # T, T, 2, shifted to be >= 0
        self.register_buffer("relative_position_index", (rel[..., 0] * (2 * window - 1) + rel[..., 1]).flatten())

    def forward(self, x):
        t = self.window_size[0] * self.window_size[1]
        bias = self.relative_position_bias_table[self.relative_position_index].view(t, t, -1).permute(2, 0, 1).contiguous().unsqueeze(0)
        return window_attention(x, self.qkv, self.proj, bias, self.window_size[0], self.num_heads, self.shift_size[0])


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim, heads, window, shift, sd_prob, mlp_ratio=4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ShiftedWindowAttention(dim, window, shift, heads)
        self.stochastic_depth = StochasticDepth(sd_prob, "row")
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), 0.0)

    def forward(self, x):
        x = x + self.stochastic_depth(self.attn(self.norm1(x)))
        return x + self.stochastic_depth(self.mlp(self.norm2(x)))


class SwinTransformer(nn.Module):
    def __init__(self, patch=4, dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), window=7, sd_prob=0.2, num_classes=1000):
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, dim, patch, stride=patch), Permute([0, 2, 3, 1]), nn.LayerNorm(dim))]
        total, block_id = sum(depths), 0
        for i, (d, h) in enumerate(zip(depths, heads)):
            c = dim * 2**i
            stage = []
            for j in range(d):
                stage.append(SwinTransformerBlock(c, h, window, 0 if j % 2 == 0 else window // 2, sd_prob * block_id / (total - 1)))
                block_id += 1
            layers.append(nn.Sequential(*stage))
            if i < len(depths) - 1:
                layers.append(PatchMerging(c))
        self.features = nn.Sequential(*layers)
        c = dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(c)
        self.permute = Permute([0, 3, 1, 2])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.head = nn.Linear(c, num_classes)
        init_trunc_normal(self, (nn.Linear,))

    def forward(self, x):
        return self.head(self.flatten(self.avgpool(self.permute(self.norm(self.features(x))))))


@register_model("swin", "torchvision.models.swin_t", aliases=("swin_tiny",),
                published={"params": 28288354, "gmacs": 4.491, "top1": 81.474, "source": "torchvision Swin_T_Weights.IMAGENET1K_V1 meta"})
def swin_t(width=1.0, depth=1.0, resolution=224, num_classes=1000):
    heads = tuple(max(1, round(h * width)) for h in (3, 6, 12, 24))  # width in whole heads of 32 channels
    m = SwinTransformer(4, heads[0] * 32, tuple(scale_depth(d, depth) for d in (2, 2, 6, 2)), heads, num_classes=num_classes)
    m.input_shape = (3, resolution, resolution)
    return m
