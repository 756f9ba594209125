"""`effkit.profile` and `effkit.compare`: trace + ceilings + bench + per-layer times + analysis
+ report, one run folder per model. The stages are called through their public APIs, in
the order model → trace → run → analysis → report."""
from __future__ import annotations

import csv
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from effkit.analysis import ModelAnalysis, analyse, roof_from_ceilings, roof_from_spec
from effkit.errors import ModelRunError, UserInputError, check_positive
from effkit.models.registry import get_entry


@dataclass(frozen=True)
class ProfileRun:
    folder: Path
    analyses: tuple[ModelAnalysis, ...]

    @property
    def report(self) -> Path:
        return self.folder / "index.html"


def _top1(model, accuracy: dict | None) -> float | None:
    if accuracy and str(model) in accuracy:
        return accuracy[str(model)]
    if isinstance(model, str) and ":" not in model:
        return get_entry(model).published.get("top1")
    return None


def read_accuracy(path: str | None) -> dict | None:
    """A CSV of model, top1 (%)."""
    if not path:
        return None
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"accuracy file {path!r} does not exist")
    with open(p) as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"model", "top1"} <= set(rows[0]):
        raise UserInputError(f"accuracy file {path!r} needs the columns model,top1")
    return {r["model"]: float(r["top1"]) for r in rows}


def model_name(model) -> str:
    """A short, file-safe name for a model spec or module."""
    raw = model.split(":")[-1].split("/")[-1] if isinstance(model, str) else type(model).__name__
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw)


def default_folder(model, device: str, dtype: str) -> Path:
    name = model_name(model)
    return Path("reports") / f"{name}-{device.replace(':', '')}-{dtype}-{time.strftime('%Y%m%d-%H%M%S')}"


def profile(
    model,
    *,
    device: str = "cpu",
    batch: int | list[int] = 1,
    dtype: str = "fp32",
    out: str | Path | None = None,
    ceilings: str | None = None,
    measure: bool | None = None,
    channels_last: bool = False,
    cuda_graph: bool = False,
    compile: bool = False,
    fuse: str | None = None,
    min_time_s: float = 1.0,
    accuracy: dict | None = None,
    input_shape: tuple[int, ...] | None = None,
    resolution: int | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> ProfileRun:
    """Trace, measure, analyse and report one model into a run folder (see the module docstring).

    `ceilings` (a datasheet name such as 'h100', or a ceilings JSON) analyses against those
    roofs and, unless `measure=True`, skips measuring: counts-only roofline and waterline.
    """
    from effkit.device.ceilings import device_ceilings
    from effkit.report.run_dir import write_profile
    from effkit.run.bench import bench
    from effkit.trace import trace

    batches = [batch] if isinstance(batch, int) else list(batch)
    for b in batches:
        check_positive("batch", b)
    measure = (ceilings is None) if measure is None else measure
    stage = on_stage or (lambda s: None)
    trace_dtype = "fp32" if dtype == "tf32" else dtype
    stage("ceilings")
    roof = roof_from_spec(ceilings, dtype) if ceilings else roof_from_ceilings(device_ceilings(device), dtype)
    traces = []
    for b in batches:
        stage(f"trace (batch {b})")
        try:
            traces.append(trace(model, input_shape, batch=b, resolution=resolution, dtype=trace_dtype, device="meta"))
        except ModelRunError:  # a model that cannot run on fake tensors: count on real CPU tensors
            traces.append(trace(model, input_shape, batch=b, resolution=resolution, dtype=trace_dtype, device="cpu"))
    points = [None] * len(batches)
    bench_dict = None
    # a counts-only run against a datasheet or ceilings file is named for that, not for this machine
    folder = Path(out) if out else default_folder(model, device if (measure or ceilings is None) else "counts", dtype)
    if measure:
        stage("bench and per-layer times")
        folder.mkdir(parents=True, exist_ok=True)
        r = bench(model, batches, device=device, dtype=dtype, input_shape=input_shape, resolution=resolution, channels_last=channels_last, cuda_graph=cuda_graph, compile=compile,
                  layers=True, min_time_s=min_time_s, json_path=folder / "bench.json",
                  on_stage=lambda m: stage(f"bench: {m}"))
        points = [p if p.status == "ok" else None for p in r.points]
        bench_dict = r.to_dict()
    stage("analysis")
    top1 = _top1(model, accuracy)
    analyses = [analyse(t, roof, p, fuse=fuse, top1=top1) for t, p in zip(traces, points)]
    stage("report")
    write_profile(folder, analyses, traces[-1].rows(), bench_dict)
    return ProfileRun(folder, tuple(analyses))


def compare(models: list, *, out: str | Path | None = None, on_model: Callable[[str], None] | None = None, **kw) -> ProfileRun:
    """Profile several models into sub-folders of one folder and write a comparison report."""
    from effkit.report.run_dir import write_comparison

    if len(models) < 2:
        raise UserInputError("compare needs at least two models")
    folder = Path(out) if out else Path("reports") / time.strftime("compare-%Y%m%d-%H%M%S")
    analyses, links = [], {}
    for m in models:
        if on_model:
            on_model(str(m))
        run = profile(m, out=folder / model_name(m), **kw)
        analyses.append(run.analyses[-1])
        links[run.analyses[-1].model] = str(run.folder.relative_to(folder) / "index.html")
    write_comparison(folder, analyses, links)
    return ProfileRun(folder, tuple(analyses))
