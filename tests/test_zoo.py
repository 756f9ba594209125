"""Zoo models against torchvision's published figures.

Reference figures (torchvision.models.*_Weights.IMAGENET1K_*.meta: "num_params" and
"_ops", the latter in GMACs at 224x224) — written here, not taken from our registry:
  resnet18        11,689,512  1.814     resnet50     25,557,032   4.089
  convnext_tiny   28,589,128  4.456     convnext_small 50,223,688  8.684
  convnext_base   88,591,464 15.355     efficientnet_b0 5,288,548  0.386
  mobilenet_v2     3,504,872  0.301     vit_b_16     86,567,656  17.564
(benchmarks/torchvision_check.py checks the same against torchvision itself on a GPU machine.)
"""
import pytest
import torch

import effkit
from effkit.errors import UserInputError
from effkit.models import build_model, get_entry, list_models

TORCHVISION = {
    "resnet18": (11_689_512, 1.814),
    "resnet50": (25_557_032, 4.089),
    "convnext_tiny": (28_589_128, 4.456),
    "convnext_small": (50_223_688, 8.684),
    "convnext_base": (88_591_464, 15.355),
    "efficientnet_b0": (5_288_548, 0.386),
    "mobilenet_v2": (3_504_872, 0.301),
    "vit_b_16": (86_567_656, 17.564),
}


@pytest.mark.parametrize("name", TORCHVISION)
def test_params_and_macs_match_torchvision(name):
    params, gmacs = TORCHVISION[name]
    r = effkit.trace(name, device="meta")
    assert r.params == params
    assert sum(p.numel() for p in build_model(name).model.parameters()) == params
    assert abs(r.totals.macs / 1e9 - gmacs) / gmacs < 0.005
    assert not r.uncovered
    # the registry's published figures are the same ones
    assert get_entry(name).published["params"] == params


def test_acts_match_timm_published():
    # timm's results tables ("macts", fvcore convention): resnet50 11.11 M, convnext_tiny 13.44 M
    assert round(effkit.trace("resnet50", device="meta").totals.acts / 1e6, 2) == 11.11
    assert round(effkit.trace("convnext_tiny", device="meta").totals.acts / 1e6, 2) == 13.44


def test_registry_aliases_patterns_and_suggestions():
    assert get_entry("convnext_t").name == "convnext_tiny"
    assert list_models("convnext*") == ["convnext_b", "convnext_base", "convnext_s", "convnext_small", "convnext_t", "convnext_tiny"]
    assert "resnet50" in list_models()
    with pytest.raises(UserInputError, match=r"unknown model 'resnet5'.*did you mean: resnet50"):
        get_entry("resnet5")


def test_builders_scale_width_depth_resolution():
    base = build_model("resnet50").model
    wide = build_model("resnet50", width=2.0).model
    assert wide.fc.in_features == 2 * base.fc.in_features
    assert len(build_model("convnext_tiny", depth=2.0).model.features[5]) == 18  # 9 blocks x 2
    vit = build_model("vit_b_16", resolution=384)
    assert vit.input_shape == (3, 384, 384)
    assert vit.model.encoder.pos_embedding.shape[1] == (384 // 16) ** 2 + 1  # 577 tokens


def test_user_model_from_file_and_module(tmp_path, monkeypatch):
    (tmp_path / "mynet.py").write_text(
        "import torch.nn as nn\n"
        "def net():\n"
        "    m = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))\n"
        "    m.input_shape = (10,)\n"
        "    return m\n"
    )
    r = effkit.trace(f"{tmp_path / 'mynet.py'}:net", batch=3)
    assert r.totals.macs == 3 * (10 * 20 + 20 * 5)  # 900
    monkeypatch.syspath_prepend(str(tmp_path))
    assert effkit.trace("mynet:net", batch=3).totals.macs == 900
    with pytest.raises(UserInputError, match="no factory 'nett'.*did you mean: net"):
        build_model(f"{tmp_path / 'mynet.py'}:nett")
    with pytest.raises(UserInputError, match="does not exist"):
        build_model("missing/file.py:net")
    with pytest.raises(UserInputError, match="cannot be imported"):
        build_model("no_such_pkg.mod:net")


def test_torchvision_state_dict_keys_shape():
    # our module trees mirror torchvision's: spot-check names torchvision's state_dicts use
    keys = build_model("vit_b_16").model.state_dict().keys()
    assert "encoder.layers.encoder_layer_0.self_attention.in_proj_weight" in keys
    assert "encoder.layers.encoder_layer_11.mlp.3.bias" in keys
    keys = build_model("efficientnet_b0").model.state_dict().keys()
    assert "features.1.0.block.1.fc1.weight" in keys  # MBConv's squeeze-excitation
    keys = build_model("convnext_tiny").model.state_dict().keys()
    assert "features.1.0.layer_scale" in keys and "features.1.0.block.2.weight" in keys


def test_zoo_forward_runs():
    out = build_model("mobilenet_v2").model.eval()(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 1000)
