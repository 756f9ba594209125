"""ResNet (v1.5: stride on the 3x3 conv), torchvision's module tree."""
from __future__ import annotations

import torch
import torch.nn as nn

from effkit.models.layers import init_conv_bn_linear, scale_depth, scale_width
from effkit.models.registry import register_model

_SRC = "torchvision.models.{} (weights meta: num_params, _ops in GMACs)"


def conv3x3(c_in, c_out, stride=1, groups=1):
    return nn.Conv2d(c_in, c_out, 3, stride, padding=1, groups=groups, bias=False)


def conv1x1(c_in, c_out, stride=1):
    return nn.Conv2d(c_in, c_out, 1, stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in, planes, stride=1, downsample=None, groups=1, base_width=64):
        super().__init__()
        self.conv1 = conv3x3(c_in, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in, planes, stride=1, downsample=None, groups=1, base_width=64):
        super().__init__()
        w = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(c_in, w)
        self.bn1 = nn.BatchNorm2d(w)
        self.conv2 = conv3x3(w, w, stride, groups)
        self.bn2 = nn.BatchNorm2d(w)
        self.conv3 = conv1x1(w, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self, block, depths, widths=(64, 128, 256, 512), stem_width=64, groups=1, width_per_group=64, num_classes=1000):
        super().__init__()
        self.groups, self.base_width = groups, width_per_group
        self.inplanes = stem_width
        self.conv1 = nn.Conv2d(3, stem_width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for i, (d, w) in enumerate(zip(depths, widths)):
            setattr(self, f"layer{i + 1}", self._make_layer(block, w, d, stride=1 if i == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[-1] * block.expansion, num_classes)
        init_conv_bn_linear(self)

    def _make_layer(self, block, planes, n, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, groups=self.groups, base_width=self.base_width) for _ in range(1, n)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def _resnet(block, depths, width=1.0, depth=1.0, resolution=224, num_classes=1000, **kw):
    # resolution changes only the input: a ResNet's parameters do not depend on it.
    widths = tuple(scale_width(w, width) for w in (64, 128, 256, 512))
    return ResNet(block, tuple(scale_depth(d, depth) for d in depths), widths, scale_width(64, width), num_classes=num_classes, **kw)


@register_model("resnet", "torchvision.models.resnet18", published={"params": 11689512, "gmacs": 1.814, "top1": 69.758, "source": _SRC.format("ResNet18_Weights.IMAGENET1K_V1")})
def resnet18(**kw):
    return _resnet(BasicBlock, (2, 2, 2, 2), **kw)


@register_model("resnet", "torchvision.models.resnet50", published={"params": 25557032, "gmacs": 4.089, "top1": 80.858, "source": _SRC.format("ResNet50_Weights.IMAGENET1K_V2")})
def resnet50(**kw):
    return _resnet(Bottleneck, (3, 4, 6, 3), **kw)


@register_model("resnet", "torchvision.models.resnext50_32x4d", aliases=("resnext50",),
                published={"params": 25028904, "gmacs": 4.23, "top1": 77.618, "source": _SRC.format("ResNeXt50_32X4D_Weights.IMAGENET1K_V1")})
def resnext50_32x4d(**kw):
    return _resnet(Bottleneck, (3, 4, 6, 3), groups=32, width_per_group=4, **kw)
