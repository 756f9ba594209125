"""Peak memory from a meta trace (issue 20): liveness by hand, training state by hand, the --fits bisection."""
from __future__ import annotations

import pytest
import torch.nn as nn
from typer.testing import CliRunner

from effkit.cli import app
from effkit.errors import UserInputError
from effkit.models.ref import resolve
from effkit.trace.memory import CONTEXT_BYTES, HEADROOM_FRACTION, largest_batch, liveness, parse_size, predict_memory, usable

runner = CliRunner()


def chain():
    m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    m.input_shape = (8,)
    return m


class Residual(nn.Module):
    """x + view(relu_(fc(x))): a residual block with an in-place ReLU and a view."""

    def __init__(self):
        super().__init__()
        self.fc, self.act = nn.Linear(8, 8), nn.ReLU(inplace=True)
        self.input_shape = (8,)

    def forward(self, x):
        return x + self.act(self.fc(x)).view(-1, 8)


# params: Linear(8, 16) 8 x 16 + 16 = 144, Linear(16, 4) 16 x 4 + 4 = 68: 212 floats = 848 B; input at batch 2: 2 x 8 x 4 = 64 B
CHAIN_PARAMS, CHAIN_INPUT = 848, 64


def test_inference_chain_of_linears_by_hand():
    p = predict_memory(resolve(chain()), 2)
    # addmm 1 makes h (2 x 16 fp32 = 128 B); relu reads h and makes r (128 B): both alive at relu, 256 B; h dies there;
    # addmm 2 makes the output o (2 x 4 x 4 = 32 B) while r is read: 160 B. Peak 256 B at the relu, plus 848 + 64 static.
    assert p.at_peak["activations"] == 256 and p.peak_path == "1"
    assert p.at_peak["parameters"] == CHAIN_PARAMS and p.at_peak["inputs"] == CHAIN_INPUT
    assert p.peak_bytes == 256 + CHAIN_PARAMS + CHAIN_INPUT


def test_residual_block_inplace_relu_and_views_by_hand():
    p = predict_memory(resolve(Residual()), 2)
    # fc makes y (2 x 8 x 4 = 64 B); relu_ is in place and the view shares y's storage: nothing new; the input x lives
    # throughout (the add reads it at the end); the add makes the output (64 B) while y is still read: 128 B at the add.
    assert p.at_peak["activations"] == 128 and p.at_peak["temporaries"] == 0
    assert [t[2] for t in p.timeline if t[1] == "act"] == [64]  # during the in-place ReLU only y is alive: nothing allocated
    assert p.peak_bytes == 128 + (8 * 8 + 8) * 4 + 64  # + params 288 B + input 64 B


class Locals(nn.Module):
    """Three elementwise steps whose results stay in local variables until the forward returns, as eager code does."""

    input_shape = (8,)

    def forward(self, x):
        a = x * 2
        b = a + 1
        c = b * 3
        return c


class LocalsLetGo(Locals):
    def forward(self, x):
        a = x * 2
        b = a + 1
        del a
        return b * 3


def test_a_local_variable_keeps_its_tensor_until_it_is_let_go():
    """Eager PyTorch frees a tensor when its last Python reference goes, not after the op that reads it last (the H200 run:
    inference steps 8-33 % above a last-use prediction, within 1 % once this was modelled)."""
    # batch 2 x 8 fp32 = 64 B a tensor. Locals: a, b and c are all alive when c is made: 192 B. LocalsLetGo: a is deleted
    # before the last product, so only b and the output (64 B each) are alive then, and a and b at b's op: 128 B.
    assert predict_memory(resolve(Locals()), 2).at_peak["activations"] == 192
    assert predict_memory(resolve(LocalsLetGo()), 2).at_peak["activations"] == 128


def test_liveness_with_deaths_by_hand():
    # a (100 B) is read last by op 1 but its tensor is let go only after op 2 (3 events recorded then): alive through op 2;
    # b (50 B) is never let go during the trace: alive to the end
    events = [("forward", "l0", (), ((1, 100),)), ("forward", "l1", (1,), ((2, 50),)), ("forward", "l2", (), ((3, 10),)),
              ("forward", "l3", (), ())]
    live = liveness(events, keep_to_end={3}, deaths={1: 3, 3: 4})
    assert [t[2] + t[4] for t in live["timeline"]] == [100, 150, 160, 60]


def test_liveness_by_hand():
    # op 0 makes a (100 B); op 1 reads a, makes b (50 B); op 2 reads b, makes c (10 B, kept: the output); op 3 makes t (5 B),
    # read by nobody: a temporary of op 3
    events = [("forward", "l0", (), ((1, 100),)), ("forward", "l1", (1,), ((2, 50),)), ("forward", "l2", (2,), ((3, 10),)),
              ("forward", "l3", (), ((4, 5),))]
    live = liveness(events, keep_to_end={3})
    assert [t[2] + t[4] for t in live["timeline"]] == [100, 150, 60, 15]  # op 3: c (kept) 10 + t 5
    assert live["timeline"][3][4] == 5 and live["peak_index"] == 1 and live["peak_dynamic"] == 150
    assert live["by_layer"] == {"l0": 100, "l1": 50}


def test_training_with_sgd_by_hand():
    p = predict_memory(resolve(chain()), 2, mode="train", optimizer="sgd")
    # forward leaves r (128 B, saved by ReLU and by Linear 2) and the output o (32 B). Backward: layer 2 makes grad r (128),
    # grad W2 (4 x 16 x 4 = 256) and grad b2 (16); ReLU's backward makes grad h (128), after which r and grad r die;
    # layer 1 makes grad W1 (16 x 8 x 4 = 512) and, reading grad h last, grad b1 (64). At that last op: o 32 + grad h 128
    # = 160 B of activations and all 848 B of gradients. SGD without momentum keeps no state.
    assert p.at_peak["gradients"] == CHAIN_PARAMS and p.at_peak["activations"] == 160 and p.at_peak["optimizer state"] == 0
    assert p.peak_phase == "backward" and p.peak_bytes == 160 + CHAIN_PARAMS + CHAIN_PARAMS + CHAIN_INPUT


def test_training_state_of_momentum_and_adamw_by_hand():
    momentum = predict_memory(resolve(chain()), 2, mode="train", optimizer="sgd-momentum")
    assert momentum.at_peak["optimizer state"] == CHAIN_PARAMS  # one momentum buffer per parameter: 848 B
    adamw = predict_memory(resolve(chain()), 2, mode="train", optimizer="adamw")
    # exp_avg and exp_avg_sq per parameter (2 x 848 B) and a 0-dim fp32 step per parameter (4 tensors x 4 B)
    assert adamw.at_peak["optimizer state"] == 2 * CHAIN_PARAMS + 4 * 4
    assert adamw.peak_bytes >= momentum.peak_bytes + CHAIN_PARAMS


def test_bad_optimizer_and_mode():
    with pytest.raises(UserInputError, match="unknown optimizer 'lion'; effkit models: sgd, sgd-momentum, adamw"):
        predict_memory(resolve(chain()), 2, mode="train", optimizer="lion")
    r = runner.invoke(app, ["trace", "resnet18", "--memory", "--mode", "train", "--optimizer", "lion"])
    assert r.exit_code == 2 and "sgd, sgd-momentum, adamw" in r.stderr


def test_fits_bisection_with_a_stubbed_peak():
    # peak(b) = 1 GB + b x 100 MB; budget 40 GB: usable = (40e9 - 600 MiB) x 0.95; largest b with 1e9 + b 1e8 <= usable
    budget = 40 * 10**9
    cap = usable(budget)
    assert cap == int((budget - CONTEXT_BYTES) * (1 - HEADROOM_FRACTION))
    best, tried = largest_batch(lambda b: 10**9 + b * 10**8, budget)
    assert best == (cap - 10**9) // 10**8
    assert 10**9 + best * 10**8 <= cap < 10**9 + (best + 1) * 10**8
    assert len(tried) < 20  # doubling then bisection, not a scan
    assert largest_batch(lambda b: 10**12, budget)[0] == 0  # not even batch 1


def test_fits_sizes_and_errors():
    assert parse_size("80GB") == 80 * 10**9 and parse_size("40 GiB") == 40 * 2**30 and parse_size("512mb") == 512 * 10**6
    for bad in ("80XB", "lots", "-5GB"):
        r = runner.invoke(app, ["trace", "resnet18", "--fits", bad])
        assert r.exit_code == 2 and "is not a size" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    import torch

    if not torch.cuda.is_available():
        r = runner.invoke(app, ["trace", "resnet18", "--fits", "cuda"])
        assert r.exit_code == 2 and "needs a CUDA GPU" in r.stderr


def test_cli_memory_and_fits(tmp_path):
    r = runner.invoke(app, ["trace", "resnet18", "--memory", "--batch", "8", "--format", "json"])
    assert r.exit_code == 0, r.output
    import json

    d = json.loads(r.stdout)
    assert d["peak_bytes"] == sum(d["at_peak"].values()) and d["at_peak"]["parameters"] == 11_689_512 * 4
    r = runner.invoke(app, ["trace", "resnet18", "--fits", "2GB"])
    assert r.exit_code == 0 and "the largest batch whose predicted peak fits" in r.stdout
