"""MobileNetV2, torchvision's module tree."""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F
import torch

from effkit.models.layers import Conv2dNormActivation, init_conv_bn_linear, make_divisible, scale_depth
from effkit.models.registry import register_model

# t (expansion), c (channels), n (blocks), s (first stride)
_V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    """1x1 expand → dw3x3 → 1x1 project (linear), residual when shapes allow."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(c_in * expand_ratio))
        self.use_res_connect = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(c_in, hidden, kernel_size=1, activation_layer=nn.ReLU6))
        layers += [
            Conv2dNormActivation(hidden, hidden, stride=stride, groups=hidden, activation_layer=nn.ReLU6),
            nn.Conv2d(hidden, c_out, 1, 1, 0, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = c_out

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, width_mult=1.0, depth_mult=1.0, num_classes=1000, dropout=0.2):
        super().__init__()
        c_in = make_divisible(32 * width_mult)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [Conv2dNormActivation(3, c_in, stride=2, activation_layer=nn.ReLU6)]
        for t, c, n, s in _V2_SETTING:
            c_out = make_divisible(c * width_mult)
            for i in range(scale_depth(n, depth_mult)):
                features.append(InvertedResidual(c_in, c_out, s if i == 0 else 1, t))
                c_in = c_out
        features.append(Conv2dNormActivation(c_in, self.last_channel, kernel_size=1, activation_layer=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))
        init_conv_bn_linear(self)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


@register_model("mobilenet", "torchvision.models.mobilenet_v2",
                published={"params": 3504872, "gmacs": 0.301, "top1": 72.154, "source": "torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V2 (weights meta: num_params, _ops in GMACs)"})
def mobilenet_v2(width=1.0, depth=1.0, resolution=224, num_classes=1000):
    return MobileNetV2(width, depth, num_classes)
