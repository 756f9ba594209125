"""What would make this model faster, measured: the knobs that apply, a coordinate search inside a time
budget, a ranking with intervals from the raw samples, the rung of the ladder each knob moved, and the
Python that applies the best configuration.

Pure: the search takes a `measure(knobs) -> AdvicePoint` function (effkit.advising measures with the
runner; tests give a stub). The search starts from the baseline (PyTorch's defaults, fp32), then takes
the knobs one at a time in a fixed order, trying each value with the others at the best found so far;
a value is kept only if it is significantly faster than the best (Mann-Whitney on the raw samples).
Points past the budget are listed as skipped, with the reason.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field

from effkit.analysis.stats import ALPHA, compare_samples

BASELINE = {"precision": "fp32", "layout": "contiguous", "cudnn_benchmark": False, "cuda_graph": False, "fused": False, "compile": "off",
            "sdpa_backend": "default", "threads": "default"}


@dataclass(frozen=True)
class Knob:
    name: str
    values: tuple  # the values to try (the baseline's first)
    rung: str  # the rung of the ladder it is expected to move: memory, kernel or overhead
    why: str
    needs: tuple = ()  # (other knob, values it may take) while this knob is on: tried with the first where another is set


def knob_space(device: str, *, mode: str = "infer", image_input: bool = True, attention: bool = False, cpus: int = 1,
               fusable: bool = False, why_not_fusable: str = "") -> tuple[list[Knob], list[str]]:
    """The knobs that apply to this model and device, in search order, and why the others do not.
    `fusable`: effkit.kernels can swap some of the model's blocks for block-fused Triton kernels on this machine (else
    `why_not_fusable`: no such block, no Triton); the fused knob is tried on CUDA for inference only, before compile,
    so that compile is tried around the fused blocks too."""
    cuda = device.startswith("cuda")
    out, skipped = [], []
    precisions = ("fp32", "tf32", "bf16", "bf16-mixed", "fp16", "fp16-mixed") if cuda else ("fp32", "bf16", "bf16-mixed")
    out.append(Knob("precision", precisions, "memory", "fewer bytes per value moved, and tensor-core peaks"))
    if image_input:
        out.append(Knob("layout", ("contiguous", "channels_last"), "kernel", "NHWC convolution kernels, no layout transposes"))
    else:
        skipped.append("layout: the model's input is not an image (channels-last needs 4-d inputs)")
    if cuda:
        out.append(Knob("cudnn_benchmark", (False, True), "kernel", "cuDNN times its algorithms and keeps the fastest for these shapes"))
        if mode == "infer":
            out.append(Knob("cuda_graph", (False, True), "overhead", "one launch for the whole step instead of one per kernel"))
        else:
            skipped.append("cuda_graph: measured for inference steps only (effkit times training eager or compiled)")
        if mode != "infer":
            skipped.append("fused: effkit's block-fused kernels are inference only (BatchNorms folded)")
        elif not fusable:
            skipped.append(f"fused: {why_not_fusable or 'the model was not checked for blocks effkit.kernels fuses'}")
        else:
            from effkit.config import FUSED_PRECISIONS

            # the kernels take 16-bit weights: from an fp32 best, fused is tried at bf16 (else it could never be tried)
            out.append(Knob("fused", (False, True), "memory", "effkit's block-fused kernels: each ConvFirst or stride-1 MBConv block one "
                                                                "launch, its expanded activations kept on chip",
                            needs=(("precision", tuple(sorted(FUSED_PRECISIONS))),)))
        out.append(Knob("compile", ("off", "default", "max-autotune-no-cudagraphs", "reduce-overhead"), "kernel",
                        "fused kernels (less memory traffic) and better kernels; reduce-overhead also captures CUDA graphs"))
        if attention:
            out.append(Knob("sdpa_backend", ("default", "flash", "efficient", "cudnn", "math"), "kernel", "another attention kernel"))
        else:
            skipped.append("sdpa_backend: the model has no scaled-dot-product attention")
    else:
        skipped += ["cudnn_benchmark, cuda_graph, fused and sdpa_backend: CUDA only"]
        out.append(Knob("compile", ("off", "default"), "kernel", "fused kernels (less memory traffic)"))
        threads = tuple(dict.fromkeys(t for t in ("default", 1, max(1, cpus // 2), cpus) if t == "default" or t != cpus or cpus > 1))
        out.append(Knob("threads", threads, "kernel", "intra-op parallelism: more threads, or fewer and less contention"))
    return out, skipped


def knobs_key(knobs: dict) -> str:
    return ",".join(f"{k}={knobs[k]}" for k in sorted(knobs))


@dataclass(frozen=True)
class AdvicePoint:
    knobs: dict
    status: str  # ok, oom, failed, skipped
    samples_s: tuple = ()
    note: str = ""
    kernels_s: float | None = None  # per-layer kernel sum (the ladder's kernel rung)
    waterline_s: float | None = None
    ideal_s: float | None = None
    max_abs_diff: float | None = None  # outputs against fp32 on the same input
    max_rel_diff: float | None = None
    elapsed_s: float = 0.0  # what the point cost the search
    fused_waterline_s: float | None = None  # the fusion what-if's waterline (each residual block one kernel)
    batch: int | None = None
    numerical_note: str = ""  # numerical_warning for this point's precision ('' when its numerical cost can be trusted)

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.samples_s) if self.samples_s else None

    @property
    def key(self) -> str:
        return knobs_key(self.knobs)

    def gaps(self) -> dict:
        """memory = waterline / ideal, kernel = kernels / waterline, overhead = end-to-end / kernels (None where unknown)."""
        m = self.median_s
        return {"memory": self.waterline_s / self.ideal_s if self.waterline_s and self.ideal_s else None,
                "kernel": self.kernels_s / self.waterline_s if self.kernels_s and self.waterline_s else None,
                "overhead": m / self.kernels_s if m and self.kernels_s else None}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["samples_s"] = list(self.samples_s)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "AdvicePoint":
        d = dict(d)
        d["samples_s"] = tuple(d.get("samples_s") or ())
        return cls(**d)


# knobs whose effect can differ between processes (cuDNN's benchmark picks, compile's autotuning): a configuration that
# changes one of them is measured again in a fresh process before it is recommended
PROCESS_VARIABLE = ("cudnn_benchmark", "compile")


SMALLEST_NORMAL = {"fp16": 6.103515625e-05, "bf16": 1.1754943508222875e-38}  # 2^-14 and 2^-126
NUMERICAL_WARN_REL = 0.1  # a reduced precision whose outputs differ by more than this share of their scale is flagged


def numerical_warning(precision: str, ref_max: float | None, rel_diff: float | None, fused: bool = False) -> str:
    """A warning where a precision's numerical cost on this input cannot be trusted, else ''. `fused`: the outputs are
    the block-fused model's (judged at every precision: its kernels are not PyTorch's).
    Measured on the model's own weights (random for the zoo), so two cases mislead: outputs that are all zero (a
    zero-initialised head) say nothing, and outputs below a format's smallest normal number underflow there."""
    if (precision in ("fp32", "tf32") and not fused) or ref_max is None:
        return ""
    if ref_max == 0.0:
        return ("numerical cost not judged: the fp32 outputs are all zero on these weights (a zero-initialised head?); "
                "check with trained weights")
    fmt = "fp16" if precision.startswith("fp16") else "bf16" if precision.startswith("bf16") else None
    if fmt and ref_max < SMALLEST_NORMAL[fmt] and rel_diff is not None and rel_diff > NUMERICAL_WARN_REL:
        return (f"numerical warning: the outputs (largest {ref_max:.1e}) are below {fmt}'s smallest normal number "
                f"({SMALLEST_NORMAL[fmt]:.1e}) and differ from fp32 by {100 * rel_diff:.0f} % of their scale; check with trained weights")
    if rel_diff is not None and rel_diff > NUMERICAL_WARN_REL:
        what = "the block-fused model's outputs differ from the unfused model's in fp32" if fused else "the outputs differ from fp32"
        return f"numerical warning: {what} by {100 * rel_diff:.0f} % of their scale"
    return ""


def needs_second_process(best: AdvicePoint, baseline: AdvicePoint) -> bool:
    return any(best.knobs.get(k) != baseline.knobs.get(k) for k in PROCESS_VARIABLE if k in best.knobs)


def confirm(result: "SearchResult", second: AdvicePoint | None, alpha: float = ALPHA) -> "SearchResult":
    """Keep the best configuration if its second-process measurement is still significantly faster than the baseline;
    otherwise recommend the best measured point that changes no process-variable knob, and say why."""
    result.second = second
    if second is None or not needs_second_process(result.best, result.baseline):
        return result
    holds = second.status == "ok" and compare_samples(list(result.baseline.samples_s), list(second.samples_s), alpha).verdict == "faster"
    if holds:
        result.confirmation = "its gain held in a second process"
        return result
    stable = [p for p in result.points if p.status == "ok" and not needs_second_process(p, result.baseline)]
    fallback = min(stable, key=lambda p: p.median_s) if stable else result.baseline
    result.confirmation = (f"{knobs_key(result.best.knobs)} was fastest in the search but not in a second process "
                           f"({'not significantly faster than the baseline' if second.status == 'ok' else second.status}); "
                           f"recommended instead: {knobs_key(fallback.knobs)}")
    result.best = fallback
    return result


@dataclass
class SearchResult:
    baseline: AdvicePoint
    best: AdvicePoint
    points: list = field(default_factory=list)  # every point measured (or recorded as failed / oom), in order
    skipped: list = field(default_factory=list)  # (knobs, reason) not measured
    order: list = field(default_factory=list)  # the knobs in search order
    second: AdvicePoint | None = None  # the best configuration measured again in a fresh process (process-variable knobs)
    confirmation: str = ""  # what the second process showed


# what a point costs, relative to an eager point of the same model: torch.compile's default mode took 4-5x an eager point
# on an H200 (resnet50, convnext_tiny at batch 64), max-autotune about 14x compile's default (321 s against 23 s)
COMPILE_COST = {"default": 5.0, "reduce-overhead": 5.0}
AUTOTUNE_OVER_DEFAULT = 15.0


def estimate_cost(knobs: dict, costs: dict[str, float], seen: dict) -> float:
    """Seconds a point is expected to take, from what the points measured so far took (`costs`, by key)."""
    eager = [c for k, c in costs.items() if seen[k].knobs.get("compile", "off") == "off"] or list(costs.values())
    e = statistics.median(eager) if eager else 0.0
    mode = knobs.get("compile", "off")
    if mode == "off":
        return e
    if str(mode).startswith("max-autotune"):
        done = [c for k, c in costs.items() if seen[k].knobs.get("compile") == "default"]
        return AUTOTUNE_OVER_DEFAULT * (max(done) if done else COMPILE_COST["default"] * e)
    return COMPILE_COST.get(mode, COMPILE_COST["default"]) * e


def _with_needs(space: list[Knob], knobs: dict, moved: str) -> dict | None:
    """`knobs` with each knob that is on given what it needs (`Knob.needs`): where the moved knob needs another's value, the
    first it may take; where the move takes another knob that is on out of what it needs, None."""
    for k in space:
        if not (knobs.get(k.name) and k.needs):
            continue
        for other, allowed in k.needs:
            if knobs.get(other) not in allowed:
                if k.name != moved:
                    return None
                knobs[other] = allowed[0]
    return knobs


def coordinate_search(space: list[Knob], measure, budget_s: float, baseline: dict | None = None, clock=time.perf_counter,
                      alpha: float = ALPHA, max_passes: int = 3) -> SearchResult:
    """Try each knob's values with the other knobs at the best found so far; keep a value only if significantly faster;
    go over the knobs again while a pass keeps something (at most `max_passes` passes).
    A point is started only if what it is expected to cost (`estimate_cost`) fits in what is left of the budget."""
    base_knobs = {k.name: k.values[0] for k in space}
    base_knobs.update(baseline or {})
    t0 = clock()
    seen: dict[str, AdvicePoint] = {}
    costs: dict[str, float] = {}

    def get(knobs):
        key = knobs_key(knobs)
        if key not in seen:
            t = clock()
            seen[key] = measure(dict(knobs))
            costs[key] = clock() - t
        return seen[key]

    base = get(base_knobs)
    result = SearchResult(base, base, [base], [], [k.name for k in space])
    if base.status != "ok":
        return result
    best = base
    skipped: dict[str, tuple] = {}
    for _ in range(max_passes):  # passes until one keeps nothing new: a knob can pay only once another is set (on the
        changed = False           # H200, bf16 was slower than fp32 for eager ViT-B/16 at batch 1, 5x faster under CUDA graphs)
        for knob in space:
            for v in knob.values:
                knobs = _with_needs(space, {**best.knobs, knob.name: v}, knob.name)
                if knobs is None:  # a value another knob that is on cannot take (fp32 while fused is on): not a point
                    continue
                key = knobs_key(knobs)
                if key in seen:
                    continue
                left = budget_s - (clock() - t0)
                if left <= 0:
                    skipped[key] = (knobs, f"the time budget ({budget_s:g} s) was spent")
                    continue
                est = estimate_cost(knobs, costs, seen)
                if any(knobs.get(k) != base_knobs.get(k) for k in PROCESS_VARIABLE if k in knobs):
                    est *= 2  # if it wins, it is measured again in a fresh process: room for that too
                if est > left:
                    skipped[key] = (knobs, f"would take about {est:.0f} s, more than the {left:.0f} s left of the time budget "
                                           f"({budget_s:g} s)")
                    continue
                skipped.pop(key, None)
                p = get(knobs)
                result.points.append(p)
                if p.status == "ok" and compare_samples(list(best.samples_s), list(p.samples_s), alpha).verdict == "faster":
                    best, changed = p, True
        if not changed:
            break
    result.skipped = list(skipped.values())
    result.best = best
    return result


def rank(result: SearchResult, alpha: float = ALPHA) -> list[dict]:
    """Every measured point against the baseline, fastest first: speed-up (baseline median / point median) with its 95 %
    bootstrap interval, the verdict, which rung moved, and each precision's numerical cost."""
    base = result.baseline
    rows = []
    for p in result.points:
        row = {"knobs": {k: v for k, v in p.knobs.items() if v != base.knobs.get(k)}, "status": p.status,
               "note": "; ".join(n for n in (p.note, p.numerical_note) if n),
               "median_ms": 1e3 * p.median_s if p.median_s else None, "max_abs_diff": p.max_abs_diff, "max_rel_diff": p.max_rel_diff}
        if p.status == "ok" and base.samples_s and p is not base:
            d = compare_samples(list(p.samples_s), list(base.samples_s), alpha)  # ratio = base / point: the speed-up
            row.update({"speedup": d.ratio, "speedup_low": d.ci[0] if d.ci else None, "speedup_high": d.ci[1] if d.ci else None,
                        "verdict": {"slower": "faster", "faster": "slower"}.get(d.verdict, d.verdict)})
        elif p is base:
            row.update({"speedup": 1.0, "verdict": "baseline"})
        row["rungs"] = rungs_moved(base, p)
        rows.append(row)
    return sorted(rows, key=lambda r: -(r.get("speedup") or 0))


def rungs_moved(base: AdvicePoint, p: AdvicePoint, threshold: float = 0.05) -> str:
    """'kernel gap ×2.50 → ×1.60, ...' for each gap that moved by more than `threshold`."""
    a, b = base.gaps(), p.gaps()
    out = []
    for rung in ("memory", "kernel", "overhead"):
        x, y = a.get(rung), b.get(rung)
        if x and y and abs(y / x - 1) > threshold:
            out.append(f"{rung} gap ×{x:.2f} → ×{y:.2f}")
    return ", ".join(out)


def snippet(knobs: dict, device: str = "cuda") -> str:
    """Python that applies `knobs` to a `model` and an input `x` that the user already has, and runs one step."""
    cuda = device.startswith("cuda")
    dev = "cuda" if cuda else "cpu"
    lines = ["import torch", ""]
    prec = knobs.get("precision", "fp32")
    if knobs.get("threads", "default") != "default":
        lines.append(f"torch.set_num_threads({int(knobs['threads'])})")
    if knobs.get("cudnn_benchmark"):
        lines.append("torch.backends.cudnn.benchmark = True")
    if prec == "tf32":
        lines += ["torch.backends.cuda.matmul.allow_tf32 = True", "torch.backends.cudnn.allow_tf32 = True"]
    if knobs.get("fused"):  # before any cast: the BatchNorms are folded into the convs in fp32
        lines += ["from effkit.kernels import fuse_blocks  # pip install effkit[kernels]", "model, _ = fuse_blocks(model.eval())"]
    if prec in ("bf16", "fp16"):
        dt = "torch.bfloat16" if prec == "bf16" else "torch.float16"
        lines += [f"model = model.to({dt})", f"x = x.to({dt})"]
    if knobs.get("layout") == "channels_last":
        lines += ["model = model.to(memory_format=torch.channels_last)", "x = x.contiguous(memory_format=torch.channels_last)"]
    lines.append("model = model.eval()")
    comp = knobs.get("compile", "off")
    if comp != "off":
        lines.append("model = torch.compile(model)" if comp == "default" else f"model = torch.compile(model, mode={comp!r})")
    ctx = []
    if prec.endswith("-mixed"):
        dt = "torch.bfloat16" if prec.startswith("bf16") else "torch.float16"
        ctx.append(f"torch.autocast({dev!r}, dtype={dt})")
    sdpa = knobs.get("sdpa_backend", "default")
    if sdpa != "default":
        lines.append("from torch.nn.attention import SDPBackend, sdpa_kernel")
        name = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "cudnn": "CUDNN_ATTENTION", "math": "MATH"}[sdpa]
        ctx.append(f"sdpa_kernel(SDPBackend.{name})")
    body = "out = model(x)"
    if knobs.get("cuda_graph"):
        lines += ["", "# capture one step in a CUDA graph (after a warm-up on a side stream), then replay it for new inputs copied into x",
                  "s = torch.cuda.Stream()", "s.wait_stream(torch.cuda.current_stream())", "with torch.cuda.stream(s), torch.no_grad():"]
        lines += [f"    with {', '.join(ctx)}:" if ctx else "    if True:", "        for _ in range(3):", "            model(x)"]
        lines += ["torch.cuda.current_stream().wait_stream(s)", "graph = torch.cuda.CUDAGraph()", "with torch.cuda.graph(graph), torch.no_grad():"]
        lines += [f"    with {', '.join(ctx)}:" if ctx else "    if True:", "        out = model(x)", "graph.replay()  # out now holds the result"]
        return "\n".join(lines) + "\n"
    lines += ["", "with torch.no_grad()" + "".join(f", {c}" for c in ctx) + ":", f"    {body}"]
    return "\n".join(lines) + "\n"


def throughput_search(measure_batch, start: int, limit: int = 4096, budget_s: float | None = None, clock=time.perf_counter) -> tuple[int | None, list]:
    """The batch with the best samples/s that fits: double from `start` until a batch runs out of memory (or `limit`),
    then bisect between the last that ran and the first that did not. `measure_batch(b)` returns (status, samples/s);
    every batch tried is returned as (batch, status, samples/s), OOMs included."""
    tried: list = []
    t0 = clock()

    def run(b):
        if budget_s is not None and clock() - t0 >= budget_s:
            tried.append((b, "skipped: the time budget was spent", None))
            return False
        status, rate = measure_batch(b)
        tried.append((b, status, rate))
        return status == "ok"

    good, bad = None, None
    b = start
    while b <= limit:
        if run(b):
            good = b
            b *= 2
        else:
            bad = b if tried[-1][1] == "oom" else None
            break
    if good is not None and bad is not None:
        lo, hi = good, bad
        while hi - lo > max(1, lo // 8):  # to within 1/8 of the largest that fits: batches that close cost more than they tell
            mid = (lo + hi) // 2
            if run(mid):
                lo = mid
            else:
                hi = mid
    ok = [(b, r) for b, st, r in tried if st == "ok" and r]
    return (max(ok, key=lambda x: x[1])[0] if ok else None), tried


def compile_split(eager: AdvicePoint, compiled: AdvicePoint) -> dict | None:
    """torch.compile's gain against the fusion what-if, from kernel-time totals: the part of the gain below the unfused
    waterline (which only removing memory traffic, i.e. fusion, can reach) and the part above it (better kernels: the
    kernel gap closed), and the share of the predicted fusion gain that compile realised."""
    if not (eager.kernels_s and compiled.kernels_s and eager.waterline_s and eager.fused_waterline_s):
        return None
    gain = eager.kernels_s - compiled.kernels_s
    traffic = max(0.0, eager.waterline_s - compiled.kernels_s)
    predicted = eager.waterline_s - eager.fused_waterline_s
    return {"eager_kernels_ms": 1e3 * eager.kernels_s, "compiled_kernels_ms": 1e3 * compiled.kernels_s, "waterline_ms": 1e3 * eager.waterline_s,
            "fused_waterline_ms": 1e3 * eager.fused_waterline_s, "gain_ms": 1e3 * gain, "kernel_gap_part_ms": 1e3 * (gain - traffic),
            "memory_traffic_part_ms": 1e3 * traffic, "predicted_fusion_gain_ms": 1e3 * predicted,
            "realised_share_of_predicted": traffic / predicted if predicted > 0 else None,
            "compiled_over_fused_waterline": compiled.kernels_s / eager.fused_waterline_s}


def compile_table(result: SearchResult) -> list[dict]:
    """compile_split for every compiled point that ran, against the same knobs without compile."""
    by_key = {p.key: p for p in result.points}
    rows = []
    for p in result.points:
        if p.status != "ok" or p.knobs.get("compile", "off") == "off":
            continue
        eager = by_key.get(knobs_key({**p.knobs, "compile": "off"}))
        split = compile_split(eager, p) if eager is not None and eager.status == "ok" else None
        if split:
            rows.append({"knobs": p.knobs, **split})
    return rows
