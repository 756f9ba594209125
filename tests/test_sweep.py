"""effkit sweep (issue 17): the grid, the work queue on the c10d store, torchrun on gloo with CPU ranks, restarts,
reruns, bad input, and the queue's balance with stubbed point durations."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from effkit.cli import app
from effkit.errors import UserInputError
from effkit.run.queue import Queue, simulate
from effkit.sweeping import MANIFEST, POINTS, build_grid, claim_folder, expand_models, grid_spec, parse_knobs

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "sweep_models.py"
TINY = [f"{FIX}:tiny_a", f"{FIX}:tiny_b", f"{FIX}:tiny_c"]
# roofs for the CPU (any numbers serve: the tests check the bookkeeping, not the efficiency)
CEIL = {"name": "test cpu", "peak_flops": {"fp32": 1e11, "bf16": 1e11}, "bandwidth_bytes_per_s": 2e10}
POINT_LINE = re.compile(r"\[(\S+-b\d+-[0-9a-f]{16})\]")


@pytest.fixture
def ceilings(tmp_path):
    p = tmp_path / "ceil.json"
    p.write_text(json.dumps(CEIL))
    return str(p)


def torchrun(args: list[str], nproc: int = 2, restarts: int = 0, env: dict | None = None, timeout: int = 240):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", f"--max-restarts={restarts}",
           "-m", "effkit", "sweep", *args]
    e = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e, cwd=ROOT)


def measured_keys(output: str) -> list[str]:
    """The point keys the ranks logged as measured (one line per point, wherever it was measured)."""
    return POINT_LINE.findall(output)


def points(folder: Path) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in (folder / POINTS).glob("*.json")}


def test_two_ranks_on_gloo_measure_every_point_once_and_merge_them(tmp_path, ceilings):
    out = tmp_path / "sw"
    r = torchrun([*TINY, "--batch", "1,2", "--precision", "fp32,bf16", "--min-time", "0.01", "--ceilings", ceilings, "--out", str(out)])
    assert r.returncode == 0, r.stderr[-3000:]
    keys = measured_keys(r.stdout + r.stderr)
    # 3 models x 2 batches x 2 precisions = 12 points, each logged once, by one rank or the other
    assert len(keys) == 12 and len(set(keys)) == 12
    found = points(out)
    assert set(found) == set(keys) and all(d["status"] == "ok" for d in found.values())
    assert {d["rank"] for d in found.values()} == {0, 1}  # both ranks drew from the queue
    import pandas as pd

    table = pd.read_csv(out / "sweep.csv")
    assert len(table) == 12 and set(table["status"]) == {"ok"}
    for col in ("infer_samples_per_sec", "infer_step_time", "infer_batch_size", "infer_img_size", "param_count", "macs", "efficiency",
                "waterline_ms", "step_time_iqr_ms", "host"):
        assert table[col].notna().all(), col
    # param_count in millions as timm writes it: tiny_a is conv 3->4 (3*9*4 + 4 = 112) + linear 4->10 (50) = 162 parameters
    assert table.loc[table["spec"].str.endswith(":tiny_a"), "param_count"].iloc[0] == round(162 / 1e6, 2)
    assert (table["infer_img_size"] == 16).all()
    assert (out / "index.html").is_file()
    assert json.loads((out / MANIFEST).read_text())["grid"]["precisions"] == ["fp32", "bf16"]  # the merge leaves the grid alone
    # a rerun of the same command skips everything: no point measured, no point file rewritten
    mtimes = {p: p.stat().st_mtime_ns for p in (out / POINTS).glob("*.json")}
    again = runner.invoke(app, ["sweep", *TINY, "--batch", "1,2", "--precision", "fp32,bf16", "--min-time", "0.01", "--ceilings", ceilings,
                                "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert not measured_keys(again.output) and "12 points measured" in again.output
    assert mtimes == {p: p.stat().st_mtime_ns for p in (out / POINTS).glob("*.json")}
    # `effkit report DIR` merges the table and the report again from the point files
    (out / "sweep.csv").unlink()
    rebuilt = runner.invoke(app, ["report", str(out)])
    assert rebuilt.exit_code == 0 and "12 points ok" in rebuilt.output and len(pd.read_csv(out / "sweep.csv")) == 12


def test_a_worker_killed_mid_sweep_loses_nothing_and_repeats_nothing(tmp_path, ceilings):
    out = tmp_path / "sw"
    marker = tmp_path / "killed"
    r = torchrun([f"{FIX}:tiny_a", f"{FIX}:killer", f"{FIX}:tiny_b", "--batch", "1,2", "--min-time", "0.01", "--ceilings", ceilings,
                  "--out", str(out)], restarts=1, env={"EFFKIT_TEST_KILL_MARKER": str(marker)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert marker.exists()  # the killer did stop its worker once; torchrun restarted the ranks
    keys = measured_keys(r.stdout + r.stderr)
    found = points(out)
    assert len(found) == 6 and all(d["status"] == "ok" for d in found.values())  # nothing lost
    assert sorted(keys) == sorted(set(keys)) and set(keys) == set(found)  # nothing measured twice


def test_a_point_that_kills_its_worker_twice_is_recorded_failed(tmp_path, ceilings):
    out = tmp_path / "sw"
    r = torchrun([f"{FIX}:always_killer", f"{FIX}:tiny_a", "--batch", "1", "--min-time", "0.01", "--ceilings", ceilings, "--out", str(out)],
                 restarts=2, env={"EFFKIT_TEST_KILL_MARKER": str(tmp_path / "k")})
    assert r.returncode == 0, r.stderr[-3000:]
    found = points(out)
    bad = [d for d in found.values() if d["status"] != "ok"]
    assert len(found) == 2 and len(bad) == 1
    assert bad[0]["status"] == "failed" and "stopped 2 times" in bad[0]["note"]


def test_another_grid_in_the_same_folder_is_refused_naming_what_differs(tmp_path):
    models = expand_models(["resnet18"])
    spec = grid_spec(models, [1], ["fp32"], {}, "cpu", 0.5, False, {})
    tasks = build_grid(models, [1], ["fp32"], {}, "cpu")
    claim_folder(tmp_path, spec, tasks, force=False)
    claim_folder(tmp_path, spec, tasks, force=False)  # the same grid resumes
    other = grid_spec(models, [1, 8], ["fp32"], {}, "cpu", 0.5, False, {})
    with pytest.raises(UserInputError, match=r"another grid \(differing: batches\).*--force"):
        claim_folder(tmp_path, other, tasks, force=False)
    (tmp_path / POINTS).mkdir(exist_ok=True)
    (tmp_path / POINTS / "x.json").write_text("{}")
    claim_folder(tmp_path, other, tasks, force=True)  # --force starts over
    assert not list((tmp_path / POINTS).iterdir()) and json.loads((tmp_path / MANIFEST).read_text())["grid"] == other


def test_bad_input_is_reported_before_any_work(tmp_path):
    r = runner.invoke(app, ["sweep", "resnet18", "resnet_nope", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "resnet_nope" in r.stderr and not (tmp_path / "x").exists()
    r = runner.invoke(app, ["sweep", "zzz*"])
    assert r.exit_code == 2 and "matching no built-in model" in r.stderr
    r = runner.invoke(app, ["sweep", "resnet18", "--knob", "channels_last=maybe"])
    assert r.exit_code == 2 and "on, off" in r.stderr
    with pytest.raises(UserInputError, match="unknown knob 'fusion'"):
        parse_knobs(["fusion=on"])
    assert parse_knobs(["channels-last=on,off"]) == {"channels_last": ["on", "off"]}
    assert expand_models(["resnet1?"]) == ["resnet18"]


def test_more_ranks_than_gpus_is_a_clear_error(monkeypatch):
    import torch

    from effkit.run.queue import place

    monkeypatch.setenv("LOCAL_RANK", "2")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(UserInputError, match="local rank 2 has none; use --nproc-per-node=2"):
        place("cuda")


def test_the_grid_builds_one_task_per_model_precision_and_knob_value():
    tasks = build_grid(["resnet18", "mobilenet_v2"], [1, 64], ["fp32", "bf16"], {"channels_last": ["on", "off"]}, "cpu")
    # 2 models x 2 precisions x 2 layouts = 8 tasks, each measuring both batches: 16 points, 16 distinct keys
    assert len(tasks) == 8 and all(t.config.batches == (1, 64) for t in tasks)
    keys = {t.key(b) for t in tasks for b in t.config.batches}
    assert len(keys) == 16
    assert {t.config.layout for t in tasks} == {"channels_last", "contiguous"}


def _rank(port: int, rank: int, durations: list[float], out) -> None:
    """A CPU rank that draws tasks from the shared counter and 'measures' each by sleeping its stubbed duration."""
    import torch.distributed as dist

    store = dist.TCPStore("127.0.0.1", port, 4, rank == 0, wait_for_workers=False)
    q = Queue(len(durations), store)
    store.add("ready", 1)
    while store.add("ready", 0) < 4:
        time.sleep(0.01)
    start = time.perf_counter()
    while (i := q.next()) is not None:
        time.sleep(durations[i])
    out.put((rank, time.perf_counter() - start))
    store.add("finished", 1)
    while rank == 0 and store.add("finished", 0) < 4:  # the server lives until every rank is done
        time.sleep(0.01)


def test_the_queue_balances_four_cpu_ranks_with_stubbed_durations():
    """Durations like a zoo sweep's, largest first (as order_tasks sorts them): 40 points, 0.02 to 0.3 s."""
    import random
    import socket

    rng = random.Random(0)
    durations = sorted((rng.uniform(0.02, 0.3) for _ in range(40)), reverse=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(port, r, durations, out)) for r in range(4)]
    for p in procs:
        p.start()
    ends = dict(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    makespan = max(ends.values())
    idle = sum(makespan - e for e in ends.values()) / (4 * makespan)
    # every rank busy until near the end: the idle time at the end is under 10 % of the ranks' total time
    assert idle < 0.10, (idle, ends)
    assert simulate(durations, 4)["idle_share"] < 0.10


def test_timm_models_can_be_measured_at_timms_test_size(monkeypatch):
    """timm's benchmark tables use each model's test_input_size (288 px for resnet50); --timm-test-size asks for it."""
    import types

    from effkit.sweeping import timm_test_sizes

    cfgs = {"resnet50": types.SimpleNamespace(test_input_size=(3, 288, 288), input_size=(3, 224, 224)),
            "vit_small_patch16_224": types.SimpleNamespace(test_input_size=None, input_size=(3, 224, 224))}
    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(get_pretrained_cfg=lambda name: cfgs.get(name)))
    assert timm_test_sizes(["timm:resnet50", "timm:vit_small_patch16_224", "timm:unknown", "resnet50"]) == \
        {"timm:resnet50": 288, "timm:vit_small_patch16_224": 224}
    # the size is part of the point's key, so a sweep at timm's size never reuses a 224 px point
    t224, t288 = build_grid(["resnet50"], [1], ["fp32"], {}, "cpu")[0], build_grid(["resnet50"], [1], ["fp32"], {}, "cpu", resolutions={"resnet50": 288})[0]
    assert t224.key(1) != t288.key(1) and t288.key(1).endswith("-r288")


def test_compare_draws_through_the_same_queue_and_resumes_after_an_interrupt(tmp_path):
    """compare profiles its models through run/queue.py as sweep does: an interrupted comparison keeps the profiles it
    finished and a rerun profiles only the rest (counts-only against a datasheet here: no measuring in CI)."""
    import effkit

    out = tmp_path / "cmp"
    seen = []

    def stop_at_second(name):
        seen.append(name)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        effkit.compare(["resnet18", "mobilenet_v2"], ceilings="h100", out=out, on_model=stop_at_second)
    first = out / "resnet18" / "run.json"
    assert first.is_file() and not (out / "run.json").exists()
    stamp = first.stat().st_mtime_ns
    again = []
    r = effkit.compare(["resnet18", "mobilenet_v2"], ceilings="h100", out=out, on_model=again.append)
    assert again == ["mobilenet_v2"] and first.stat().st_mtime_ns == stamp  # resnet18 was not profiled again
    assert [a.model for a in r.analyses] == ["resnet18", "mobilenet_v2"] and (out / "index.html").is_file()
    with pytest.raises(UserInputError, match="--force"):  # a finished comparison is not overwritten silently
        effkit.compare(["resnet18", "mobilenet_v2"], ceilings="h100", out=out)


def test_scale_draws_through_the_same_queue_and_reuses_finished_variants(tmp_path):
    import effkit

    first, again, other = [], [], []
    effkit.scale("regnety_200mf", ["w"], [1, 2], out=tmp_path / "s", on_point=first.append)
    r = effkit.scale("regnety_200mf", ["w"], [1, 2], out=tmp_path / "s", on_point=again.append)
    assert len(first) == 2 and again == [] and [p.factor for p in r.points] == [1, 2]  # the rerun measured nothing
    effkit.scale("regnety_200mf", ["w"], [1, 2], batch=2, out=tmp_path / "s", on_point=other.append)
    assert len(other) == 2  # another batch is another variant: nothing reused


def test_gpus_asks_for_gpus_this_host_has():
    r = runner.invoke(app, ["sweep", "resnet18", "--gpus", "all", "--device", "cuda"])
    assert r.exit_code == 2 and "--gpus 'all': this host has no CUDA GPU" in r.stderr


def test_point_keys_of_the_committed_h200_sweep_are_still_what_this_effkit_computes(monkeypatch):
    """RunConfig.key() names point files: a field added to RunConfig must not rename every earlier point (the H200
    sweep's keys were computed before RunConfig.fused existed)."""
    from effkit import sweeping

    monkeypatch.setattr(sweeping, "check_precision", lambda p, d: None)  # no CUDA here to ask about bf16
    folder = ROOT / "reports" / "examples" / "sweep_h200_bf16_nhwc_graph"
    grid = json.loads((folder / MANIFEST).read_text())
    g = grid["grid"]
    tasks = build_grid(g["models"], g["batches"], g["precisions"], g["knobs"], g["device"], g["min_time_s"], g["layers"])
    assert sorted(t.key(b) for t in tasks for b in t.config.batches) == sorted(grid["points"])


def test_more_bad_input_each_with_its_message(tmp_path):
    import effkit
    from effkit.config import RunConfig
    from effkit.run.queue import Attempts
    from effkit.sweeping import merge

    with pytest.raises(UserInputError, match="give at least one model or pattern"):
        expand_models([])
    with pytest.raises(UserInputError, match=r"is not a sweep folder \(no readable grid.json\)"):
        merge(tmp_path)
    with pytest.raises(UserInputError, match="--fused swaps blocks for inference kernels.*it needs --mode infer, not --mode train"):
        RunConfig(fused=True, mode="train")
    assert RunConfig(fused=True, compile=True).compile  # the rest of the model compiled around the fused kernels
    # a comparison whose every model stopped its worker twice: nothing to compare, and it says why
    att = Attempts(tmp_path / "cmp" / ".attempts")
    for name in ("resnet18", "mobilenet_v2"):
        att.start(name)
        att.start(name)
    with pytest.raises(UserInputError, match="no model of the comparison could be profiled: resnet18: not profiled: its worker was stopped 2 times"):
        effkit.compare(["resnet18", "mobilenet_v2"], ceilings="h100", out=tmp_path / "cmp")
