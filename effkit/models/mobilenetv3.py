"""MobileNetV3 large and small (Howard et al., 2019), torchvision's module tree."""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from effkit.models.layers import Conv2dNormActivation, SqueezeExcitation, init_conv_bn_linear, make_divisible, scale_depth
from effkit.models.registry import register_model

# input, kernel, expanded, output, SE, activation (RE: ReLU, HS: hardswish), stride: the paper's Tables 1 and 2
LARGE = ((16, 3, 16, 16, False, "RE", 1), (16, 3, 64, 24, False, "RE", 2), (24, 3, 72, 24, False, "RE", 1),
         (24, 5, 72, 40, True, "RE", 2), (40, 5, 120, 40, True, "RE", 1), (40, 5, 120, 40, True, "RE", 1),
         (40, 3, 240, 80, False, "HS", 2), (80, 3, 200, 80, False, "HS", 1), (80, 3, 184, 80, False, "HS", 1),
         (80, 3, 184, 80, False, "HS", 1), (80, 3, 480, 112, True, "HS", 1), (112, 3, 672, 112, True, "HS", 1),
         (112, 5, 672, 160, True, "HS", 2), (160, 5, 960, 160, True, "HS", 1), (160, 5, 960, 160, True, "HS", 1))
SMALL = ((16, 3, 16, 16, True, "RE", 2), (16, 3, 72, 24, False, "RE", 2), (24, 3, 88, 24, False, "RE", 1),
         (24, 5, 96, 40, True, "HS", 2), (40, 5, 240, 40, True, "HS", 1), (40, 5, 240, 40, True, "HS", 1),
         (40, 5, 120, 48, True, "HS", 1), (48, 5, 144, 48, True, "HS", 1), (48, 5, 288, 96, True, "HS", 2),
         (96, 5, 576, 96, True, "HS", 1), (96, 5, 576, 96, True, "HS", 1))


class InvertedResidual(nn.Module):
    """[1x1 expand] → dw kxk → [SE, hard-sigmoid gate] → 1x1 project; residual when shapes allow."""

    def __init__(self, c_in, k, c_exp, c_out, se, act, stride, norm):
        super().__init__()
        self.use_res_connect = stride == 1 and c_in == c_out
        a = nn.Hardswish if act == "HS" else nn.ReLU
        layers: list[nn.Module] = []
        if c_exp != c_in:
            layers.append(Conv2dNormActivation(c_in, c_exp, kernel_size=1, norm_layer=norm, activation_layer=a))
        layers.append(Conv2dNormActivation(c_exp, c_exp, kernel_size=k, stride=stride, groups=c_exp, norm_layer=norm, activation_layer=a))
        if se:
            layers.append(SqueezeExcitation(c_exp, make_divisible(c_exp // 4, 8), scale_activation=nn.Hardsigmoid))
        layers.append(Conv2dNormActivation(c_exp, c_out, kernel_size=1, norm_layer=norm, activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = c_out

    def forward(self, x):
        out = self.block(x)
        if self.use_res_connect:
            out += x
        return out


class MobileNetV3(nn.Module):
    def __init__(self, setting, last_channel, width=1.0, depth=1.0, num_classes=1000, dropout=0.2):
        super().__init__()
        norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
        adj = lambda c: make_divisible(c * width, 8)  # noqa: E731
        rows = []
        for i, (ci, k, ce, co, se, act, s) in enumerate(setting):  # depth repeats each block (extra copies keep stride 1)
            rows.append((adj(ci), k, adj(ce), adj(co), se, act, s))
            for _ in range(scale_depth(1, depth) - 1):
                rows.append((adj(co), k, adj(ce), adj(co), se, act, 1))
        layers: list[nn.Module] = [Conv2dNormActivation(3, rows[0][0], kernel_size=3, stride=2, norm_layer=norm, activation_layer=nn.Hardswish)]
        layers += [InvertedResidual(*r, norm) for r in rows]
        c_last = 6 * rows[-1][3]
        layers.append(Conv2dNormActivation(rows[-1][3], c_last, kernel_size=1, norm_layer=norm, activation_layer=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        last = make_divisible(last_channel * width, 8)
        self.classifier = nn.Sequential(nn.Linear(c_last, last), nn.Hardswish(inplace=True), nn.Dropout(p=dropout, inplace=True), nn.Linear(last, num_classes))
        init_conv_bn_linear(self)

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model("mobilenet", "torchvision.models.mobilenet_v3_large",
                published={"params": 5483032, "gmacs": 0.217, "top1": 74.042, "source": "torchvision MobileNet_V3_Large_Weights.IMAGENET1K_V1 meta"})
def mobilenet_v3_large(width=1.0, depth=1.0, resolution=224, num_classes=1000):
    return MobileNetV3(LARGE, 1280, width, depth, num_classes)


@register_model("mobilenet", "torchvision.models.mobilenet_v3_small",
                published={"params": 2542856, "gmacs": 0.057, "top1": 67.668, "source": "torchvision MobileNet_V3_Small_Weights.IMAGENET1K_V1 meta"})
def mobilenet_v3_small(width=1.0, depth=1.0, resolution=224, num_classes=1000):
    return MobileNetV3(SMALL, 1024, width, depth, num_classes)
