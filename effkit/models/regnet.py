"""RegNetX / RegNetY (Radosavovic et al., 2020), generated from (depth, w0, wa, wm, group width),
with torchvision's module tree.

Two published width roundings exist. pycls (and timm) round each stage's width to a multiple of
its group width; torchvision uses make_divisible, which never rounds below 90 %. They agree on
most sizes but not all (timm keeps separate `_tv` configs for the ones that differ), so the
pycls names (regnetx_400mf, regnety_4_0gf) use pycls's rounding and the torchvision names
(regnet_x_400mf, regnet_y_8gf) use torchvision's, each equal to its own reference.

A model is built from an explicit config (stage depths, widths, group widths), so that the
scaler (effkit.models.scaling) can scale depth, width and resolution.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from effkit.models.layers import Conv2dNormActivation, SqueezeExcitation, init_conv_bn_linear, make_divisible
from effkit.models.registry import register_model

# (depth, w0, wa, wm, group width): pycls's model zoo / the paper's Table; timm's regnet.py has the same
PARAMS = {
    "x": {"200mf": (13, 24, 36.44, 2.49, 8), "400mf": (22, 24, 24.48, 2.54, 16), "600mf": (16, 48, 36.97, 2.24, 24),
          "800mf": (16, 56, 35.73, 2.28, 16), "1_6gf": (18, 80, 34.01, 2.25, 24), "3_2gf": (25, 88, 26.31, 2.25, 48),
          "4_0gf": (23, 96, 38.65, 2.43, 40), "6_4gf": (17, 184, 60.83, 2.07, 56), "8_0gf": (23, 80, 49.56, 2.88, 120),
          "12gf": (19, 168, 73.36, 2.37, 112), "16gf": (22, 216, 55.59, 2.1, 128), "32gf": (23, 320, 69.86, 2.0, 168)},
    "y": {"200mf": (13, 24, 36.44, 2.49, 8), "400mf": (16, 48, 27.89, 2.09, 8), "600mf": (15, 48, 32.54, 2.32, 16),
          "800mf": (14, 56, 38.84, 2.4, 16), "1_6gf": (27, 48, 20.71, 2.65, 24), "3_2gf": (21, 80, 42.63, 2.66, 24),
          "4_0gf": (22, 96, 31.41, 2.24, 64), "6_4gf": (25, 112, 33.22, 2.27, 72), "8_0gf": (17, 192, 76.82, 2.19, 56),
          "12gf": (19, 168, 73.36, 2.37, 112), "16gf": (18, 200, 106.23, 2.48, 112), "32gf": (20, 232, 115.89, 2.53, 232)},
}
# pycls MODEL_ZOO.md (facebookresearch/pycls): (flops B, params M, acts M, top-1 error %), each to one decimal
PYCLS_ZOO = {
    "x": {"200mf": (0.2, 2.7, 2.2, 31.1), "400mf": (0.4, 5.2, 3.1, 27.3), "600mf": (0.6, 6.2, 4.0, 25.9), "800mf": (0.8, 7.3, 5.1, 24.8),
          "1_6gf": (1.6, 9.2, 7.9, 23.0), "3_2gf": (3.2, 15.3, 11.4, 21.7), "4_0gf": (4.0, 22.1, 12.2, 21.4), "6_4gf": (6.5, 26.2, 16.4, 20.8),
          "8_0gf": (8.0, 39.6, 14.1, 20.7), "12gf": (12.1, 46.1, 21.4, 20.3), "16gf": (15.9, 54.3, 25.5, 20.0), "32gf": (31.7, 107.8, 36.3, 19.5)},
    "y": {"200mf": (0.2, 3.2, 2.2, 29.6), "400mf": (0.4, 4.3, 3.9, 25.9), "600mf": (0.6, 6.1, 4.3, 24.5), "800mf": (0.8, 6.3, 5.2, 23.7),
          "1_6gf": (1.6, 11.2, 8.0, 22.0), "3_2gf": (3.2, 19.4, 11.3, 21.0), "4_0gf": (4.0, 20.6, 12.3, 20.6), "6_4gf": (6.4, 30.6, 16.4, 20.1),
          "8_0gf": (8.0, 39.2, 18.0, 20.1), "12gf": (12.1, 51.8, 21.4, 19.7), "16gf": (15.9, 83.6, 23.0, 19.6), "32gf": (32.3, 145.0, 30.3, 19.0)},
}
TIMM = {"200mf": "002", "400mf": "004", "600mf": "006", "800mf": "008", "1_6gf": "016", "3_2gf": "032", "4_0gf": "040", "6_4gf": "064",
        "8_0gf": "080", "12gf": "120", "16gf": "160", "32gf": "320"}
# torchvision 0.26 weights meta (IMAGENET1K_V1): num_params, _ops (GMACs), acc@1 — read on the GPU machine
# (benchmarks/results/h200/tv_regnet_meta.json)
TORCHVISION_META = {
    "x_400mf": (5495976, 0.414, 72.834), "x_800mf": (7259656, 0.8, 75.212), "x_1_6gf": (9190136, 1.603, 77.04),
    "x_3_2gf": (15296552, 3.177, 78.364), "x_8gf": (39572648, 7.995, 79.344), "x_16gf": (54278536, 15.941, 80.058),
    "x_32gf": (107811560, 31.736, 80.622), "y_400mf": (4344144, 0.402, 74.046), "y_800mf": (6432512, 0.834, 76.42),
    "y_1_6gf": (11202430, 1.612, 77.95), "y_3_2gf": (19436338, 3.176, 78.948), "y_8gf": (39381472, 8.473, 80.032),
    "y_16gf": (83590140, 15.912, 80.424), "y_32gf": (145046770, 32.28, 80.878),
}
TORCHVISION_SIZES = {"x": ("400mf", "800mf", "1_6gf", "3_2gf", "8gf", "16gf", "32gf"), "y": ("400mf", "800mf", "1_6gf", "3_2gf", "8gf", "16gf", "32gf")}
SE_RATIO = {"x": 0.0, "y": 0.25}


@dataclass(frozen=True)
class RegNetConfig:
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    group_widths: tuple[int, ...]
    se_ratio: float
    resolution: int = 224
    stem_width: int = 32


def quantize(v: float, q: int) -> int:
    return int(round(v / q) * q)


def generate(depth, w0, wa, wm, group_w, se_ratio, rounding="pycls", q=8) -> RegNetConfig:
    """Per-block widths w0 + wa * j, snapped to w0 * wm^k and to multiples of q; stages = runs of equal width."""
    cont = np.arange(depth) * wa + w0
    ks = np.round(np.log(cont / w0) / np.log(wm))
    block_w = [quantize(w, q) for w in w0 * np.power(wm, ks)]
    widths, depths = [], []
    for w in block_w:
        if widths and widths[-1] == w:
            depths[-1] += 1
        else:
            widths.append(w)
            depths.append(1)
    groups = [min(group_w, w) for w in widths]
    fit = quantize if rounding == "pycls" else make_divisible
    widths = [fit(w, g) for w, g in zip(widths, groups)]
    return RegNetConfig(tuple(depths), tuple(widths), tuple(groups), se_ratio)


class BottleneckTransform(nn.Sequential):
    """1x1 → grouped 3x3 (stride) → [SE] → 1x1 (bottleneck multiplier 1)."""

    def __init__(self, w_in, w_out, stride, group_w, se_ratio):
        g = w_out // group_w
        layers = OrderedDict()
        layers["a"] = Conv2dNormActivation(w_in, w_out, kernel_size=1)
        layers["b"] = Conv2dNormActivation(w_out, w_out, kernel_size=3, stride=stride, groups=g)
        if se_ratio:
            layers["se"] = SqueezeExcitation(w_out, int(round(se_ratio * w_in)), activation=nn.ReLU)
        layers["c"] = Conv2dNormActivation(w_out, w_out, kernel_size=1, activation_layer=None)
        super().__init__(layers)


class ResBottleneckBlock(nn.Module):
    def __init__(self, w_in, w_out, stride, group_w, se_ratio):
        super().__init__()
        self.proj = None
        if w_in != w_out or stride != 1:
            self.proj = Conv2dNormActivation(w_in, w_out, kernel_size=1, stride=stride, activation_layer=None)
        self.f = BottleneckTransform(w_in, w_out, stride, group_w, se_ratio)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x):
        x = (self.proj(x) if self.proj is not None else x) + self.f(x)
        return self.activation(x)


class AnyStage(nn.Sequential):
    def __init__(self, w_in, w_out, stride, depth, group_w, se_ratio, index):
        super().__init__()
        for i in range(depth):
            self.add_module(f"block{index}-{i}", ResBottleneckBlock(w_in if i == 0 else w_out, w_out, stride if i == 0 else 1, group_w, se_ratio))


class RegNet(nn.Module):
    def __init__(self, cfg: RegNetConfig, num_classes: int = 1000):
        super().__init__()
        self.config = cfg
        self.input_shape = (3, cfg.resolution, cfg.resolution)
        self.stem = Conv2dNormActivation(3, cfg.stem_width, kernel_size=3, stride=2)
        w_in, stages = cfg.stem_width, OrderedDict()
        for i, (d, w, g) in enumerate(zip(cfg.depths, cfg.widths, cfg.group_widths)):
            stages[f"block{i + 1}"] = AnyStage(w_in, w, 2, d, g, cfg.se_ratio, i + 1)
            w_in = w
        self.trunk_output = nn.Sequential(stages)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(w_in, num_classes)
        init_conv_bn_linear(self)

    def forward(self, x):
        x = self.trunk_output(self.stem(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def base_config(kind: str, size: str, rounding: str) -> RegNetConfig:
    key = {"8gf": "8_0gf"}.get(size, size)
    return generate(*PARAMS[kind][key], SE_RATIO[kind], rounding)


def _register(kind: str, size: str, name: str, rounding: str, reference: str, published: dict | None = None):
    def build(width=1.0, depth=1.0, resolution=224, num_classes=1000, config: RegNetConfig | None = None):
        from effkit.models.scaling import scale_config

        cfg = config or scale_config(base_config(kind, size, rounding), depth, width, resolution / 224 if resolution else 1.0)
        if config is None and resolution:
            cfg = RegNetConfig(cfg.depths, cfg.widths, cfg.group_widths, cfg.se_ratio, resolution, cfg.stem_width)
        return RegNet(cfg, num_classes)

    build.__name__ = name
    build.config = lambda: base_config(kind, size, rounding)
    register_model("regnet", reference, scalable=True, published=published)(build)


for _k in ("x", "y"):
    for _s in PARAMS[_k]:
        _f, _p, _a, _e = PYCLS_ZOO[_k][_s]
        _register(_k, _s, f"regnet{_k}_{_s}", "pycls", f"pycls RegNet{_k.upper()}-{_s.upper().replace('_', '.')} (= timm regnet{_k}_{TIMM[_s]})",
                  {"gmacs": _f, "params_m": _p, "acts_m": _a, "top1": round(100 - _e, 1),
                   "source": "pycls MODEL_ZOO.md (flops B, params M, acts M, top-1 = 100 - error; one decimal)"})
    for _s in TORCHVISION_SIZES[_k]:
        _p, _g, _t = TORCHVISION_META[f"{_k}_{_s}"]
        _register(_k, _s, f"regnet_{_k}_{_s}", "torchvision", f"torchvision.models.regnet_{_k}_{_s}",
                  {"params": _p, "gmacs": _g, "top1": _t, "source": f"torchvision RegNet_{_k.upper()}_{_s.upper()}_Weights.IMAGENET1K_V1 meta"})
