"""`effkit.profile` and `effkit.compare`: trace + ceilings + bench + per-layer times + analysis
+ report, one run folder per model. The stages are called through their public APIs, in
the order model → trace → run → analysis → report.

The keyword forms (`profile(model, device=..., batch=...)`) resolve the model once and build
a RunConfig; `run_profile(ref, config, options)` is the whole chain on those objects.
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from effkit.analysis import ModelAnalysis, analyse
from effkit.config import RunConfig
from effkit.errors import ModelRunError, UserInputError
from effkit.files import safe_name
from effkit.models.ref import ModelRef, resolve


@dataclass(frozen=True)
class ProfileRun:
    folder: Path
    analyses: tuple[ModelAnalysis, ...]
    record: object = None  # the RunRecord written to the folder

    @property
    def report(self) -> Path:
        return self.folder / "index.html"


@dataclass(frozen=True)
class ProfileOptions:
    """What a profile does beyond measuring: where it writes, which roofs, which fusion blocks."""

    out: str | Path | None = None  # the run folder (default: reports/MODEL-DEVICE-PRECISION-TIME)
    ceilings: str | None = None  # a datasheet name or ceilings JSON instead of measured ceilings
    measure: bool | None = None  # default: measure unless `ceilings` is given
    fuse: str | None = None  # fusion what-if blocks: module paths matching this pattern
    top1: float | None = None  # accuracy for the accuracy-vs-latency view


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
    """A short, file-safe name for a model spec, module or ModelRef."""
    return safe_name(model.name if isinstance(model, ModelRef) else model if isinstance(model, str) else type(model).__name__)


def default_folder(ref: ModelRef, device: str, precision: str) -> Path:
    return Path("reports") / f"{model_name(ref)}-{device.replace(':', '')}-{precision}-{time.strftime('%Y%m%d-%H%M%S')}"


def _config(device, batch, dtype, channels_last, cuda_graph, compile, min_time_s) -> RunConfig:
    return RunConfig(device=device, precision=dtype, batches=batch, layout="channels_last" if channels_last else "contiguous",
                     cuda_graph=cuda_graph, compile=compile, min_time_s=min_time_s)


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
    ref = resolve(model, input_shape, resolution=resolution)
    config = _config(device, batch, dtype, channels_last, cuda_graph, compile, min_time_s)
    top1 = (accuracy or {}).get(str(model), ref.top1)
    return run_profile(ref, config, ProfileOptions(out, ceilings, measure, fuse, top1), on_stage)


def run_profile(ref: ModelRef, config: RunConfig, options: ProfileOptions = ProfileOptions(),
                on_stage: Callable[[str], None] | None = None) -> ProfileRun:
    """The whole chain for one resolved model under one configuration."""
    from effkit.device.ceilings import device_ceilings
    from effkit.device.roofs import roof_from_ceilings, roof_from_spec
    from effkit.report.record import ModelRecord, RunRecord
    from effkit.report.run_dir import write_views
    from effkit.run.runner import run
    from effkit.trace.tracer import trace_ref

    measure = (options.ceilings is None) if options.measure is None else options.measure
    stage = on_stage or (lambda s: None)
    roof_dtype = config.prec.compute_dtype
    stage("ceilings")
    roof = roof_from_spec(options.ceilings, roof_dtype) if options.ceilings else roof_from_ceilings(device_ceilings(config.device), roof_dtype)
    stage(f"trace (batch {', '.join(map(str, config.batches))})")
    try:
        traces = trace_ref(ref, config.batches, precision=config.precision, device="meta")
    except ModelRunError:  # a model that cannot run on fake tensors: count on real CPU tensors
        traces = trace_ref(ref, config.batches, precision=config.precision, device="cpu")
    # a counts-only run against a datasheet or ceilings file is named for that, not for this machine
    folder = Path(options.out) if options.out else default_folder(ref, config.device if (measure or options.ceilings is None) else "counts",
                                                                  config.precision)
    points, environment = [None] * len(traces), None
    if measure:
        stage("bench and per-layer times")
        r = run(ref, config, on_stage=lambda m: stage(f"bench: {m}"))
        points = [p if p.status == "ok" else None for p in r.points]
        environment = r.points[0].environment if r.points else None
    stage("analysis")
    analyses = tuple(analyse(t, roof, p, fuse=options.fuse, top1=options.top1) for t, p in zip(traces, points))
    stage("report")
    model = ModelRecord(ref.name, analyses, tuple({"batch": t.batch, **t.totals_row()} for t in traces), tuple(traces[-1].rows()),
                        tuple(p for p in points if p is not None))
    record = RunRecord("profile", config, (model,), environment,
                       options={"ceilings": options.ceilings, "measure": measure, "fuse": options.fuse, "input_shapes": [list(s) for s in ref.input_shapes]})
    record.save(folder)
    write_views(folder, record)
    return ProfileRun(folder, analyses, record)


def compare(models: list, *, out: str | Path | None = None, on_model: Callable[[str], None] | None = None, accuracy: dict | None = None,
            device: str = "cpu", batch: int | list[int] = 1, dtype: str = "fp32", channels_last: bool = False, cuda_graph: bool = False,
            compile: bool = False, min_time_s: float = 1.0, input_shape=None, resolution=None, ceilings=None, measure=None, fuse=None,
            on_stage=None) -> ProfileRun:
    """Profile several models into sub-folders of one folder and write a comparison report."""
    if len(models) < 2:
        raise UserInputError("compare needs at least two models")
    refs = [resolve(m, input_shape, resolution=resolution) for m in models]
    config = _config(device, batch, dtype, channels_last, cuda_graph, compile, min_time_s)
    top1 = {ref.name: (accuracy or {}).get(str(m), ref.top1) for m, ref in zip(models, refs)}
    return run_compare(refs, config, ProfileOptions(out, ceilings, measure, fuse), top1, on_model)


def run_compare(refs: list[ModelRef], config: RunConfig, options: ProfileOptions, top1: dict | None = None,
                on_model: Callable[[str], None] | None = None) -> ProfileRun:
    from dataclasses import replace

    from effkit.report.record import ModelRecord, RunRecord
    from effkit.report.run_dir import write_views

    folder = Path(options.out) if options.out else Path("reports") / time.strftime("compare-%Y%m%d-%H%M%S")
    models, environment = [], None
    for ref in refs:
        if on_model:
            on_model(ref.name)
        run = run_profile(ref, config, replace(options, out=folder / model_name(ref), top1=(top1 or {}).get(ref.name)))
        a = run.analyses[-1]
        environment = environment or run.record.environment
        models.append(ModelRecord(a.model, (a,), link=str(run.folder.relative_to(folder) / "index.html")))
    record = RunRecord("compare", config, tuple(models), environment, options={"ceilings": options.ceilings, "fuse": options.fuse})
    record.save(folder)
    write_views(folder, record)
    return ProfileRun(folder, tuple(m.analyses[0] for m in models), record)
