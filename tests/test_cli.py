"""The command line through typer's runner: outputs, files, and every bad-input error."""
import json

import pytest
import torch
from typer.testing import CliRunner

from effkit.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args))


def test_trace_table_and_files(tmp_path):
    res = run("trace", "resnet18", "--format", "table", "--depth", "1", "--device", "meta",
              "--csv", str(tmp_path / "l.csv"), "--json", str(tmp_path / "t.json"))
    assert res.exit_code == 0, res.output
    assert "layer4" in res.output and "MACs (M)" in res.output and "Conventions" in res.output
    totals = json.loads((tmp_path / "t.json").read_text())["totals"]
    assert totals["params"] == 11_689_512  # torchvision resnet18
    for key in ("macs", "flops", "params", "acts", "activation_bytes", "bytes_read", "bytes_written"):
        assert key in totals
    csv = (tmp_path / "l.csv").read_text().splitlines()
    assert csv[0].startswith("path,module_type,calls,output_shape,params,buffers,macs,flops,acts")
    # depth 1: the stem's leaves, the four stages rolled up, the head (flatten is a free view: no root row)
    assert [l.split(",")[0] for l in csv[1:]] == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]


def test_trace_csv_when_piped_and_json_format():
    res = run("trace", "mobilenet_v2", "--device", "meta")
    assert res.exit_code == 0 and res.output.startswith("path,module_type")
    res = run("trace", "mobilenet_v2", "--device", "meta", "--format", "json", "--batch", "2")
    d = json.loads(res.output)
    assert d["input_shapes"] == [[2, 3, 224, 224]] and d["totals"]["macs"] > 0


def test_input_shape_is_one_sample(tmp_path):
    (tmp_path / "m.py").write_text("import torch.nn as nn\ndef f():\n    return nn.Linear(64, 10)\n")
    res = run("trace", f"{tmp_path / 'm.py'}:f", "--batch", "8", "--input-shape", "64", "--format", "json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["input_shapes"] == [[8, 64]] and d["totals"]["macs"] == 8 * 64 * 10


def test_train_mode_columns():
    res = run("trace", "resnet18", "--mode", "train", "--device", "meta", "--resolution", "64", "--format", "json")
    d = json.loads(res.output)
    assert d["totals"]["bwd_flops"] > d["totals"]["flops"] > 0 and d["totals"]["saved_bytes"] > 0


def test_fvcore_counter_column():
    res = run("trace", "resnet18", "--counter", "fvcore", "--resolution", "64", "--format", "table")
    assert res.exit_code == 0, res.output
    assert "fvcore 'flops'" in res.output and "fvcore: 'flops' = MACs" in res.output


def test_models_lists_zoo():
    res = run("models", "conv*")
    assert res.exit_code == 0 and "convnext_tiny" in res.output and "28,589,128" in res.output


def one_line_error(res, pattern):
    assert res.exit_code == 2, res.output
    lines = [l for l in res.output.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.output
    assert "Traceback" not in res.output
    import re

    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.parametrize("args,pattern", [
    (("trace", "resnet5"), r"unknown model 'resnet5' \(did you mean: resnet50, [^)]*resnet18\?\)"),
    (("trace", "convnext_tinny"), r"did you mean: convnext_tiny"),
    (("trace", "resnet18", "--batch", "0"), r"batch must be a positive integer, got 0"),
    (("trace", "resnet18", "--batch", "-2"), r"batch must be a positive integer, got -2"),
    (("trace", "resnet18", "--resolution", "0"), r"resolution must be a positive integer, got 0"),
    (("trace", "resnet18", "--input-shape", "3,a,4"), r"input shape '3,a,4' must be comma-separated positive integers"),
    (("trace", "resnet18", "--device", "tpu"), r"unknown device 'tpu'; choose one of: cpu, meta, cuda, cuda:N"),
    (("trace", "resnet18", "--depth", "-1"), r"depth must be >= 0, got -1"),
    (("trace", "missing/model.py:net"), r"model file 'missing/model.py' does not exist"),
    (("trace", "no_such_package.models:net"), r"module 'no_such_package.models' cannot be imported"),
    (("trace", "effkit.models.resnet:resnet51"), r"has no factory 'resnet51' \(did you mean: resnet50"),
    (("trace", "resnet18", "--device", "meta", "--counter", "fvcore"), r"fvcore needs real tensors"),
])
def test_bad_input_one_line_exit_2(args, pattern):
    one_line_error(run(*args), pattern)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_cuda():
    one_line_error(run("trace", "resnet18", "--device", "cuda"), r"device 'cuda': CUDA is not available on this machine; choose cpu or meta")


def test_bad_dtype_is_a_usage_error():
    res = run("trace", "resnet18", "--dtype", "fp8")
    assert res.exit_code == 2 and "fp8" in res.output and "fp32" in res.output
    one_line_error(res, r"Invalid value for '--precision' / '--dtype': 'fp8' is not one of 'fp32', 'tf32', 'fp16', 'bf16'")


@pytest.mark.parametrize("args,pattern", [
    # typer's own usage errors, one line like effkit's (typer draws them in a box of several lines under the usage)
    (("profile", "convnext_t", "--bogus"), r"^error: No such option: --bogus \(Possible options: "),
    (("trace", "--zzz"), r"^error: No such option: --zzz; `effkit trace --help` lists the options$"),
    (("bogus-cmd",), r"^error: No such command 'bogus-cmd'; the commands are trace, models, device, bench, profile, compare"),
    (("trace", "resnet18", "--format", "xml"), r"^error: Invalid value for '--format': 'xml' is not one of 'auto', 'table', 'csv', 'json'"),
    (("profile", "convnext_t", "--batch"), r"^error: Option '--batch' requires an argument"),
])
def test_usage_errors_are_one_line(args, pattern):
    one_line_error(run(*args), pattern)


def test_a_command_s_own_exit_code_and_help_still_come_through():
    assert run("trace", "--help").exit_code == 0
    assert run("models").exit_code == 0
    res = run()  # no command: the help, exit 2 as before
    assert res.exit_code == 2 and "Usage" in res.output


def test_dtype_the_device_cannot_run(tmp_path):
    (tmp_path / "inv.py").write_text(
        "import torch, torch.nn as nn\n"
        "class Inv(nn.Module):\n    def forward(self, x):\n        return torch.linalg.inv(x)\n"
        "def net():\n    return Inv()\n"
    )
    one_line_error(run("trace", f"{tmp_path / 'inv.py'}:net", "--input-shape", "3,3", "--dtype", "fp16"),
                   r"precision fp16 cannot run on cpu: .*use --precision fp32")


def test_forward_raises_names_layer_and_op(tmp_path):
    (tmp_path / "bad.py").write_text(
        "import torch.nn as nn\n"
        "def net():\n    return nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(5, 2))\n"
    )
    one_line_error(run("trace", f"{tmp_path / 'bad.py'}:net", "--input-shape", "4"),
                   r"layer '2' failed at op aten\.(addmm|mm)\S*: RuntimeError")
    res = run("trace", f"{tmp_path / 'bad.py'}:net", "--input-shape", "4", "--debug")
    assert res.exit_code != 0 and res.exception is not None  # --debug lets the exception through


def test_strict_fails_on_uncovered(tmp_path):
    (tmp_path / "cp.py").write_text(
        "import torch, torch.nn as nn\n"
        "class C(nn.Module):\n    def forward(self, x):\n        return torch.cumprod(x, 1)\n"
        "def net():\n    return C()\n"
    )
    res = run("trace", f"{tmp_path / 'cp.py'}:net", "--input-shape", "5", "--format", "table")
    assert res.exit_code == 0 and "aten.cumprod" in res.output  # listed, with a warning
    res = run("trace", f"{tmp_path / 'cp.py'}:net", "--input-shape", "5", "--strict")
    assert res.exit_code == 1 and "ops without a formula (--strict): aten.cumprod x1" in res.output


def test_model_without_declared_shape(tmp_path):
    (tmp_path / "m.py").write_text("import torch.nn as nn\ndef f():\n    return nn.Linear(3, 3)\n")
    one_line_error(run("trace", f"{tmp_path / 'm.py'}:f"), r"does not declare its input shape; give --input-shape")


def test_bench_cli(tmp_path):
    res = run("bench", "resnet18", "--batch", "1,2", "--resolution", "32", "--min-time", "0", "--top", "3",
              "--json", str(tmp_path / "b.json"))
    assert res.exit_code == 0, res.output
    assert "latency (ms, median)" in res.output and "top 3 layers by CPU op self time" in res.output
    assert [p["batch"] for p in json.loads((tmp_path / "b.json").read_text())["points"]] == [1, 2]


@pytest.mark.parametrize("args,pattern", [
    (("bench", "resnet18", "--batch", "1,0"), r"batch must be a positive integer, got 0"),
    (("bench", "resnet18", "--batch", "1,x"), r"batch '1,x' must be comma-separated positive integers"),
    (("bench", "resnet18", "--dtype", "tf32"), r"precision tf32 cannot run on cpu: tf32 is a CUDA tensor-core mode; choose one of: fp32, fp16, bf16, bf16-mixed, fp16-mixed"),
    (("bench", "resnet18", "--cuda-graph"), r"--cuda-graph needs a CUDA device"),
    (("bench", "resnet99"), r"unknown model 'resnet99'"),
])
def test_bench_bad_input(args, pattern):
    one_line_error(run(*args), pattern)
