"""`effkit.profile` and `effkit.compare`: trace + ceilings + bench + per-layer times + analysis
+ report, one run folder per model. The stages are called through their public APIs, in
the order model → trace → run → analysis → report.

The keyword forms (`profile(model, device=..., batch=...)`) resolve the model once and build
a RunConfig; `run_profile(ref, config, options)` is the whole chain on those objects.
"""
from __future__ import annotations

import contextlib
import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from effkit.analysis import ModelAnalysis, analyse
from effkit.config import RunConfig
from effkit.errors import UserInputError
from effkit.files import safe_name
from effkit.models.ref import ModelRef, resolve
from effkit.report.fusion import fusion_note, fusion_units_note


@dataclass(frozen=True)
class ProfileRun:
    folder: Path
    analyses: tuple[ModelAnalysis, ...]
    record: object = None  # the RunRecord written to the folder

    @property
    def report(self) -> Path:
        return self.folder / "index.html"

    def to_frame(self):
        """One row per model and batch: the summary table (latency, spread, efficiency, ladder, gaps, counts)."""
        import pandas as pd

        return pd.DataFrame([a.summary_row() for a in self.analyses])

    def _repr_html_(self) -> str:
        """In Jupyter: the summary as the report shows it, the figures, and where the report is."""
        from html import escape

        from effkit.report.html import png64
        from effkit.report.summary import DISPLAY_COLS, display_row

        rows = "".join("<tr>" + "".join(f"<td>{escape(str(display_row(a)[c]))}</td>" for c in DISPLAY_COLS) + "</tr>" for a in self.analyses)
        table = "<table><thead><tr>" + "".join(f"<th>{escape(c)}</th>" for c in DISPLAY_COLS) + f"</tr></thead><tbody>{rows}</tbody></table>"
        figs = "".join(f"<img style='max-width:48%' alt='{n}' src='data:image/png;base64,{png64(self.folder / (n + '.png'))}'>"
                       for n in ("efficiency_gap", "roofline", "waterline") if (self.folder / f"{n}.png").is_file())
        return f"{table}<div>{figs}</div><p>report: <code>{escape(str(self.report))}</code></p>"


@dataclass(frozen=True)
class ProfileOptions:
    """What a profile does beyond measuring: where it writes, which roofs, which fusion blocks."""

    out: str | Path | None = None  # the run folder (default: reports/MODEL-DEVICE-PRECISION-TIME)
    ceilings: str | None = None  # a datasheet name or ceilings JSON instead of measured ceilings
    measure: bool | None = None  # default: measure unless `ceilings` is given
    fuse: str | None = None  # fusion what-if blocks: module paths matching this pattern
    top1: float | None = None  # accuracy for the accuracy-vs-latency view
    refresh: bool = False  # measure the device's ceilings again instead of reading the cache
    force: bool = False  # replace a run the folder already holds
    mismatched_ceilings: bool = False  # allow measuring on one kind of device against another's roofs
    fusion_check: bool = False  # a fusion check follows, which times even where the profile itself does not measure


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


def default_batches(device: str) -> tuple[int, ...]:
    """Batch 1 (latency) and 64 (throughput) on a GPU; batch 1 on the CPU."""
    return (1, 64) if device.startswith("cuda") else (1,)


def _config(device, batch, dtype, channels_last, cuda_graph, compile, min_time_s, fused=False) -> RunConfig:
    return RunConfig(device=device, precision=dtype, batches=default_batches(device) if batch is None else batch,
                     layout="channels_last" if channels_last else "contiguous", cuda_graph=cuda_graph, compile=compile, min_time_s=min_time_s,
                     fused=fused)


def profile(
    model,
    *,
    device: str = "cpu",
    batch: int | list[int] | None = None,
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
    input_shape: tuple[int, ...] | list[tuple[int, ...]] | None = None,
    resolution: int | None = None,
    on_stage: Callable[[str], None] | None = None,
    seq_len: int | None = None,
    fused: bool = False,
    selective: bool = True,
    **model_kwargs,
) -> ProfileRun:
    """Trace, measure, analyse and report one model into a run folder (see the module docstring).

    `ceilings` (a datasheet name such as 'h100', or a ceilings JSON) analyses against those
    roofs and, unless `measure=True`, skips measuring: counts-only roofline and waterline.
    `batch` defaults to 1 and 64 on a GPU (latency and throughput), 1 on the CPU.
    `fused` adds the fusion check (`effkit profile --fused`: `fusion_check`, with its selective configuration unless
    `selective=False`) to the run folder and its report.
    """
    ref = resolve(model, input_shape, resolution=resolution, seq_len=seq_len, **model_kwargs)
    config = _config(device, batch, dtype, channels_last, cuda_graph, compile, min_time_s)
    top1 = (accuracy or {}).get(str(model), ref.top1)
    fusing = fusable_blocks(ref) if fused else None  # a model with nothing to fuse is refused before anything is measured
    run = run_profile(ref, config, ProfileOptions(out, ceilings, measure, fuse, top1, fusion_check=fused), on_stage)
    if fused:
        run = run_fusion_check(run, ref, run.record.config, ceilings=ceilings, fusing=fusing, selective=selective, on_stage=on_stage)[0]
    return run


def run_profile(ref: ModelRef, config: RunConfig, options: ProfileOptions = ProfileOptions(),
                on_stage: Callable[[str], None] | None = None) -> ProfileRun:
    """The whole chain for one resolved model under one configuration.

    The run folder is locked while it runs; a folder that holds another run is refused unless
    `options.force`. The record is saved after the trace and after every measured point, so an
    interrupt or a crash leaves a record marked incomplete that `effkit report` rebuilds."""
    from effkit.device.roofs import roof_from_spec
    from effkit.files import FolderLock
    from effkit.report.run_dir import write_views
    from effkit.run.runner import check_config, run

    measure = (options.ceilings is None) if options.measure is None else options.measure
    if measure:
        config = check_config(config)
    stage = on_stage or (lambda s: None)
    if options.ceilings:
        roof = roof_from_spec(options.ceilings, config.prec.compute_dtype)
        _check_roof_matches(roof, options, config, measure or options.fusion_check)
    folder = Path(options.out) if options.out else default_folder(ref, config.device if (measure or options.ceilings is None) else "counts",
                                                                  config.precision)
    with FolderLock(folder):
        _claim(folder, options.force)
        warnings = []
        if not options.ceilings:
            stage("ceilings")
            roof, warnings = _measured_roof(config, options.refresh)
        stage(f"trace (batch {', '.join(map(str, config.batches))})")
        traces = _traces(ref, config)
        # a mixed precision is set beside the same model cast to its autocast dtype: what autocast's casts cost
        cast = _traces(ref, config.replace(precision=config.prec.autocast_dtype)) if config.prec.mixed else None
        tf32 = config.tf32_flags() if (config.device.startswith("cuda") or options.ceilings) else (False, False)
        stage("memory prediction")
        memory = _memory(ref, config)
        done: list = []
        state = {"record": None}

        def save(status: str, note: str | None = None):
            state["record"] = _record(ref, config, options, measure, (roof, tf32), (traces, cast), done, status, warnings, note, memory)
            state["record"].save(folder)

        save("incomplete", "counted; not measured yet" if measure else None)
        try:
            if measure:
                stage("bench and per-layer times")
                run(ref, config, on_stage=lambda m: stage(f"bench: {m}"), on_point=lambda p: (done.append(p), save("incomplete")))
        except BaseException as e:
            save("incomplete", f"interrupted ({type(e).__name__}) after {len(done)} of {len(config.batches)} measured point(s)")
            try:
                write_views(folder, state["record"])
            except Exception:  # noqa: BLE001 - the record is what matters; `effkit report` rebuilds the views
                pass
            raise
        stage("analysis and report")
        save("complete")
        write_views(folder, state["record"])
    if measure and done and all(p.status == "oom" for p in done):
        raise UserInputError(f"out of memory at every batch size ({', '.join(str(p.batch) for p in done)}) of {ref.name} on {config.device}: "
                             f"{done[-1].note}; try a smaller --batch or --resolution (the run is recorded in {folder})")
    return ProfileRun(folder, state["record"].models[0].analyses, state["record"])


def _check_roof_matches(roof, options: ProfileOptions, config: RunConfig, measure: bool) -> None:
    """Measuring on a CPU against a GPU's roofs (or the other way) makes every ratio meaningless: refuse unless asked."""
    if not measure or options.mismatched_ceilings:
        return
    gpu_roof = "datasheet" in roof.name or "cuda" in roof.source.lower()
    if config.device == "cpu" and gpu_roof:
        raise UserInputError(f"--ceilings {options.ceilings} gives a GPU's roofs ({roof.name}) but measuring runs on cpu: every efficiency "
                             "and gap would compare CPU times with GPU ceilings; drop --measure for a counts-only analysis, measure on "
                             "--device cuda, or pass --mismatched-ceilings if that is what you want")
    # a ceilings file effkit measured gives its roof the GPU's name and a source "measured on NAME (...)"; a datasheet
    # name or a hand-written file names no device to check against
    measured_on = roof.name if roof.source.startswith("measured on ") else None
    if config.device.startswith("cuda") and measured_on:
        here = _cuda_name(config.device)
        if here and here.strip().lower() != measured_on.strip().lower():
            raise UserInputError(f"--ceilings {options.ceilings} was measured on {measured_on} but measuring runs on {here} ({config.device}): "
                                 "every efficiency and gap would compare this GPU's times with another's ceilings; give this GPU's "
                                 "ceilings (`effkit device --device cuda` measures them), drop --measure for a counts-only analysis, or "
                                 "pass --mismatched-ceilings if that is what you want")


def _cuda_name(device: str) -> str | None:
    """torch's name for a CUDA device ('NVIDIA H100 80GB HBM3'), or None where CUDA is not here."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(torch.device(device))


def _claim(folder: Path, force: bool) -> None:
    """Refuse a folder that holds another run (naming it), unless `force`."""
    from effkit.report.record import RECORD_FILE, RunRecord

    if not (folder / RECORD_FILE).exists() or force:
        return
    try:
        held = RunRecord.load(folder)
        what = f"a {held.kind} of {', '.join(m.model for m in held.models)} ({held.config.describe()}, {held.status}, {held.created})"
    except UserInputError:
        what = "an unreadable run record"
    raise UserInputError(f"folder {str(folder)!r} holds {what}; choose another --out, or pass --force to replace it")


def _measured_roof(config: RunConfig, refresh: bool):
    from effkit.device.ceilings import device_ceilings
    from effkit.device.roofs import roof_from_ceilings

    c = device_ceilings(config.device, refresh=refresh)
    warnings = [] if c.trusted else [f"the ceilings were measured under poor conditions and are not cached ({'; '.join(c.issues)}): every "
                                     "efficiency and roofline below inherits that; measure again on an idle machine or give --ceilings"]
    return roof_from_ceilings(c, config.prec.compute_dtype), warnings


def _traces(ref: ModelRef, config: RunConfig):
    from effkit.run.runner import is_oom
    from effkit.trace.tracer import trace_counts

    try:
        return trace_counts(ref, config.batches, precision=config.precision)
    except Exception as e:  # only the real-CPU fallback can run out of memory
        if is_oom(e):
            raise UserInputError(f"out of memory counting {ref.name} on real CPU tensors at batch {max(config.batches)}: try a smaller "
                                 "--batch or --resolution") from e
        raise


def _memory(ref: ModelRef, config: RunConfig) -> dict | None:
    """The predicted peak memory of a step at the largest batch (trace/memory.py), or None where it cannot be made."""
    from effkit.trace.memory import predict_memory

    if config.prec.mixed and config.mode == "train":
        return None
    try:
        return predict_memory(ref, max(config.batches), precision=config.precision, mode=config.mode,
                              optimizer="sgd-momentum" if config.mode == "train" else None).to_dict()
    except Exception:  # noqa: BLE001 - a model that cannot run on fake tensors: no prediction, the profile goes on
        return None


def _record(ref, config, options, measure, roofs, traces, points, status, warnings, note, memory=None):
    from dataclasses import replace

    from effkit.report.record import ModelRecord, RunRecord

    (roof, tf32), (traces, cast) = roofs, traces
    by_batch = {p.batch: p for p in points if p.status == "ok"}
    analyses = tuple(analyse(t, roof, by_batch.get(t.batch), fuse=options.fuse, top1=options.top1, tf32=tf32) for t in traces)
    if cast:
        analyses = tuple(replace(a, waterline_if_cast_s=analyse(c, roof, tf32=tf32).waterline_s) for a, c in zip(analyses, cast))
    model = ModelRecord(ref.name, analyses, tuple({"batch": t.batch, **t.totals_row()} for t in traces), tuple(traces[-1].rows()), tuple(points),
                        memory=memory)
    env = points[0].environment if points else None
    opts = {"ceilings": options.ceilings, "measure": measure, "fuse": options.fuse, "input_shapes": [list(s) for s in ref.input_shapes]}
    return RunRecord("profile", config, (model,), env, status, (note,) if note else (), opts, warnings=tuple(warnings))


def compare(models: list, *, out: str | Path | None = None, on_model: Callable[[str], None] | None = None, accuracy: dict | None = None,
            device: str = "cpu", batch: int | list[int] | None = None, dtype: str = "fp32", channels_last: bool = False, cuda_graph: bool = False,
            compile: bool = False, min_time_s: float = 1.0, input_shape=None, resolution=None, ceilings=None, measure=None, fuse=None,
            on_stage=None, seq_len=None, **model_kwargs) -> ProfileRun:
    """Profile several models into sub-folders of one folder and write a comparison report."""
    if len(models) < 2:
        raise UserInputError("compare needs at least two models")
    refs = [resolve(m, input_shape, resolution=resolution, seq_len=seq_len, **model_kwargs) for m in models]
    config = _config(device, batch, dtype, channels_last, cuda_graph, compile, min_time_s)
    top1 = {ref.name: (accuracy or {}).get(str(m), ref.top1) for m, ref in zip(models, refs)}
    return run_compare(refs, config, ProfileOptions(out, ceilings, measure, fuse), top1, on_model)


def fusable_blocks(ref: ModelRef) -> dict:
    """fuse_blocks' report for this model (built on the CPU): the blocks the kernels would fuse, and why the others not.
    A model with none is refused."""
    from effkit.kernels import fused_build

    return fused_build(ref)[1]


def _fused_outputs(ref, base: RunConfig, batch: int) -> dict:
    """The block-fused model's outputs against the unfused model's in fp32 at `batch`, in the precision and layout the
    check times it in: a fast kernel is a result only if it computes the block. {'fused_max_rel_diff': max |difference|
    over the fp32 outputs' max |value|, 'fused_numerical_note': a warning past NUMERICAL_WARN_REL, else ''}; where the
    comparison cannot run, its reason instead."""
    from effkit.analysis.advice import numerical_warning
    from effkit.run.numerics import output_difference

    try:
        _, rel, ref_max = output_difference(ref, base.precision, base.device, batch=batch, fused=True,
                                            channels_last=base.channels_last)
    except Exception as e:  # noqa: BLE001 - a comparison that cannot run is said, not fatal to the timings
        return {"fused_max_rel_diff": None, "fused_numerical_note": f"outputs not compared: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
    return {"fused_max_rel_diff": rel, "fused_numerical_note": numerical_warning(base.precision, ref_max, rel, fused=True)}


_FUSION_CONFIGS = (("eager", {}), ("compile", {"compile": True}), ("fused", {"fused": True}), ("fused_compile", {"fused": True, "compile": True}))


def fusion_check(model, *, device: str = "cpu", batch: int | list[int] = 64, dtype: str = "bf16", channels_last: bool = True,
                 cuda_graph: bool = False, min_time_s: float = 0.5, ceilings: str | None = None, resolution: int | None = None,
                 fusing: dict | None = None, selective: bool = True, on_stage: Callable[[str], None] | None = None,
                 on_progress: Callable[[list[dict]], None] | None = None, eager_reference: dict | None = None,
                 **model_kwargs) -> list[dict]:
    """The fusion what-if against reality: for each batch, eager, torch.compile, the block-fused model (effkit.kernels) and
    the block-fused model with the rest compiled around its kernels, measured under the same configuration, beside the
    waterline and the predicted fused waterline of the unfused trace.
    With `selective`, also the configuration the measurements recommend: each distinct block (and the stem) timed alone,
    fused against compiled (`selective_units`), and the model with only the winners fused and the rest compiled.
    A fused latency below its predicted fused waterline is flagged: a count or a ceiling is wrong. So is, in each row's
    `timing_problems`, a configuration timed with a large spread (IQR over 10 % of its median) or under load, and eager
    timed here against `eager_reference` ({batch: (ms, IQR ms)}: the same configuration measured before, as a profile
    does): two measurements of one thing that disagree beyond both spreads say the machine changed between them.
    Each batch is measured on its own (every configuration built, and compiled, for that batch alone), and
    `on_progress(rows)` is called after every measurement with the rows so far, the current one marked 'incomplete'."""
    from effkit.analysis.model import blocks_for
    from effkit.analysis.roofline import fusion_what_if
    from effkit.device.roofs import roof_from_spec
    from effkit.kernels import triton_available
    from effkit.run.runner import run

    ref = resolve(model, resolution=resolution, **model_kwargs)
    base = _config(device, batch, dtype, channels_last, cuda_graph, False, min_time_s).replace(layers=False)
    roof = roof_from_spec(ceilings, base.prec.compute_dtype) if ceilings else _measured_roof(base, False)[0]
    traces = {t.batch: t for t in _traces(ref, base)}
    fusing = fusing or fusable_blocks(ref)  # `fusing`: fusable_blocks(ref) where the caller checked it already
    stage, progress = on_stage or (lambda s: None), on_progress or (lambda rows: None)
    kernel = ("Triton, one kernel per fused block" if device.startswith("cuda") and triton_available()
              else "the folded math in PyTorch (no Triton on CUDA here): not a fused kernel")
    stems = fusing.get("stems", [])
    rows: list[dict] = []
    for b in base.batches:
        row = {"batch": b, "incomplete": True, "fused_kernel": kernel, "fused_blocks": len(fusing["fused"]), "unfused_blocks": len(fusing["unfused"]),
               "fused_stems": len(stems), "problem": None}
        rows.append(row)
        points = {}
        for name, change in _FUSION_CONFIGS:
            stage(f"fusion check, batch {b}: the model {name.replace('_', ' + ')}")
            (points[name],) = run(ref, base.replace(batches=(b,), **change)).points
            row.update(_point_ms(points[name], name))
            progress(rows)
        row["timing_problems"] = timing_problems(points, (eager_reference or {}).get(b))
        row.update(_fused_outputs(ref, base, b))
        a = analyse(traces[b], roof, points["eager"])
        # the what-if for exactly what the kernels fuse (every ConvFirst block; MBConv's strided, width-changing ones stay
        # unfused; and the stem, conv → BN → activation as one kernel)
        what_if = fusion_what_if(list(a.layers), blocks_for(traces[b], fusing["fused"] + stems), roof, "the blocks fuse_blocks fuses")
        fw = 1e3 * what_if.fused_waterline_s
        row.update({"waterline_ms": 1e3 * a.waterline_s, "fused_waterline_ms": fw,
                    "fused_over_fused_waterline": (row["fused_ms"] / fw) if row["fused_ms"] and fw else None,
                    # the report's own what-if: the blocks that add their own input (found by data flow), so a block with a conv on
                    # its shortcut is in neither figure (benchmarks/fused_waterline_scope.py fuses those too)
                    "residual_blocks_fused_waterline_ms": 1e3 * a.fusion.fused_waterline_s if a.fusion else None})
        fused_timed = [(v, k) for k, v in (("block-fused", row["fused_ms"]), ("block-fused + compile", row["fused_compile_ms"])) if v]
        if fw and fused_timed and min(fused_timed)[0] < fw:
            best = min(fused_timed)
            row["problem"] = (f"the {best[1]} model ran in {best[0]:.3f} ms, below its predicted fused waterline {fw:.3f} ms: a measurement "
                              "problem (a count or a ceiling is wrong), not a result")
        progress(rows)
        if selective:
            sel = _selective(ref, base, b, row, stage, lambda units: (row.__setitem__("units", units), progress(rows)))
            row["timing_problems"] += timing_problems({"selective": sel.pop("point")} if sel.get("point") else {})
            row.update(sel)
        del row["incomplete"]
        progress(rows)
    return rows


_CONFIG_LABELS = {"eager": "eager", "compile": "torch.compile", "fused": "block-fused", "fused_compile": "block-fused + compile",
                  "selective": "selective"}


def timing_problems(points: dict, eager_reference: tuple[float, float | None] | None = None) -> list[str]:
    """What makes a fusion-check row's times doubtful, a sentence each: a configuration timed with a large spread (IQR
    over 10 % of its median) or while other processes loaded the machine, and eager disagreeing with `eager_reference`
    ((ms, IQR ms): the same configuration measured before in the run) beyond both spreads and by over 10 %."""
    from effkit.analysis.stats import disagree
    from effkit.timing import SPREAD_WARN

    out = []
    for name, p in points.items():
        label = _CONFIG_LABELS.get(name, name)
        if p.timing and p.timing.noisy:
            out.append(f"{label} timed with a large spread: its IQR is {100 * p.timing.iqr_rel:.0f} % of its median over "
                       f"{len(p.timing.samples_s)} samples")
        issues = p.environment.load_issues if p.environment is not None else []
        if issues:
            out.append(f"{label} measured under load ({'; '.join(issues)})")
    e = points.get("eager")
    if eager_reference and e is not None and e.latency_s and e.timing:
        ms, iqr = 1e3 * e.latency_s, 1e3 * e.timing.iqr_s
        ref_ms, ref_iqr = eager_reference
        if disagree(ms, iqr, ref_ms, ref_iqr, SPREAD_WARN):
            out.append(f"eager, timed twice in this run, disagrees with itself: {ms:.3f} ms (IQR {iqr:.3f}) here against {ref_ms:.3f} ms "
                       f"(IQR {(ref_iqr or 0):.3f}) in the profile's own measurement, {max(ms, ref_ms) / min(ms, ref_ms):.2f}x apart and "
                       "beyond both spreads: a measurement problem (the machine's load or clocks changed between the two), not a result")
    return out


def _point_ms(p, name: str) -> dict:
    """{NAME_ms, NAME_iqr_ms} of a measured point (None where it did not run: out of memory, skipped)."""
    return {f"{name}_ms": 1e3 * p.latency_s if p.latency_s else None, f"{name}_iqr_ms": 1e3 * p.timing.iqr_s if p.timing else None}


def selective_units(ref: ModelRef, config: RunConfig, on_stage: Callable[[str], None] | None = None,
                    on_unit: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Each distinct fusable block and stem of the model (`effkit.kernels.fusion_units`), timed alone at the config's one
    batch: compiled (torch.compile, the config's other settings) and as its fused kernel, chosen by `fused_wins`. A row per
    unit: name, kind, paths, input_shape, compile_ms, fused_ms, their IQRs, fused_chosen; `on_unit(rows)` after each."""
    import copy

    import torch
    import torch.nn as nn

    from effkit.kernels import fuse_blocks, fusion_units
    from effkit.run.runner import run

    (b,) = config.batches
    net = ref.build("cpu", torch.float32).eval()
    units = fusion_units(net, ref.inputs(1, torch.float32), call=ref.call)
    stage, rows = on_stage or (lambda s: None), []
    for i, u in enumerate(units, 1):
        alone = lambda: nn.Sequential(copy.deepcopy(u["module"]).float()).eval()  # noqa: E731 - path "0" inside it
        fused = fuse_blocks(alone(), only={"0"})[0]
        row = {"name": u["name"], "kind": u["kind"], "paths": u["paths"], "input_shape": list(u["input_shape"])}
        for name, module, change in (("compile", alone(), {"compile": True}), ("fused", fused, {})):
            stage(f"fusion check, batch {b}: block {i}/{len(units)} ({u['name']}) {name}")
            (p,) = run(resolve(module, u["input_shape"]), config.replace(**change)).points
            row.update(_point_ms(p, name))
        row["fused_chosen"] = fused_wins(row)
        rows.append(row)
        if on_unit:
            on_unit(list(rows))
    return rows


def fused_wins(u: dict) -> bool:
    """A block's fused kernel is chosen where its median is lower than compile's by more than the larger of the two IQRs:
    a tie within the spread goes to torch.compile, the configuration without custom kernels (on the H200 at batch 1 the
    stem's 0.0284 ms fused against 0.0299 compiled, IQR 0.0142, was a tie; fusing it made mbconv_net 1 % slower)."""
    f, c = u.get("fused_ms"), u.get("compile_ms")
    if not (f and c):
        return False
    return c - f > max(u.get("fused_iqr_ms") or 0.0, u.get("compile_iqr_ms") or 0.0)


def _selective(ref: ModelRef, base: RunConfig, b: int, row: dict, stage: Callable[[str], None],
               on_unit: Callable[[list[dict]], None] | None = None) -> dict:
    """The selective configuration at batch b: the units whose fused kernel beat compile, fused, the rest compiled. Where
    every unit won it is the block-fused + compile model, where none did torch.compile's: those are not timed again."""
    units = selective_units(ref, base.replace(batches=(b,)), stage, on_unit)
    chosen = [p for u in units if u["fused_chosen"] for p in u["paths"]]
    out = {"units": units, "selective_fused": chosen}
    if not chosen or all(u["fused_chosen"] for u in units):
        same = "compile" if not chosen else "fused_compile"
        return {**out, "selective_same_as": same, "selective_ms": row[f"{same}_ms"], "selective_iqr_ms": row[f"{same}_iqr_ms"]}
    stage(f"fusion check, batch {b}: the model with the {len(chosen)} winning blocks fused, the rest compiled")
    from effkit.run.runner import run

    (p,) = run(ref, base.replace(batches=(b,), fused=True, fused_only=tuple(chosen), compile=True)).points
    return {**out, "selective_same_as": None, **_point_ms(p, "selective"), "point": p}  # the point: fusion_check reads its spread


def run_fusion_check(run: ProfileRun, model, config: RunConfig, **kwargs) -> tuple[ProfileRun, list[dict]]:
    """`fusion_check(model, **kwargs)` under the profile's `config` (device, batches, precision, layout, CUDA graph, timed
    seconds) into its run folder: fusion_check.json is rewritten (atomically) after every
    measurement, so an interrupt or a crash keeps what was measured, the row it stopped in marked 'incomplete'; at the
    end the record's notes and the views (`add_fusion_check`). Interrupted, the record says so and the views are
    rebuilt with what was measured."""
    from effkit.files import atomic_write_json
    from effkit.report.run_dir import write_views

    seen: list[dict] = []

    def progress(rows: list[dict]) -> None:
        seen[:] = rows
        atomic_write_json(run.folder / "fusion_check.json", rows)

    # the profile's own end-to-end times are eager's, measured before, where the profile did not compile or fuse: the
    # check times eager again and says where the two disagree
    plain = not (config.compile or config.fused)
    reference = {a.batch: (1e3 * a.latency_s, None if a.latency_iqr_s is None else 1e3 * a.latency_iqr_s)
                 for a in run.analyses if plain and a.latency_s} or None
    try:
        rows = fusion_check(model, device=config.device, batch=list(config.batches), dtype=config.precision, channels_last=config.channels_last,
                            cuda_graph=config.cuda_graph, min_time_s=config.min_time_s, on_progress=progress, eager_reference=reference,
                            **kwargs)
    except BaseException as e:
        where = ("before its first measurement" if not seen else f"in batch {seen[-1]['batch']}" if seen[-1].get("incomplete") else
                 f"after batch {seen[-1]['batch']}")
        record = run.record.with_status(run.record.status, f"fusion check interrupted ({type(e).__name__}) {where}; fusion_check.json "
                                        "and the tables hold what it measured")
        try:
            record.save(run.folder)
            write_views(run.folder, record)
        except Exception:  # noqa: BLE001 - fusion_check.json is what matters; `effkit report` rebuilds the views
            pass
        raise
    return add_fusion_check(run, rows), rows


def add_fusion_check(run: ProfileRun, rows: list[dict]) -> ProfileRun:
    """Put the fusion check into a profile's record (notes) and folder (fusion_check.json), and render it again."""
    from effkit.files import atomic_write_json
    from effkit.report.run_dir import write_views

    record = run.record
    for r in rows:
        record = record.with_status(record.status, fusion_note(r))
        if fusion_units_note(r):
            record = record.with_status(record.status, fusion_units_note(r))
    record.save(run.folder)
    atomic_write_json(run.folder / "fusion_check.json", rows)
    write_views(run.folder, record)
    return ProfileRun(run.folder, run.analyses, record)


def run_compare(refs: list[ModelRef], config: RunConfig, options: ProfileOptions, top1: dict | None = None,
                on_model: Callable[[str], None] | None = None) -> ProfileRun:
    """Profile each model into its own sub-folder, drawing the models through the same queue as `effkit sweep`
    (run/queue.py): in one process, or spread over torchrun's ranks, one GPU each. A comparison interrupted before its
    record was written resumes: complete sub-profiles are kept (unless `options.force`); a model whose worker was stopped
    twice while profiling it is left out, with the reason in the comparison's notes. Rank 0 writes the comparison."""
    from dataclasses import replace

    from effkit.files import FolderLock, ensure_folder
    from effkit.report.record import ModelRecord, RunRecord
    from effkit.report.run_dir import write_views
    from effkit.run.queue import Attempts, drain, gate, place

    where = place(config.device)
    folder = Path(options.out) if options.out else Path("reports") / time.strftime("compare-%Y%m%d-%H%M%S")
    subs = [folder / model_name(ref) for ref in refs]
    gate(where, "effkit-compare", lambda: (ensure_folder(folder), _claim(folder, options.force)))
    attempts = Attempts(folder / ".attempts")

    def complete(i: int) -> bool:
        from effkit.report.record import RECORD_FILE

        try:
            return (subs[i] / RECORD_FILE).is_file() and RunRecord.load(subs[i]).complete
        except UserInputError:
            return False

    def do(i: int) -> None:
        ref, key = refs[i], model_name(refs[i])
        if (complete(i) and not options.force) or attempts.exhausted(key):
            return
        with attempts.running([key]):
            if on_model:
                on_model(ref.name)
            run_profile(ref, config.replace(device=where.device), replace(options, out=subs[i], top1=(top1 or {}).get(ref.name), force=True))

    with FolderLock(folder) if where.rank == 0 else contextlib.nullcontext():
        drain(len(refs), do, where, "effkit-compare")
        if where.rank != 0:
            return ProfileRun(folder, ())
        models, environment, warnings, notes = [], None, [], []
        for i, ref in enumerate(refs):
            if not complete(i):
                notes.append(f"{ref.name}: not profiled: {attempts.why(model_name(ref)) if attempts.exhausted(model_name(ref)) else 'incomplete'}")
                continue
            rec = RunRecord.load(subs[i])
            a = rec.models[0].analyses[-1]
            environment = environment or rec.environment
            warnings += [w for w in rec.warnings if w not in warnings]
            models.append(ModelRecord(a.model, (a,), link=str(subs[i].relative_to(folder) / "index.html")))
        if not models:
            raise UserInputError(f"no model of the comparison could be profiled: {'; '.join(notes)}")
        if where.world > 1:
            notes.append(f"profiled by {where.world} ranks")
        record = RunRecord("compare", config, tuple(models), environment, options={"ceilings": options.ceilings, "fuse": options.fuse},
                           notes=tuple(notes), warnings=tuple(warnings))
        record.save(folder)
        write_views(folder, record)
    return ProfileRun(folder, tuple(m.analyses[0] for m in models), record)
