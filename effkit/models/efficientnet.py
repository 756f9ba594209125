"""EfficientNet (B0 for now), torchvision's module tree."""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from effkit.models.layers import (Conv2dNormActivation, SqueezeExcitation, StochasticDepth, StochasticResidual, init_conv_bn_linear,
                                  make_divisible, scale_depth)
from effkit.models.registry import register_model

# expand ratio, kernel, stride, c_in, c_out, blocks: the B0 stages of Tan & Le (2019), Table 1
_B0 = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
       (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))


class MBConv(StochasticResidual):
    """[1x1 expand] → dw kxk → SE → 1x1 project, stochastic-depth residual."""

    def __init__(self, expand, k, stride, c_in, c_out, sd_prob, norm_layer=nn.BatchNorm2d):
        super().__init__()
        self.use_res_connect = stride == 1 and c_in == c_out
        hidden = make_divisible(c_in * expand)
        layers: list[nn.Module] = []
        if hidden != c_in:
            layers.append(Conv2dNormActivation(c_in, hidden, kernel_size=1, norm_layer=norm_layer, activation_layer=nn.SiLU))
        layers.append(Conv2dNormActivation(hidden, hidden, kernel_size=k, stride=stride, groups=hidden, norm_layer=norm_layer, activation_layer=nn.SiLU))
        layers.append(SqueezeExcitation(hidden, max(1, c_in // 4), activation=partial(nn.SiLU, inplace=True)))
        layers.append(Conv2dNormActivation(hidden, c_out, kernel_size=1, norm_layer=norm_layer, activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(sd_prob, "row")
        self.out_channels = c_out


class EfficientNet(nn.Module):
    def __init__(self, width_mult=1.0, depth_mult=1.0, dropout=0.2, sd_prob=0.2, num_classes=1000, norm_layer=nn.BatchNorm2d):
        super().__init__()
        stages = [(e, k, s, make_divisible(ci * width_mult), make_divisible(co * width_mult), scale_depth(n, depth_mult, "ceil")) for e, k, s, ci, co, n in _B0]
        layers: list[nn.Module] = [Conv2dNormActivation(3, stages[0][3], stride=2, norm_layer=norm_layer, activation_layer=nn.SiLU)]
        total, block_id = sum(st[5] for st in stages), 0
        for e, k, s, ci, co, n in stages:
            stage = []
            for i in range(n):
                stage.append(MBConv(e, k, s if i == 0 else 1, ci if i == 0 else co, co, sd_prob * block_id / total, norm_layer))
                block_id += 1
            layers.append(nn.Sequential(*stage))
        c_last = 4 * stages[-1][4]
        layers.append(Conv2dNormActivation(stages[-1][4], c_last, kernel_size=1, norm_layer=norm_layer, activation_layer=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(c_last, num_classes))
        init_conv_bn_linear(self)

    def forward(self, x):
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


# width, depth, resolution, dropout: Tan & Le (2019); torchvision's efficientnet_b0..b7 use the same.
# B5-B7 were ported from TensorFlow with its batch-norm settings (eps 1e-3, momentum 0.01).
COEFFS = {"b0": (1.0, 1.0, 224, 0.2), "b1": (1.0, 1.1, 240, 0.2), "b2": (1.1, 1.2, 260, 0.3), "b3": (1.2, 1.4, 300, 0.3),
          "b4": (1.4, 1.8, 380, 0.4), "b5": (1.6, 2.2, 456, 0.4), "b6": (1.8, 2.6, 528, 0.5), "b7": (2.0, 3.1, 600, 0.5)}
# torchvision weights meta (num_params, _ops in GMACs at the model's resolution, acc@1)
_TV = {"b0": (5288548, 0.386, 77.692), "b1": (7794184, 0.687, 78.642), "b2": (9109994, 1.088, 80.608), "b3": (12233232, 1.827, 82.008),
       "b4": (19341616, 4.394, 83.384), "b5": (30389784, 10.266, 83.444), "b6": (43040704, 19.068, 84.008), "b7": (66347960, 37.746, 84.122)}


def _register(v: str):
    w0, d0, r0, dropout = COEFFS[v]
    norm = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01) if v in ("b5", "b6", "b7") else nn.BatchNorm2d

    def build(width=1.0, depth=1.0, resolution=None, num_classes=1000):
        # width and depth multiply the variant's own coefficients; resolution changes only the input
        m = EfficientNet(w0 * width, d0 * depth, dropout=dropout, num_classes=num_classes, norm_layer=norm)
        m.input_shape = (3, resolution or r0, resolution or r0)
        return m

    build.__name__ = f"efficientnet_{v}"
    p, g, t = _TV[v]
    # torchvision counts B2's _ops at its 288 px evaluation crop (the paper's resolution is 260)
    register_model("efficientnet", f"torchvision.models.efficientnet_{v}", input_shape=(3, r0, r0),
                   published={"params": p, "gmacs": g, "gmacs_resolution": 288 if v == "b2" else r0, "top1": t,
                              "source": f"torchvision.models.EfficientNet_{v.upper()}_Weights.IMAGENET1K_V1 meta"})(build)


for _v in COEFFS:
    _register(_v)


# EfficientNetV2-S (Tan & Le, 2021), torchvision's configuration: Fused-MBConv stages, then MBConv.
# expand, kernel, stride, c_in, c_out, blocks, fused
_V2_S = ((1, 3, 1, 24, 24, 2, True), (4, 3, 2, 24, 48, 4, True), (4, 3, 2, 48, 64, 4, True),
         (4, 3, 2, 64, 128, 6, False), (6, 3, 1, 128, 160, 9, False), (6, 3, 2, 160, 256, 15, False))


class FusedMBConv(StochasticResidual):
    """kxk expand (fused) → 1x1 project, or one kxk conv when not expanding; stochastic-depth residual."""

    def __init__(self, expand, k, stride, c_in, c_out, sd_prob, norm_layer):
        super().__init__()
        self.use_res_connect = stride == 1 and c_in == c_out
        hidden = make_divisible(c_in * expand)
        if hidden != c_in:
            layers = [Conv2dNormActivation(c_in, hidden, kernel_size=k, stride=stride, norm_layer=norm_layer, activation_layer=nn.SiLU),
                      Conv2dNormActivation(hidden, c_out, kernel_size=1, norm_layer=norm_layer, activation_layer=None)]
        else:
            layers = [Conv2dNormActivation(c_in, c_out, kernel_size=k, stride=stride, norm_layer=norm_layer, activation_layer=nn.SiLU)]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(sd_prob, "row")
        self.out_channels = c_out


class EfficientNetV2(nn.Module):
    def __init__(self, setting, width=1.0, depth=1.0, last_channel=1280, dropout=0.2, sd_prob=0.2, num_classes=1000):
        super().__init__()
        norm = partial(nn.BatchNorm2d, eps=1e-03)
        rows = [(e, k, s, make_divisible(ci * width), make_divisible(co * width), scale_depth(n, depth), f) for e, k, s, ci, co, n, f in setting]
        layers: list[nn.Module] = [Conv2dNormActivation(3, rows[0][3], kernel_size=3, stride=2, norm_layer=norm, activation_layer=nn.SiLU)]
        total, block_id = sum(r[5] for r in rows), 0
        for e, k, s, ci, co, n, fused in rows:
            stage = []
            for i in range(n):
                cls = FusedMBConv if fused else MBConv
                stage.append(cls(e, k, s if i == 0 else 1, ci if i == 0 else co, co, sd_prob * block_id / total, norm))
                block_id += 1
            layers.append(nn.Sequential(*stage))
        layers.append(Conv2dNormActivation(rows[-1][4], last_channel, kernel_size=1, norm_layer=norm, activation_layer=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(last_channel, num_classes))
        init_conv_bn_linear(self)

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model("efficientnet", "torchvision.models.efficientnet_v2_s", input_shape=(3, 384, 384), aliases=("efficientnetv2_s",),
                published={"params": 21458488, "gmacs": 8.366, "gmacs_resolution": 384, "top1": 84.228,
                           "source": "torchvision EfficientNet_V2_S_Weights.IMAGENET1K_V1 meta (_ops at its 384 px eval crop)"})
def efficientnet_v2_s(width=1.0, depth=1.0, resolution=None, num_classes=1000):
    m = EfficientNetV2(_V2_S, width, depth, num_classes=num_classes)
    m.input_shape = (3, resolution or 384, resolution or 384)
    return m
