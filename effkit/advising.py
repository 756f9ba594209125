"""`effkit.advise`: measure the knobs that apply to a model on this device, rank what makes it faster, and say
why (see effkit.analysis.advice for the search).

Each point is measured with effkit's one timing discipline (the runner), its per-layer kernel sum and the
trace's waterline give the ladder's rungs, and every reduced precision's outputs are compared with fp32's
on the same input. On CUDA, a model with blocks that effkit.kernels fuses gets the fused knob: the model with
those blocks swapped for block-fused kernels, its floor the fused waterline of exactly what is swapped, and its
outputs compared with the unfused model's in fp32 at every precision. Each point is written to `points/KEY.json` in the folder as soon as it is measured
(atomically), so an interrupt loses nothing and a rerun into the same folder resumes: measured points are
reused, not measured again (`refresh=True` measures them again). The default folder is a cache per model,
device and torch version.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from effkit.analysis.advice import (AdvicePoint, SearchResult, compile_table, confirm, coordinate_search, knob_space, knobs_key, numerical_warning,
                                   needs_second_process, rank, snippet, throughput_search)
from effkit.errors import UserInputError
from effkit.files import atomic_write_json, atomic_write_text, ensure_folder, safe_name
from effkit.run.numerics import output_difference as _numerical  # numerical_cost with the fp32 outputs' largest magnitude


@dataclass
class AdviceResult:
    folder: Path
    search: SearchResult
    ranking: list
    skipped_knobs: list
    snippet: str
    compile_vs_fusion: list = None  # analysis.advice.compile_table rows
    throughput: dict | None = None  # best batch for samples/s, and every batch tried

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([{**r, "knobs": knobs_text(r["knobs"])} for r in self.ranking])

    def _repr_html_(self) -> str:
        from html import escape

        return (f"<p>best: <b>{escape(knobs_text(self.search.best.knobs))}</b></p>" + self.to_frame().to_html(index=False)
                + f"<pre>{escape(self.snippet)}</pre>")


def knobs_text(knobs: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in knobs.items()) or "baseline"


def config_of(knobs: dict, device: str, batch: int, mode: str, min_time_s: float):
    """The RunConfig that measures `knobs` (threads are set around the run, not in the config)."""
    from effkit.config import RunConfig

    comp = knobs.get("compile", "off")
    return RunConfig(device=device, precision=knobs.get("precision", "fp32"), batches=(batch,), mode=mode,
                     layout=knobs.get("layout", "contiguous"), cuda_graph=bool(knobs.get("cuda_graph")) and mode == "infer",
                     compile=comp != "off", compile_mode=None if comp in ("off", "default") else comp,
                     cudnn_benchmark=True if knobs.get("cudnn_benchmark") else None, fused=bool(knobs.get("fused")) and mode == "infer",
                     sdpa_backend=None if knobs.get("sdpa_backend", "default") == "default" else knobs["sdpa_backend"],
                     min_time_s=min_time_s, layers=True)


@contextlib.contextmanager
def _threads(n):
    old = torch.get_num_threads()
    if n not in (None, "default"):
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def numerical_cost(ref, precision: str, device: str, batch: int = 1, seed: int = 0, fused: bool = False,
                   channels_last: bool = False) -> tuple[float | None, float | None]:
    """Max absolute and max relative difference of the outputs at `precision` (with `fused`, of the model with its blocks
    swapped for effkit.kernels' fused ones; with `channels_last`, of the model and its inputs in channels-last memory, as
    a channels-last run holds them) against the unfused model's in fp32, same weights, same input."""
    return _numerical(ref, precision, device, batch, seed, fused, channels_last)[:2]


SEARCH_SHARE = 0.8  # of the budget, for the search; the rest is kept for measuring its best again in a fresh process


def point_path(points_dir: Path, knobs: dict, prefix: str = "") -> Path:
    """Where the point measured at `knobs` is saved (prefix: "batch-64-" for the throughput search's points)."""
    return points_dir / f"{prefix}{safe_name(knobs_key(knobs))}.json"


def saved_point(points_dir: Path, knobs: dict) -> AdvicePoint | None:
    """The point measured earlier at `knobs` in points_dir, or None (none saved, or its file damaged: measured
    again). A point saved before the fused knob existed was measured unfused, so it stands for fused=False."""
    keys = [knobs]
    if knobs.get("fused") is False:
        keys.append({k: v for k, v in knobs.items() if k != "fused"})
    for k in keys:
        path = point_path(points_dir, k)
        if path.is_file():
            try:
                return AdvicePoint.from_dict({**json.loads(path.read_text()), "knobs": dict(knobs)})
            except (ValueError, TypeError, KeyError):
                pass
    return None


def default_folder(ref, device: str) -> Path:
    from effkit.device.facts import device_facts
    from effkit.paths import cache_root

    name = device_facts(device).get("name", device)
    return cache_root() / "advise" / safe_name(f"{ref.name}-{name}-torch{torch.__version__}")


def advise(model, *, device: str = "cpu", batch: int = 1, mode: str = "infer", budget_s: float = 300.0, out=None, refresh: bool = False,
           min_time_s: float = 0.3, measure=None, on_point=None, throughput: bool = False, max_batch: int = 4096, verify=None,
           **model_kwargs) -> AdviceResult:
    """Search the knobs for `model` on `device` inside `budget_s` seconds; rank them; write the report to `out`."""
    from effkit.models.ref import resolve

    from effkit.devices import parse_device
    from effkit.errors import check_positive

    if not budget_s > 0:
        raise UserInputError(f"budget must be > 0 s, got {budget_s}")
    parse_device(device, allow_meta=False)  # the check only: the name given stays the cache folder's
    check_positive("batch", batch)
    ref = resolve(model, **model_kwargs)
    folder = ensure_folder(Path(out) if out else default_folder(ref, device))
    points_dir = ensure_folder(folder / "points")
    image = all(len(s) == 3 for s in ref.input_shapes) and not ref.vocab_size
    attention = _has_attention(ref)
    why_not = _why_not_fusable(ref) if device.startswith("cuda") and mode == "infer" else "CUDA inference only"
    space, skipped_knobs = knob_space(device, mode=mode, image_input=image, attention=attention, cpus=os.cpu_count() or 1,
                                      fusable=why_not is None, why_not_fusable=why_not or "")
    measure = measure or _measurer(ref, device, batch, mode, min_time_s)

    def cached_measure(knobs: dict) -> AdvicePoint:
        path = point_path(points_dir, knobs)
        saved = None if refresh else saved_point(points_dir, knobs)
        if saved is not None:
            return saved
        p = measure(knobs)
        atomic_write_json(path, p.to_dict())
        if on_point:
            on_point(p)
        return p

    result = coordinate_search(space, cached_measure, SEARCH_SHARE * budget_s)
    if needs_second_process(result.best, result.baseline):
        second = (verify or _second_process(ref, device, batch, mode, min_time_s))(dict(result.best.knobs))
        confirm(result, second)
    ranking = rank(result)
    code = snippet(result.best.knobs, device)
    batches = None
    if throughput and result.best.status == "ok":
        best_knobs = result.best.knobs

        def measure_batch(b):
            path = point_path(points_dir, best_knobs, prefix=f"batch-{b}-")
            if path.is_file() and not refresh:
                p = AdvicePoint.from_dict(json.loads(path.read_text()))
            else:
                p = _measurer(ref, device, b, mode, min_time_s)(dict(best_knobs))
                atomic_write_json(path, p.to_dict())
            return p.status, (b / p.median_s if p.status == "ok" and p.median_s else None)

        best_b, tried = throughput_search(measure_batch, batch, max_batch, budget_s=budget_s)
        batches = {"best_batch": best_b, "tried": [{"batch": b, "status": st, "samples_per_s": r} for b, st, r in tried]}
    write_report(folder, ref.name, device, batch, result, ranking, skipped_knobs, code, compile_table(result), batches)
    return AdviceResult(folder, result, ranking, skipped_knobs, code, compile_table(result), batches)


def _second_process(ref, device: str, batch: int, mode: str, min_time_s: float):
    """verify(knobs): the same measurement in a fresh Python process (`python -m effkit.advising`), for knobs whose
    effect can differ between processes. A model given as an object, not a spec, cannot be rebuilt there: None."""
    import subprocess
    import sys

    def verify(knobs: dict) -> AdvicePoint | None:
        if ref.instance is not None:
            return None
        cmd = [sys.executable, "-m", "effkit.advising", ref.spec, "--device", device, "--batch", str(batch), "--mode", mode,
               "--min-time", str(min_time_s), "--knobs", json.dumps(knobs), "--kwargs", json.dumps(dict(ref.kwargs)),
               "--input-shapes", json.dumps([list(s) for s in ref.input_shapes])]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            return AdvicePoint(knobs, "failed", note=(r.stderr.strip().splitlines() or ["second process failed"])[-1][:300])
        return AdvicePoint.from_dict(json.loads(r.stdout.strip().splitlines()[-1]))

    return verify


def _main(argv=None) -> None:
    """`python -m effkit.advising SPEC --knobs JSON ...`: measure one configuration in this process, print it as JSON."""
    import argparse

    from effkit.models.ref import resolve

    ap = argparse.ArgumentParser()
    ap.add_argument("spec")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--mode", default="infer")
    ap.add_argument("--min-time", type=float, default=0.3)
    ap.add_argument("--knobs", required=True)
    ap.add_argument("--kwargs", default="{}")
    ap.add_argument("--input-shapes", default=None)
    a = ap.parse_args(argv)
    shapes = [tuple(s) for s in json.loads(a.input_shapes)] if a.input_shapes else None
    ref = resolve(a.spec, shapes, **json.loads(a.kwargs))
    p = _measurer(ref, a.device, a.batch, a.mode, a.min_time)(json.loads(a.knobs))
    print(json.dumps(p.to_dict()))


def _why_not_fusable(ref) -> str | None:
    """None where effkit.kernels would swap some of the model's blocks for fused Triton kernels here, else why not."""
    from effkit.kernels import fused_build, triton_available

    if not triton_available():
        return "needs Triton for its kernels (pip install effkit[kernels])"
    try:
        fused_build(ref, "meta")  # the structure alone: built on meta, no memory, no arithmetic
    except UserInputError:
        return "the model has no ConvFirst block, nor stride-1, equal-width MBConv block, to fuse"
    except Exception as e:  # noqa: BLE001 - a model that cannot be built on meta: the knob is left out, and why is said
        return f"could not check the model's blocks ({type(e).__name__}: {str(e).strip()[:120]})"
    return None


def _has_attention(ref) -> bool:
    try:
        from effkit.trace.tracer import trace_ref

        t = trace_ref(ref, [1], device="meta")[0]
        return any("scaled_dot_product" in o.op for o in t.ops)
    except Exception:  # noqa: BLE001 - a model that cannot be traced on meta: no SDPA knob
        return False


def _measurer(ref, device: str, batch: int, mode: str, min_time_s: float):
    """measure(knobs) with the runner: timing samples, the kernel sum, the waterline and ideal, the numerical cost."""
    from effkit.analysis import analyse
    from effkit.device.ceilings import device_ceilings
    from effkit.device.roofs import roof_from_ceilings
    from effkit.run.runner import run
    from effkit.trace.tracer import trace_ref

    def measure(knobs: dict) -> AdvicePoint:
        t0 = time.perf_counter()
        try:
            config = config_of(knobs, device, batch, mode, min_time_s)
        except UserInputError as e:
            return AdvicePoint(knobs, "skipped", note=str(e), elapsed_s=time.perf_counter() - t0)
        unsupported = config.prec.unsupported(device)
        if unsupported:
            return AdvicePoint(knobs, "skipped", note=unsupported, elapsed_s=time.perf_counter() - t0)
        try:
            with _threads(knobs.get("threads")):
                p = run(ref, config).points[0]
        except Exception as e:  # noqa: BLE001 - a configuration that cannot run (compile errors, ...) is recorded, the search goes on
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return AdvicePoint(knobs, "failed", note=f"{type(e).__name__}: {msg}"[:300], elapsed_s=time.perf_counter() - t0)
        if p.status != "ok":
            return AdvicePoint(knobs, p.status, note=p.note, elapsed_s=time.perf_counter() - t0)
        waterline, ideal, fused, abs_d, rel_d, warning = by_precision(config)
        if config.fused:  # the fused model's floor: only what crosses DRAM between the fused blocks (its own what-if)
            waterline = fused
        return AdvicePoint(knobs, "ok", tuple(p.timing.samples_s), p.note, p.layers.total_s if p.layers else None, waterline, ideal,
                           abs_d, rel_d, time.perf_counter() - t0, fused, batch, numerical_note=warning)

    computed: dict = {}

    def by_precision(config) -> tuple:
        """(waterline, ideal, fused waterline, max abs diff, max rel diff, numerical warning): they depend on the precision
        and on whether the blocks are fused (the numerical cost also on the layout), so each is computed once per such
        key, not once per point. With fused, the
        fused waterline is the what-if for exactly the blocks and stem fuse_blocks swaps, and the numerical cost is the
        fused model's against the unfused one in fp32."""
        key = (config.precision, config.fused, config.channels_last)
        if key not in computed:
            waterline = ideal = fused = None
            try:
                t = trace_ref(ref, [batch], precision=config.precision, device="meta")[0]
                roof = roof_from_ceilings(device_ceilings(device), config.prec.compute_dtype)
                a = analyse(t, roof, None, tf32=config.tf32_flags())
                waterline, ideal = a.waterline_s, a.ideal_s
                fused = a.fusion.fused_waterline_s if a.fusion else None
                if config.fused:
                    fused = None  # not the residual blocks' what-if: exactly what fuse_blocks swaps, or nothing
                    from effkit.analysis.model import blocks_for
                    from effkit.analysis.roofline import fusion_what_if
                    from effkit.kernels import fused_build

                    report = fused_build(ref, "meta")[1]
                    fused = fusion_what_if(list(a.layers), blocks_for(t, report["fused"] + report["stems"]), roof,
                                           "the blocks fuse_blocks fuses").fused_waterline_s
            except Exception:  # noqa: BLE001 - no roofs for this device: the rungs stay unknown
                pass
            try:
                abs_d, rel_d, ref_max = _numerical(ref, config.precision, device, fused=config.fused, channels_last=config.channels_last)
            except Exception:  # noqa: BLE001 - a precision this device cannot run in eager: no numerical cost
                abs_d = rel_d = ref_max = None
            computed[key] = (waterline, ideal, fused, abs_d, rel_d, numerical_warning(config.precision, ref_max, rel_d, config.fused))
        return computed[key]

    return measure


def write_report(folder: Path, model: str, device: str, batch: int, result: SearchResult, ranking: list, skipped_knobs: list, code: str,
                 compiled: list | None = None, batches: dict | None = None):
    from effkit.report.html import Page, render

    rows = []
    for r in ranking:
        rows.append({"change": knobs_text(r["knobs"]), "status": r["status"], "median (ms)": r.get("median_ms"),
                     "speed-up (×)": r.get("speedup"), "95 % interval": f"{r['speedup_low']:.3f}-{r['speedup_high']:.3f}"
                     if r.get("speedup_low") else "", "verdict": r.get("verdict", ""), "rungs moved": r.get("rungs", ""),
                     "max abs diff vs fp32": r.get("max_abs_diff"), "max rel diff vs fp32": r.get("max_rel_diff"), "note": r.get("note", "")})
    best = result.best
    confirmation = [f"Second process: {result.confirmation}."] if result.confirmation else []
    head = [f"{model} on {device}, batch {batch}: best configuration {knobs_text({k: v for k, v in best.knobs.items() if v != result.baseline.knobs.get(k)})}"
            + (f", {1e3 * best.median_s:.3f} ms against the baseline's {1e3 * result.baseline.median_s:.3f} ms "
               f"(×{result.baseline.median_s / best.median_s:.2f})" if best.median_s and result.baseline.median_s else "") + ".",
            "Search: the knobs one at a time in the order " + ", ".join(result.order) + ", each value tried with the others at the best "
            "so far; a value is kept only if significantly faster (Mann-Whitney on the raw samples, α = 0.05)."]
    head += confirmation
    head += [f"Best configuration: {best.numerical_note}."] if best.numerical_note else []
    for c in compiled or []:
        share = c["realised_share_of_predicted"]
        head.append(f"torch.compile ({knobs_text(c['knobs'])}) against the fusion what-if: kernels {c['eager_kernels_ms']:.3f} → "
                    f"{c['compiled_kernels_ms']:.3f} ms; " + (f"of the {c['gain_ms']:.3f} ms gained, {c['kernel_gap_part_ms']:.3f} ms closed the "
                    f"kernel gap (above the unfused waterline, {c['waterline_ms']:.3f} ms) and {c['memory_traffic_part_ms']:.3f} ms came from "
                    f"removing memory traffic (below it)" if c["gain_ms"] > 0 else f"the compiled kernels are {-c['gain_ms']:.3f} ms slower") +
                    f"; the what-if predicted {c['predicted_fusion_gain_ms']:.3f} ms from fusion (fused "
                    f"waterline {c['fused_waterline_ms']:.3f} ms)" + (f": compile realised {100 * share:.0f} % of it." if share is not None
                                                                      else ".") + " From totals: compiled kernels are not attributed to modules.")
    if batches:
        head.append(f"Throughput: the best samples/s with the best configuration is at batch {batches['best_batch']} (tried: "
                    + ", ".join(f"{t['batch']} {t['status']}" + (f" {t['samples_per_s']:,.0f}/s" if t["samples_per_s"] else "")
                                for t in batches["tried"]) + ").")
    notes = [f"not searched: {s}" for s in skipped_knobs] + [f"skipped {knobs_text(k)}: {why}" for k, why in result.skipped]
    atomic_write_json(folder / "advice.json", {"model": model, "device": device, "batch": batch, "best": best.knobs, "ranking": ranking,
                                               "skipped": [{"knobs": k, "reason": w} for k, w in result.skipped], "not_searched": skipped_knobs,
                                               "snippet": code, "compile_vs_fusion": compiled or [], "throughput": batches,
                                               "second_process": ({"said": result.confirmation, "median_ms": 1e3 * result.second.median_s
                                                                   if result.second and result.second.median_s else None}
                                                                  if result.confirmation else None)})
    atomic_write_text(folder / "best_config.py", code)
    render(folder / "index.html", Page(f"effkit advise: {model}", f"{device} · batch {batch}", head, summary_rows=rows,
                                       summary_cols=list(rows[0]) if rows else [], notes=notes, code=code,
                                       code_title="Apply it (best_config.py; model and x are your model and input)"))


if __name__ == "__main__":
    _main()
