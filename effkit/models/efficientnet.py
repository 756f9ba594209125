"""EfficientNet (B0 for now), torchvision's module tree."""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from effkit.models.layers import (Conv2dNormActivation, SqueezeExcitation, StochasticDepth, init_conv_bn_linear,
                                  make_divisible, scale_depth)
from effkit.models.registry import register_model

# expand ratio, kernel, stride, c_in, c_out, blocks: the B0 stages of Tan & Le (2019), Table 1
_B0 = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
       (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))


class MBConv(nn.Module):
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

    def forward(self, x):
        out = self.block(x)
        if self.use_res_connect:
            out = self.stochastic_depth(out)
            out += x
        return out


class EfficientNet(nn.Module):
    def __init__(self, width_mult=1.0, depth_mult=1.0, dropout=0.2, sd_prob=0.2, num_classes=1000, norm_layer=nn.BatchNorm2d):
        super().__init__()
        stages = [(e, k, s, make_divisible(ci * width_mult), make_divisible(co * width_mult), scale_depth(n, depth_mult)) for e, k, s, ci, co, n in _B0]
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


@register_model("efficientnet", "torchvision.models.efficientnet_b0",
                published={"params": 5288548, "gmacs": 0.386, "top1": 77.692, "source": "torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1 (weights meta: num_params, _ops in GMACs)"})
def efficientnet_b0(width=1.0, depth=1.0, resolution=224, num_classes=1000):
    return EfficientNet(width, depth, num_classes=num_classes)
