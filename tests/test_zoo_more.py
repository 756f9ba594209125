"""The wider zoo: reference parameter counts, the two block designs by hand, models from elsewhere."""
import importlib.util

import pytest
import torch
import torch.nn as nn
from typer.testing import CliRunner

import effkit
from effkit.cli import app
from effkit.errors import UserInputError
from effkit.models import build_model
from effkit.models.convfirst import ConvFirstBlock, MBConvBlock
from effkit.models.registry import BuiltModel

# Reference parameter counts and GMACs: torchvision 0.26 weights meta ("num_params", "_ops") and timm's models,
# both read on the GPU machine (benchmarks/results/h200/external_check.json: effkit's trace of torchvision:NAME /
# timm:NAME gave the same params, MACs, FLOPs, activations and bytes as ours for all of these).
REFERENCE = {
    "mobilenet_v3_large": (5483032, 0.217),   # torchvision MobileNet_V3_Large_Weights.IMAGENET1K_V1
    "mobilenet_v3_small": (2542856, 0.057),   # torchvision MobileNet_V3_Small_Weights.IMAGENET1K_V1
    "resnext50_32x4d": (25028904, 4.23),      # torchvision ResNeXt50_32X4D_Weights.IMAGENET1K_V1
    "efficientnet_v2_s": (21458488, 8.366),   # torchvision EfficientNet_V2_S_Weights.IMAGENET1K_V1 (_ops at 384 px)
    "swin_t": (28288354, 4.491),              # torchvision Swin_T_Weights.IMAGENET1K_V1
    "vit_s_16": (22050664, None),             # timm deit_small_patch16_224 (= vit_small_patch16_224)
    "vit_ti_16": (5717416, None),             # timm deit_tiny_patch16_224 (= vit_tiny_patch16_224)
    "inception_next_tiny": (28055680, None),  # timm inception_next_tiny
}


@pytest.mark.parametrize("name", REFERENCE)
def test_new_models_match_their_reference(name):
    params, gmacs = REFERENCE[name]
    r = effkit.trace(name, device="meta")
    assert r.params == params and not r.uncovered
    if gmacs:
        # within 0.5 %, or within the published rounding (3 decimals: 0.057 stands for 0.0565 ... 0.0575)
        assert abs(r.totals.macs / 1e9 - gmacs) <= max(0.005 * gmacs, 0.0005)


@pytest.mark.parametrize("name", ["swin_t", "inception_next_tiny", "mobilenet_v3_small", "efficientnet_v2_s"])
def test_meta_equals_real(name):
    res = 112 if name != "swin_t" else 224
    assert effkit.trace(name, resolution=res, device="meta").layers == effkit.trace(name, resolution=res).layers


def test_convfirst_block_hand_count():
    # c=32, expansion 4 (128), k=3, group width 8 (4 groups), 8x8 input, batch 1:
    #   grouped 3x3: weight 32 x (32/4) x 3 x 3 = 2304, BN 2 x 32; expand 1x1: 32 x 128 = 4096, BN 2 x 128;
    #   project 1x1: 128 x 32 = 4096, BN 2 x 32 -> params 2304 + 64 + 4096 + 256 + 4096 + 64 = 10880
    #   MACs: 64 positions x (32 x 72 + 128 x 32 + 32 x 128) = 147456 + 262144 + 262144 = 671744
    r = effkit.trace(ConvFirstBlock(32), (32, 8, 8))
    assert r.params == 10880 and r.totals.macs == 671744
    # spatial conv at the narrow width: its MACs are 32 x 72 per position; MBConv's below are 128 x 9


def test_mbconv_block_hand_count():
    # c=32, expansion 4, depthwise 3x3, 8x8: expand 32 x 128 = 4096 + BN 256; depthwise 128 x 9 = 1152 + BN 256;
    #   project 4096 + BN 64 -> params 9920. MACs: 64 x (128 x 32 + 128 x 9 + 32 x 128) = 262144 + 73728 + 262144 = 598016
    r = effkit.trace(MBConvBlock(32), (32, 8, 8))
    assert r.params == 9920 and r.totals.macs == 598016
    # grouped instead of depthwise (group width 8: 16 groups of 8): 128 x 8 x 9 = 9216 weights -> 17984 params
    assert effkit.trace(MBConvBlock(32, group_width=8), (32, 8, 8)).params == 9920 - 1152 + 9216


def test_block_shortcut_when_shape_changes():
    # stride 2 and 32 -> 64 channels: a 1x1 conv (32 x 64 = 2048) + BN (128) on the shortcut
    r = effkit.trace(ConvFirstBlock(32, 64, stride=2), (32, 8, 8))
    assert r.params == (2304 + 64) + (4096 + 256) + (128 * 64 + 128) + (2048 + 128)
    assert build_model("convfirst_net").model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None and importlib.util.find_spec("timm") is not None,
                    reason="checks the message where torchvision and timm do not import (CI, this dev box)")
@pytest.mark.parametrize("spec,package", [("torchvision:resnet50", "torchvision"), ("timm:convnext_tiny", "timm")])
def test_external_packages_missing_named(spec, package):
    res = CliRunner().invoke(app, ["trace", spec])
    assert res.exit_code == 2
    assert f"error: {spec!r} needs the {package} package, which does not import here" in res.output


@pytest.mark.skipif(importlib.util.find_spec("transformers") is not None, reason="message for machines without transformers")
def test_hf_without_transformers():
    with pytest.raises(UserInputError, match="'hf:bert-base-uncased' needs the transformers package"):
        build_model("hf:bert-base-uncased")


def test_token_id_inputs():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(100, 16)
            self.fc = nn.Linear(16, 100)

        def forward(self, ids):
            assert ids.dtype == torch.int64
            return self.fc(self.emb(ids))

    r = effkit.trace(BuiltModel(Tiny(), "tiny-lm", (12,), "module", vocab_size=100), batch=2)
    assert r.input_shapes == ((2, 12),)
    assert r.totals.macs == 2 * 12 * 16 * 100  # the linear; the embedding is a gather


def test_models_command_shows_counts_and_sources(monkeypatch, tmp_path):
    monkeypatch.setenv("EFFKIT_CACHE_DIR", str(tmp_path))
    res = CliRunner().invoke(app, ["models", "mobilenet_v3*"])
    assert res.exit_code == 0, res.output
    assert "5,483,032" in res.output and "0.217" in res.output and "mobilenet" in res.output
    assert "torchvision MobileNet_V3_Large_Weights" in res.output and "counted by effkit" in res.output
