"""RunConfig, ModelRef and the run record: serialisable, stable, versioned; old run folders still rebuild."""
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import effkit
from effkit.config import PRECISIONS, RunConfig, check_precision, get_precision
from effkit.errors import UserInputError
from effkit.models import ModelRef, resolve
from effkit.report.record import SCHEMA_VERSION, RunRecord
from effkit.report.run_dir import rebuild

FIXTURE = Path(__file__).parent / "fixtures" / "run_v1_profile"


def test_run_config_round_trips_and_has_a_stable_key():
    c = RunConfig(device="cuda:0", precision="bf16", batches=[1, 64], layout="channels_last", cuda_graph=True)
    assert c.batches == (1, 64)  # lists become tuples: the config is hashable and frozen
    back = RunConfig.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back == c and back.key() == c.key()
    assert c.replace(batches=(64,)).key() != c.key()
    # the key is the same in another process (no hash randomisation, no object ids)
    code = ("from effkit.config import RunConfig; print(RunConfig(device='cuda:0', precision='bf16', batches=[1, 64], "
            "layout='channels_last', cuda_graph=True).key())")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == c.key()
    assert c.describe() == "bf16, infer, channels-last, CUDA graph"


@pytest.mark.parametrize("kw,pattern", [
    ({"precision": "fp8"}, r"unknown precision 'fp8'; choose one of: fp32, tf32, fp16, bf16, bf16-mixed, fp16-mixed"),
    ({"batches": [1, 0]}, r"batch must be a positive integer, got 0"),
    ({"batches": []}, r"give at least one batch size"),
    ({"mode": "eval"}, r"unknown mode 'eval'; choose one of: infer, train"),
    ({"layout": "nhwc"}, r"unknown layout 'nhwc'; choose one of: contiguous, channels_last"),
])
def test_run_config_refuses_bad_values(kw, pattern):
    with pytest.raises(UserInputError, match=pattern):
        RunConfig(**kw)


def test_run_config_from_dict_names_unknown_fields():
    with pytest.raises(UserInputError, match="unknown field.*warp_speed"):
        RunConfig.from_dict({**RunConfig().to_dict(), "warp_speed": True})


def test_precision_table():
    assert [p for p in PRECISIONS] == ["fp32", "tf32", "fp16", "bf16", "bf16-mixed", "fp16-mixed"]
    tf32 = get_precision("tf32")
    assert (tf32.param_dtype, tf32.compute_dtype, tf32.tf32) == ("fp32", "tf32", True)
    assert get_precision("bf16").compute_dtype == "bf16" and get_precision("fp32").compute_dtype == "fp32"
    with pytest.raises(UserInputError, match="precision tf32 cannot run on cpu: tf32 is a CUDA tensor-core mode; choose one of: fp32, fp16, bf16, bf16-mixed, fp16-mixed"):
        check_precision("tf32", "cpu")


def test_model_ref_is_resolved_once_and_pickles():
    ref = resolve("convnext_t", resolution=160)
    assert ref.name == "convnext_tiny" and ref.source == "zoo" and ref.input_shapes == ((3, 160, 160),)
    assert ref.top1 and "source" in ref.published
    back = pickle.loads(pickle.dumps(ref))
    assert back == ref and resolve(ref) is ref
    m = ref.build()
    assert sum(p.numel() for p in m.parameters()) == 28_589_128  # torchvision's convnext_tiny


def test_model_ref_of_a_factory_reads_its_declared_input(tmp_path):
    (tmp_path / "m.py").write_text("import torch.nn as nn\n"
                                   "def net(width=4):\n    m = nn.Sequential(nn.Conv2d(3, width, 3))\n    m.input_shape = (3, 20, 20)\n    return m\n")
    ref = resolve(f"{tmp_path / 'm.py'}:net", width=6)
    assert ref.source == "file" and ref.input_shapes == ((3, 20, 20),) and dict(ref.kwargs) == {"width": 6}
    assert ref.build().__getitem__(0).out_channels == 6
    assert pickle.loads(pickle.dumps(ref)) == ref


def test_model_ref_refuses_unknown_builder_arguments():
    with pytest.raises(UserInputError, match="regnety_400mf: unexpected builder argument.*wdth; its builder takes: width"):
        resolve("regnety_400mf", wdth=2)  # a builder with a signature: refused when resolved
    with pytest.raises(UserInputError, match="resnet18: .*unexpected keyword argument 'wdth'"):
        effkit.trace("resnet18", wdth=2, device="meta")  # a builder taking **kw: refused when built


def test_schema_1_run_folder_still_rebuilds(tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(FIXTURE, folder)
    rec = RunRecord.load(folder)
    assert rec.schema_version == 1 and rec.kind == "profile" and rec.config.batches == (1, 2)
    assert rec.environment.torch and rec.models[0].layers and len(rec.analyses) == 2
    out = rebuild([str(folder)])
    html = (out / "index.html").read_text()
    assert "effkit profile: TinyNet" in html and "schema 1" in html
    # and it can join a comparison with a run written now
    tiny = resolve(effkit.trace.__module__ and __import__("tests.test_report", fromlist=["TinyNet"]).TinyNet(), (3, 16, 16))
    new = effkit.profiling.run_profile(tiny, RunConfig(min_time_s=0.0), effkit.profiling.ProfileOptions(out=tmp_path / "new"))
    cmp = rebuild([str(folder), str(new.folder)], str(tmp_path / "cmp"))
    assert (cmp / "index.html").exists() and RunRecord.load(cmp).kind == "compare"


def test_record_round_trips_and_names_unknown_schema_versions(tmp_path):
    from tests.test_report import TinyNet

    run = effkit.profile(TinyNet(), batch=[1, 2], out=tmp_path / "r", input_shape=(3, 16, 16), min_time_s=0.0)
    rec = RunRecord.load(run.folder)
    assert rec.schema_version == SCHEMA_VERSION and rec.status == "complete" and rec == run.record
    (m,) = rec.models
    assert [c["batch"] for c in m.counts] == [1, 2] and len(m.points) == 2 and m.points[0].timing.samples_s
    assert m.points[0].environment.host and rec.config.batches == (1, 2)
    d = json.loads((run.folder / "run.json").read_text())
    d["schema_version"] = 99
    (run.folder / "run.json").write_text(json.dumps(d))
    with pytest.raises(UserInputError, match=r"schema version 99; this effkit \(.*\) reads versions 1, 2"):
        RunRecord.load(run.folder)


def test_a_model_ref_is_what_stages_take():
    ref = resolve("resnet18", resolution=32)
    assert isinstance(ref, ModelRef)
    r = effkit.trace(ref, device="meta")
    assert r.model == "resnet18" and r.input_shapes == ((1, 3, 32, 32),)
