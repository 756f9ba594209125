"""Building blocks shared by the zoo, written to match torchvision's module trees
(same child names and order), so that a torchvision state_dict loads into ours."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round `v` to the nearest multiple of `divisor`, never going below 90 % of `v`."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def scale_width(c: int, mult: float) -> int:
    """A channel count scaled by `mult`, kept a multiple of 8 (identity at mult 1 for multiples of 8)."""
    return c if mult == 1.0 else make_divisible(c * mult, 8)


def scale_depth(n: int, mult: float, rounding: str = "round") -> int:
    """A block count scaled by `mult`, at least 1: to the nearest integer (effkit's scaler), or up
    ("ceil", EfficientNet's published rule)."""
    return max(1, int(math.ceil(n * mult)) if rounding == "ceil" else int(round(n * mult)))


class Conv2dNormActivation(nn.Sequential):
    """conv → norm → activation; padding keeps the spatial size at stride 1."""

    def __init__(self, c_in, c_out, kernel_size=3, stride=1, padding=None, groups=1,
                 norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU, dilation=1, inplace=True, bias=None):
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        if bias is None:
            bias = norm_layer is None
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel_size, stride, padding, dilation=dilation, groups=groups, bias=bias)]
        if norm_layer is not None:
            layers.append(norm_layer(c_out))
        if activation_layer is not None:
            layers.append(activation_layer(**({} if inplace is None else {"inplace": inplace})))
        super().__init__(*layers)
        self.out_channels = c_out


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Permute(nn.Module):
    def __init__(self, dims: list[int]):
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)


class StochasticDepth(nn.Module):
    """Drops whole residual branches per sample in training; identity in eval."""

    def __init__(self, p: float, mode: str = "row"):
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        shape = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim
        noise = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(survival)
        return x * noise.div_(survival)

    def __repr__(self) -> str:  # torchvision's form (its extra_repr is empty)
        return f"{type(self).__name__}(p={self.p}, mode={self.mode})"


class SqueezeExcitation(nn.Module):
    """x * sigmoid(fc2(act(fc1(avgpool(x)))))."""

    def __init__(self, c_in: int, c_squeeze: int, activation=nn.ReLU, scale_activation=nn.Sigmoid):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c_in, c_squeeze, 1)
        self.fc2 = nn.Conv2d(c_squeeze, c_in, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return s * x


def init_trunc_normal(model: nn.Module, types=(nn.Conv2d, nn.Linear), std: float = 0.02) -> None:
    """Truncated-normal weights and zero biases for every module of `types` (the ConvNeXt / ViT-style scheme)."""
    for m in model.modules():
        if isinstance(m, types):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class StochasticResidual(nn.Module):
    """`block(x)`, plus `x` through stochastic depth when the block keeps the shape (use_res_connect)."""

    def forward(self, x):
        out = self.block(x)
        if self.use_res_connect:
            out = self.stochastic_depth(out)
            out += x
        return out


def init_conv_bn_linear(model: nn.Module) -> None:
    """He init for convs, unit/zero norms, small uniform linears (torchvision's CNN scheme)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.out_features)
            nn.init.uniform_(m.weight, -bound, bound)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
