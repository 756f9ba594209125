"""Vision Transformer, torchvision's module tree and state_dict keys.

Attention keeps nn.MultiheadAttention's parameter names (in_proj_weight, in_proj_bias,
out_proj) but computes with F.scaled_dot_product_attention, so the products show up as
one attention op on every device instead of MHA's device-dependent fast path.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from effkit.models.layers import scale_depth, scale_width
from effkit.models.registry import register_model


class SelfAttention(nn.Module):
    """Multi-head self-attention: one qkv projection, SDPA, output projection."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden size {dim} is not divisible by {heads} heads")
        self.embed_dim, self.num_heads, self.dropout = dim, heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x):
        b, n, d = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class MLPBlock(nn.Sequential):
    def __init__(self, dim: int, mlp_dim: int, dropout: float):
        super().__init__(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, dim), nn.Dropout(dropout))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)


class EncoderBlock(nn.Module):
    def __init__(self, dim, heads, mlp_dim, dropout=0.0, attention_dropout=0.0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention = SelfAttention(dim, heads, attention_dropout)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, mlp_dim, dropout)

    def forward(self, x):
        x = self.dropout(self.self_attention(self.ln_1(x))) + x
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    def __init__(self, seq_len, depth, heads, dim, mlp_dim, dropout=0.0):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_len, dim).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential(OrderedDict((f"encoder_layer_{i}", EncoderBlock(dim, heads, mlp_dim, dropout)) for i in range(depth)))
        self.ln = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class VisionTransformer(nn.Module):
    def __init__(self, image_size, patch_size, depth, heads, dim, mlp_dim, num_classes=1000, dropout=0.0):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"resolution {image_size} is not a multiple of the patch size {patch_size}")
        self.image_size, self.patch_size, self.hidden_dim = image_size, patch_size, dim
        self.conv_proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.encoder = Encoder((image_size // patch_size) ** 2 + 1, depth, heads, dim, mlp_dim, dropout)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(dim, num_classes)))
        fan_in = 3 * patch_size * patch_size
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)
        nn.init.zeros_(self.heads.head.weight)
        nn.init.zeros_(self.heads.head.bias)

    def forward(self, x):
        n = x.shape[0]
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        x = self.encoder(x)
        return self.heads(x[:, 0])


def _vit(patch, depth_n, heads, dim, mlp_dim, width=1.0, depth=1.0, resolution=224, num_classes=1000):
    # width scales the hidden size in whole heads (head dim fixed), the MLP in proportion.
    head_dim = dim // heads
    heads_w = max(1, round(heads * width))
    dim_w = heads_w * head_dim
    return VisionTransformer(resolution, patch, scale_depth(depth_n, depth), heads_w, dim_w, scale_width(mlp_dim, dim_w / dim), num_classes)


@register_model("vit", "torchvision.models.vit_b_16",
                published={"params": 86567656, "gmacs": 17.564, "top1": 81.072, "source": "torchvision.models.ViT_B_16_Weights.IMAGENET1K_V1 (weights meta: num_params, _ops in GMACs)"})
def vit_b_16(**kw):
    return _vit(16, 12, 12, 768, 3072, **kw)


# DeiT (Touvron et al., 2021) uses the ViT architecture at small widths; timm's deit_*_patch16_224 and
# vit_*_patch16_224 have these exact shapes. Top-1: the DeiT paper's Table (no distillation).
@register_model("vit", "timm deit_small_patch16_224 / vit_small_patch16_224", aliases=("deit_s", "vit_small_patch16_224", "deit_small_patch16_224"),
                published={"params": 22050664, "top1": 79.9, "source": "params: timm deit_small_patch16_224; top-1: DeiT paper, Table 7"})
def vit_s_16(**kw):
    return _vit(16, 12, 6, 384, 1536, **kw)


@register_model("vit", "timm deit_tiny_patch16_224 / vit_tiny_patch16_224", aliases=("deit_ti", "vit_tiny_patch16_224", "deit_tiny_patch16_224"),
                published={"params": 5717416, "top1": 72.2, "source": "params: timm deit_tiny_patch16_224; top-1: DeiT paper, Table 7"})
def vit_ti_16(**kw):
    return _vit(16, 12, 3, 192, 768, **kw)
