"""The effkit command line: thin typer commands, each a call into the Python API.

The library raises EffkitError; only this module turns it into a one-line red message
and an exit code (a traceback with --debug).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import sys
from enum import Enum
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from effkit.config import COMPILE_MODES, PRECISIONS, SDPA_BACKENDS
from effkit.errors import EffkitError, UserInputError

class _OneLineErrors(typer.core.TyperGroup):
    """Typer's command group, but a usage error (an unknown option, a value not among an option's choices, a missing
    argument) is one line, `error: ...` naming the value and the choices, with exit code 2, as effkit's own input
    errors are: typer would draw it in a box of several lines under the usage. The exceptions are matched by their
    interface (format_message, exit_code), not by class, as typer has moved between click and its own copy of it."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except Exception as e:
            kind = type(e).__name__
            if kind == "Abort":
                print("Aborted!", file=sys.stderr)
                sys.exit(1)
            if not (hasattr(e, "format_message") and isinstance(getattr(e, "exit_code", None), int)):
                raise
            if kind == "NoArgsIsHelpError":  # `effkit` alone: the help, as before
                e.show()
                sys.exit(e.exit_code)
            ctx = getattr(e, "ctx", None)
            msg = e.format_message().replace(": Value error, ", ": ")  # typer's converter words a bad choice as pydantic does
            if ctx is not None and msg.startswith("No such command"):
                msg = f"{msg.rstrip('.')}; the commands are {', '.join(ctx.command.list_commands(ctx))}"
            elif ctx is not None and msg.startswith("No such option") and "Possible options" not in msg:
                msg = f"{msg}; `{ctx.command_path} --help` lists the options"
            _console(stderr=True).print(f"[bold red]error:[/bold red] {escape(msg)}", soft_wrap=True)
            sys.exit(e.exit_code)
        sys.exit(rv if type(rv) is int else 0)  # an Exit's code (typer.Exit(2) from cli_errors), else success


app = typer.Typer(
    cls=_OneLineErrors,
    name="effkit",
    help="Why is this model as fast as it is, and what would make it faster? Counts, measures and explains PyTorch models.",
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
)
DEFAULT_MODEL = "convnext_tiny"


Precision = Enum("Precision", {n.replace("-", "_"): n for n in PRECISIONS}, type=str)
SdpaBackend = Enum("SdpaBackend", {n: n for n in SDPA_BACKENDS}, type=str)
CompileMode = Enum("CompileMode", {n.replace("-", "_"): n for n in COMPILE_MODES}, type=str)


class Mode(str, Enum):
    infer = "infer"
    train = "train"


class Counter(str, Enum):
    effkit = "effkit"
    fvcore = "fvcore"


class Format(str, Enum):
    auto = "auto"
    table = "table"
    csv = "csv"
    json = "json"


Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error.")]
DeviceOpt = Annotated[str, typer.Option(help="cpu, cuda or cuda:N: where to measure.")]
BatchOpt = Annotated[Optional[str], typer.Option(help="Batch sizes, comma-separated (the layer views use the last; default 1,64 on a GPU, 1 on the CPU).")]
PrecisionOpt = Annotated[Precision, typer.Option("--precision", "--dtype", help="fp32, tf32 (CUDA), fp16 and bf16 cast weights and inputs; "
                                                 "bf16-mixed and fp16-mixed keep fp32 weights under torch.autocast (Lightning's names).")]
CudnnBenchOpt = Annotated[Optional[bool], typer.Option("--cudnn-benchmark/--no-cudnn-benchmark", help="Set cudnn.benchmark (default: PyTorch's, off); "
                                                       "its pick can vary from run to run.")]
Tf32MatmulOpt = Annotated[Optional[bool], typer.Option("--tf32-matmul/--no-tf32-matmul", help="TF32 for fp32 matmuls (default: PyTorch's, off).")]
Tf32ConvOpt = Annotated[Optional[bool], typer.Option("--tf32-conv/--no-tf32-conv", help="TF32 for fp32 cuDNN convolutions (default: PyTorch's, on).")]
SdpaOpt = Annotated[Optional[SdpaBackend], typer.Option("--sdpa-backend", help="Scaled-dot-product attention backend (default: PyTorch picks).")]
CompileModeOpt = Annotated[Optional[CompileMode], typer.Option("--compile-mode", help="torch.compile mode (implies --compile).")]
CeilOpt = Annotated[Optional[str], typer.Option(help="Analyse against a datasheet (h100, h200, a100, l4, ...) or a ceilings JSON instead of "
                                                       "the device's measured ceilings; then counts only, unless --measure.")]
MeasureOpt = Annotated[Optional[bool], typer.Option("--measure/--no-measure", help="Measure on --device (default: yes, unless --ceilings).")]
CLOpt = Annotated[bool, typer.Option("--channels-last", help="NHWC layout.")]
GraphOpt = Annotated[bool, typer.Option("--cuda-graph", help="Time CUDA-graph replays.")]
CompileOpt = Annotated[bool, typer.Option("--compile", help="torch.compile the model.")]
FuseOpt = Annotated[Optional[str], typer.Option(help="Fusion what-if blocks: module paths matching this pattern (default: residual blocks).")]
MinTimeOpt = Annotated[float, typer.Option(help="Seconds of timed steps per batch size.")]
ShapeOpt = Annotated[Optional[list[str]], typer.Option("--input-shape", help="One sample's shape, e.g. 3,224,224 (models that do not declare it); "
                                                      "repeat for several inputs.")]
SeqLenOpt = Annotated[Optional[int], typer.Option("--seq-len", help="Tokens per sample for text models (hf:..., token-id factories).")]
TaskOpt = Annotated[Optional[str], typer.Option("--task", help="hf: models: the Auto class to build (causal-lm, masked-lm, seq2seq-lm, "
                                                "sequence-classification, token-classification, question-answering, image-classification, "
                                                "base); default: the config's own architecture.")]


def _shapes(input_shape):
    """Repeatable --input-shape values -> one shape, several, or None."""
    if not input_shape:
        return None
    shapes = [parse_shape(s) for s in input_shape]
    return shapes[0] if len(shapes) == 1 else shapes


def _model_kwargs(seq_len, task) -> dict:
    return {k: v for k, v in (("seq_len", seq_len), ("task", task)) if v is not None}
ResOpt = Annotated[Optional[int], typer.Option(help="Input height = width.")]
RefreshOpt = Annotated[bool, typer.Option("--refresh", help="Measure the device's ceilings again instead of using the cached ones.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace the run the --out folder already holds.")]
MismatchOpt = Annotated[bool, typer.Option("--mismatched-ceilings", help="Measure on this device but analyse against --ceilings of another "
                                                                          "kind (e.g. CPU times against a GPU datasheet): meaningless ratios, on purpose.")]


def _console(stderr: bool = False) -> Console:
    c = Console(stderr=stderr, highlight=False)
    if not c.is_terminal:  # piped or captured: no terminal width to respect, keep tables whole
        c = Console(stderr=stderr, highlight=False, width=220)
    return c


class _WarningLines(logging.Handler):
    """effkit's logged warnings (an uncached ceiling, a discarded cache) as yellow lines on stderr."""

    def emit(self, record):
        _console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(record.getMessage())}", soft_wrap=True)


def _show_warnings() -> None:
    log = logging.getLogger("effkit")
    if not any(isinstance(h, _WarningLines) for h in log.handlers):
        log.addHandler(_WarningLines(logging.WARNING))
        log.propagate = False


def cli_errors(fn):
    """Turn EffkitError into a one-line message and its exit code; --debug re-raises."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _show_warnings()
        try:
            return fn(*args, **kwargs)
        except EffkitError as e:
            if kwargs.get("debug"):
                raise
            _console(stderr=True).print(f"[bold red]error:[/bold red] {escape(str(e))}", soft_wrap=True)
            raise typer.Exit(e.exit_code)
        except KeyboardInterrupt:
            _console(stderr=True).print("[yellow]interrupted[/yellow]")
            raise typer.Exit(130)
        except typer.Exit:  # a command's own exit code (the diff gate's 1): not an error
            raise
        except Exception as e:  # a bug in effkit, not in the input: say so, briefly
            if kwargs.get("debug"):
                raise
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            _console(stderr=True).print(f"[bold red]internal error:[/bold red] {type(e).__name__}: {escape(msg)} (run again with --debug for the traceback)", soft_wrap=True)
            raise typer.Exit(1)

    return wrapper


def parse_shape(text: str) -> tuple[int, ...]:
    """'3,224,224' -> (3, 224, 224)."""
    try:
        shape = tuple(int(x) for x in text.replace("x", ",").split(",") if x.strip())
    except ValueError:
        raise UserInputError(f"input shape {text!r} must be comma-separated positive integers, e.g. 3,224,224 or 197,768") from None
    if not shape or any(d <= 0 for d in shape):
        raise UserInputError(f"input shape {text!r} must be comma-separated positive integers, e.g. 3,224,224 or 197,768")
    return shape


@app.command()
@cli_errors
def trace(
    model: Annotated[str, typer.Argument(help="Zoo name or alias (effkit models), torchvision:NAME, timm:NAME, hf:ORG/NAME, path/to/file.py:factory, or package.module:factory.")] = DEFAULT_MODEL,
    batch: Annotated[int, typer.Option(help="Batch size.")] = 1,
    resolution: Annotated[Optional[int], typer.Option(help="Input height = width (builds ViTs for it).")] = None,
    input_shape: Annotated[Optional[list[str]], typer.Option("--input-shape", help="One sample's shape without the batch, e.g. 3,224,224 or 197,768; repeat for several inputs.")] = None,
    precision: PrecisionOpt = Precision.fp32,
    device: Annotated[str, typer.Option(help="cpu (real tensors), meta (no memory, no arithmetic: same counts), or cuda[:N].")] = "cpu",
    mode: Annotated[Mode, typer.Option(help="infer: forward; train: forward + backward, bytes saved for backward.")] = Mode.infer,
    depth: Annotated[Optional[int], typer.Option(help="Roll layers up to this many path components (0: the whole model).")] = None,
    csv: Annotated[Optional[str], typer.Option(help="Write the layer table as CSV here.")] = None,
    json: Annotated[Optional[str], typer.Option(help="Write totals, layers, uncovered ops and conventions as JSON here.")] = None,
    strict: Annotated[bool, typer.Option(help="Fail if any op has no formula.")] = False,
    counter: Annotated[Counter, typer.Option(help="fvcore: also show fvcore's per-layer counts (its convention).")] = Counter.effkit,
    seq_len: SeqLenOpt = None,
    task: TaskOpt = None,
    memory: Annotated[bool, typer.Option("--memory", help="Predict the peak memory of an inference step (and with --mode train, of a "
                                                          "training step) from a meta trace, with what fills it at the peak.")] = False,
    optimizer: Annotated[Optional[str], typer.Option(help="Training-memory prediction: the optimizer whose state and step to count "
                                                          "(sgd, sgd-momentum, adamw).")] = None,
    fits: Annotated[Optional[str], typer.Option(help="The largest batch whose predicted peak fits this memory (e.g. 80GB, 40GiB) or "
                                                     "'cuda' (the GPU's free memory now), by bisection on meta traces.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Terminal output: table on a terminal, CSV when piped (auto).")] = Format.auto,
    debug: Debug = False,
):
    """Count what a model asks for: per-layer MACs, FLOPs, params, activations, bytes."""
    from effkit.report.tables import write_csv, write_json
    from effkit.report.terminal import print_trace
    from effkit.trace.tracer import trace as run_trace

    if depth is not None and depth < 0:
        raise UserInputError(f"depth must be >= 0, got {depth}")
    shapes = [parse_shape(s) for s in input_shape] if input_shape else None
    if memory or fits or optimizer:
        return _trace_memory(model, shapes, batch, resolution, precision.value, mode.value, optimizer, fits, seq_len, task, fmt)
    err = _console(stderr=True)
    with err.status(f"tracing {model} ({device}, {mode})…", spinner="dots") if err.is_terminal else contextlib.nullcontext():
        result = run_trace(model, shapes, batch=batch, resolution=resolution, dtype=precision.value, device=device,
                           mode=mode.value, strict=strict, counter=counter.value, seq_len=seq_len, **({"task": task} if task else {}))
    if result.uncovered:
        err.print(f"[yellow]warning:[/yellow] {sum(u.count for u in result.uncovered)} op call(s) without a formula, not counted: "
                  + ", ".join(f"{u.op} x{u.count}" for u in result.uncovered), soft_wrap=True)
    out = _console()
    kind = fmt.value if fmt != Format.auto else ("table" if out.is_terminal else "csv")
    if kind == "table":
        print_trace(result, out, depth)
    elif kind == "csv":
        sys.stdout.write(result.to_frame(depth).to_csv(index=False))
    else:
        sys.stdout.write(result.to_json(depth) + "\n")
    for path, writer in ((csv, write_csv), (json, write_json)):
        if path:
            err.print(f"wrote {writer(result, path, depth)}")


def _trace_memory(model, shapes, batch, resolution, precision, mode, optimizer, fits, seq_len, task, fmt) -> None:
    """effkit trace --memory / --fits: the predicted peak and its breakdown, or the largest batch that fits."""
    import json as _json

    from effkit.models.ref import resolve
    from effkit.trace.memory import CONTEXT_BYTES, HEADROOM_FRACTION, budget_of, largest_batch, predict_memory, usable

    if optimizer is not None and mode != "train":
        raise UserInputError("--optimizer counts a training step's optimizer: give --mode train too")
    budget = budget_of(fits) if fits else None  # a bad size fails before any tracing
    ref = resolve(model, shapes, resolution=resolution, **_model_kwargs(seq_len, task))
    out, err = _console(), _console(stderr=True)
    if budget is not None:
        best, tried = largest_batch(lambda b: predict_memory(ref, b, precision=precision, mode=mode, optimizer=optimizer).peak_bytes, budget[0])
        what = "inference" if mode == "infer" else f"a training step ({optimizer or 'no optimizer'})"
        out.print(f"{ref.name}, {what}, {precision}: the largest batch whose predicted peak fits {budget[0] / 1e9:,.2f} GB ({budget[1]}) is "
                  f"[bold]{best}[/bold]. Kept back: {CONTEXT_BYTES / 2**20:.0f} MiB for the CUDA context and library workspaces, then "
                  f"{100 * HEADROOM_FRACTION:.0f} % for the allocator's rounding: the prediction may fill {usable(budget[0]) / 1e9:,.2f} GB.")
        out.print("batches tried (predicted peak): " + ", ".join(f"{b}: {p / 1e9:,.2f} GB" for b, p in tried))
        return
    pred = predict_memory(ref, batch, precision=precision, mode=mode, optimizer=optimizer)
    if fmt == Format.json or (fmt == Format.auto and not out.is_terminal):
        sys.stdout.write(_json.dumps({k: v for k, v in pred.to_dict().items() if k != "timeline"}, indent=1) + "\n")
        return
    out.print(pred.summary())
    from rich.table import Table

    t = Table(title="at the peak", header_style="bold")
    t.add_column("what", justify="left")
    t.add_column("MB", justify="right")
    for k, v in pred.at_peak.items():
        t.add_row(k, f"{v / 1e6:,.1f}")
    t.add_row("[bold]peak[/bold]", f"[bold]{pred.peak_bytes / 1e6:,.1f}[/bold]")
    out.print(t)
    if pred.layers_at_peak:
        out.print("activations alive at the peak, by the layer that made them (largest first): " + ", ".join(
            f"{p} {b / 1e6:,.1f} MB" for p, b in pred.layers_at_peak[:8]), soft_wrap=True)
    err.print("[dim]storage-level liveness on a meta trace: views are free, in-place ops allocate nothing, a storage lives from the op "
              "that makes it to its last reader; the allocator's rounding and library workspaces are not modelled. MB = 10^6 bytes.[/dim]")


@app.command()
@cli_errors
def models(
    pattern: Annotated[str, typer.Argument(help="Shell-style pattern, e.g. 'convnext*'.")] = "*",
    count: Annotated[bool, typer.Option("--count/--no-count", help="Count params and MACs of each model (meta trace; cached).")] = True,
    debug: Debug = False,
):
    """List the built-in models: family, input, counted params and MACs, published figures with their sources."""
    from rich.progress import Progress

    from effkit.models import entries, list_models
    from effkit.report.terminal import MODELS_NOTE, models_table
    from effkit.trace.zoo import zoo_counts

    names = set(list_models(pattern))
    rows = [e for e in entries() if e.name in names or names & set(e.aliases)]
    if not rows:
        raise UserInputError(f"no built-in model matches {pattern!r}; `effkit models` lists them all")
    err = _console(stderr=True)
    counts = {}
    if count:
        with Progress(console=err, disable=not err.is_terminal, transient=True) as prog:
            task = prog.add_task("counting (meta trace, cached after the first time)", total=len(rows))
            counts = zoo_counts([e.name for e in rows], on_model=lambda n: prog.advance(task))
    out = _console()
    out.print(models_table(rows, counts))
    out.print(MODELS_NOTE)


def parse_batches(text: str) -> list[int]:
    """'1,8,64' -> [1, 8, 64]."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserInputError(f"batch {text!r} must be comma-separated positive integers, e.g. 1,8,64") from None


@app.command()
@cli_errors
def device(
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    refresh: Annotated[bool, typer.Option(help="Measure again instead of using the cached ceilings.")] = False,
    json: Annotated[Optional[str], typer.Option(help="Write facts, ceilings and datasheet figures as JSON here.")] = None,
    debug: Debug = False,
):
    """Measure the device's ceilings (peak FLOP/s per dtype, memory bandwidth) and show its facts."""
    from effkit.device.ceilings import cache_dir, device_ceilings
    from effkit.files import atomic_write_json
    from effkit.report.terminal import print_ceilings

    err = _console(stderr=True)
    with err.status(f"measuring {device} ceilings…", spinner="dots") if err.is_terminal else contextlib.nullcontext() as st:
        c = device_ceilings(device, refresh=refresh, progress=(lambda m: st.update(f"measuring {device}: {m}")) if err.is_terminal else None)
    print_ceilings(c, _console(), cache_dir())
    if json:
        err.print(f"wrote {atomic_write_json(json, c.to_dict())}")


@app.command()
@cli_errors
def bench(
    model: Annotated[str, typer.Argument(help="Zoo name, path/to/file.py:factory or package.module:factory.")] = DEFAULT_MODEL,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = "1",
    precision: PrecisionOpt = Precision.fp32,
    resolution: Annotated[Optional[int], typer.Option(help="Input height = width.")] = None,
    input_shape: ShapeOpt = None,
    seq_len: SeqLenOpt = None,
    task: TaskOpt = None,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="NHWC memory layout for model and input.")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    fallback_eager: Annotated[bool, typer.Option("--fallback-eager", help="If compilation fails, measure eager instead of failing.")] = False,
    cuda_graph: Annotated[bool, typer.Option("--cuda-graph", help="Capture the step in a CUDA graph and time its replays.")] = False,
    mode: Annotated[Mode, typer.Option(help="infer: forward; train: forward + backward + optimizer step.")] = Mode.infer,
    layers: Annotated[bool, typer.Option("--layers/--no-layers", help="Per-layer kernel times through the profiler.")] = True,
    top: Annotated[int, typer.Option(help="Layers to show, by time.")] = 10,
    min_time: Annotated[float, typer.Option(help="Seconds of timed steps per batch size (at least 20 steps).")] = 1.0,
    json: Annotated[Optional[str], typer.Option(help="Write every point (samples, layers, provenance) as JSON, as it is measured.")] = None,
    csv: Annotated[Optional[str], typer.Option(help="Append one CSV row per point, as it is measured.")] = None,
    cudnn_benchmark: CudnnBenchOpt = None, tf32_matmul: Tf32MatmulOpt = None, tf32_conv: Tf32ConvOpt = None, sdpa_backend: SdpaOpt = None,
    compile_mode: CompileModeOpt = None,
    fused: Annotated[bool, typer.Option("--fused", help="Swap the model's ConvFirst blocks, stride-1 MBConv blocks and stem for fused "
                                                        "kernels (effkit.kernels; inference, BatchNorms folded; on CUDA with --precision "
                                                        "bf16 or fp16) and measure that; with --compile, the rest of the model compiled "
                                                        "around them.")] = False,
    fused_only: Annotated[Optional[str], typer.Option(help="With --fused: fuse only these blocks and stems, comma-separated module "
                                                          "paths (e.g. the ones `effkit profile --fused` found faster than "
                                                          "torch.compile, as its selective configuration).")] = None,
    debug: Debug = False,
):
    """Measure latency and throughput over batch sizes, with per-layer kernel times and provenance."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from effkit.config import RunConfig
    from effkit.models.ref import resolve
    from effkit.report.summary import peak_memory_sentence
    from effkit.report.terminal import add_bench_row, bench_table, print_bench_layers
    from effkit.run.runner import run

    config = RunConfig(device=device, precision=precision.value, batches=parse_batches(batch), mode=mode.value,
                       layout="channels_last" if channels_last else "contiguous", cuda_graph=cuda_graph, compile=compile, layers=layers,
                       fallback_eager=fallback_eager, min_time_s=min_time, fused=fused,
                       fused_only=_paths(fused_only),
                       **_knobs(cudnn_benchmark, tf32_matmul, tf32_conv, sdpa_backend, compile_mode))
    ref = resolve(model, _shapes(input_shape), resolution=resolution, **_model_kwargs(seq_len, task))
    out, err = _console(), _console(stderr=True)
    table = bench_table(model, config)
    points = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=err, disable=not err.is_terminal) as prog:
        task = prog.add_task(f"bench {model}", total=len(config.batches))

        def on_point(p):
            points.append(p)
            prog.advance(task)
            add_bench_row(table, p)
            w = p.timing.spread_warning() if p.timing else None
            if w:
                err.print(f"[yellow]warning:[/yellow] batch {p.batch}: {w}")
            if p.status == "oom":
                err.print(f"[yellow]batch {p.batch}: out of memory, recorded as oom; going on[/yellow]")
            memory = peak_memory_sentence(p)
            if memory:
                err.print(f"batch {p.batch}: {memory}")

        run(ref, config, json_path=json, csv_path=csv, on_point=on_point, on_stage=lambda m: prog.update(task, description=f"bench {model}: {m}"))
    out.print(table)
    print_bench_layers(points, out, top)
    for path in (json, csv):
        if path:
            err.print(f"wrote {path}")


def _bench_command(model: str, config, batch: int, paths: list[str], input_shape: str | None, resolution: int | None) -> str:
    """The `effkit bench` command that measures a profile's selective configuration (fused only `paths`, the rest
    compiled) at `batch` under the profile's settings."""
    import shlex

    words = ["effkit", "bench", model, "--device", config.device, "--precision", config.precision, "--batch", str(batch)]
    words += ["--input-shape", input_shape] if input_shape else []
    words += ["--resolution", str(resolution)] if resolution else []
    words += ["--channels-last"] if config.channels_last else []
    words += ["--cuda-graph"] if config.cuda_graph else []
    words += ["--no-layers", "--fused", "--compile", "--fused-only", ",".join(paths)]
    return " ".join(shlex.quote(w) for w in words)


def _paths(text: str | None) -> tuple[str, ...] | None:
    """Comma-separated module paths (None: not given)."""
    return None if text is None else tuple(p.strip() for p in text.split(",") if p.strip())


def _knobs(cudnn_benchmark, tf32_matmul, tf32_conv, sdpa_backend, compile_mode) -> dict:
    """RunConfig's backend knobs from their options (None: PyTorch's own default)."""
    return {"cudnn_benchmark": cudnn_benchmark, "tf32_matmul": tf32_matmul, "tf32_cudnn": tf32_conv,
            "sdpa_backend": sdpa_backend.value if sdpa_backend else None, "compile_mode": compile_mode.value if compile_mode else None}


def _run_config(device: str, batch: str | None, precision, channels_last: bool, cuda_graph: bool, compile: bool, min_time: float, knobs: dict):
    """The RunConfig of a profile or compare command's options (batch 1 and 64 on a GPU unless given)."""
    from effkit.config import RunConfig
    from effkit.profiling import default_batches

    return RunConfig(device=device, precision=precision.value, batches=parse_batches(batch) if batch else default_batches(device),
                     layout="channels_last" if channels_last else "contiguous", cuda_graph=cuda_graph, compile=compile, min_time_s=min_time, **knobs)


def _stage_progress(err: Console):
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, disable=not err.is_terminal, transient=True)


@app.command()
@cli_errors
def profile(
    model: Annotated[str, typer.Argument(help="Zoo name, path/to/file.py:factory or package.module:factory.")] = DEFAULT_MODEL,
    device: DeviceOpt = "cpu", batch: BatchOpt = None, precision: PrecisionOpt = Precision.fp32, out: Annotated[Optional[str], typer.Option(help="Run folder (default: reports/MODEL-DEVICE-PRECISION-TIME).")] = None,
    ceilings: CeilOpt = None, measure: MeasureOpt = None, channels_last: CLOpt = False, cuda_graph: GraphOpt = False, compile: CompileOpt = False,
    fuse: FuseOpt = None, min_time: MinTimeOpt = 1.0, input_shape: ShapeOpt = None, resolution: ResOpt = None, seq_len: SeqLenOpt = None,
    task: TaskOpt = None, refresh: RefreshOpt = False,
    force: ForceOpt = False, mismatched_ceilings: MismatchOpt = False, cudnn_benchmark: CudnnBenchOpt = None, tf32_matmul: Tf32MatmulOpt = None,
    tf32_conv: Tf32ConvOpt = None, sdpa_backend: SdpaOpt = None, compile_mode: CompileModeOpt = None,
    fused: Annotated[bool, typer.Option("--fused", help="Also check the fusion what-if against reality: eager, torch.compile, the "
                                                        "model with its ConvFirst blocks, stride-1 MBConv blocks and stem as fused "
                                                        "kernels (effkit.kernels), and that with the rest compiled, beside the "
                                                        "predicted fused waterline. On CUDA the kernels take 16-bit weights: "
                                                        "with --precision bf16 or fp16.")] = False,
    selective: Annotated[bool, typer.Option("--selective/--no-selective", help="With --fused: also time each distinct block alone, "
                                                                              "fused against compiled, and the model with only the "
                                                                              "blocks that won fused and the rest compiled.")] = True,
    debug: Debug = False,
):
    """Trace, measure, analyse and report one model: an HTML report, CSVs and figures in one run folder."""
    from effkit.models.ref import resolve
    from effkit.profiling import ProfileOptions, run_profile

    config = _run_config(device, batch, precision, channels_last, cuda_graph, compile, min_time,
                         _knobs(cudnn_benchmark, tf32_matmul, tf32_conv, sdpa_backend, compile_mode))
    ref = resolve(model, _shapes(input_shape), resolution=resolution, **_model_kwargs(seq_len, task))
    if fused:
        from effkit.profiling import fusable_blocks

        config.replace(fused=True)  # a precision the kernels do not take fails here, before any measuring
        fusing = fusable_blocks(ref)  # so does a model with nothing to fuse
    with _stage_progress(_console(stderr=True)) as prog:
        task = prog.add_task(f"profile {model}")
        run = run_profile(ref, config, ProfileOptions(out, ceilings, measure, fuse, ref.top1, refresh, force, mismatched_ceilings, fused),
                          on_stage=lambda s: prog.update(task, description=f"profile {model}: {s}"))
        if fused:
            from effkit.profiling import run_fusion_check

            run, rows = run_fusion_check(run, ref, config, ceilings=ceilings, fusing=fusing, selective=selective,
                                         on_stage=lambda s: prog.update(task, description=f"profile {model}: {s}"))
    _print_summary(run)
    if fused:
        from effkit.profiling import fusion_note

        for r in rows:
            _console().print(escape(fusion_note(r)), soft_wrap=True)
            if r.get("selective_fused") and not r.get("selective_same_as"):
                _console().print(escape("the selective configuration again: " + _bench_command(model, config, r["batch"], r["selective_fused"],
                                                                                               input_shape, resolution)), soft_wrap=True)


@app.command()
@cli_errors
def compare(
    models: Annotated[list[str], typer.Argument(help="Two or more models.")],
    device: DeviceOpt = "cpu", batch: BatchOpt = None, precision: PrecisionOpt = Precision.fp32, out: Annotated[Optional[str], typer.Option(help="Folder (default: reports/compare-TIME).")] = None,
    ceilings: CeilOpt = None, measure: MeasureOpt = None, channels_last: CLOpt = False, cuda_graph: GraphOpt = False, compile: CompileOpt = False,
    fuse: FuseOpt = None, min_time: MinTimeOpt = 1.0, input_shape: ShapeOpt = None, resolution: ResOpt = None, seq_len: SeqLenOpt = None,
    task: TaskOpt = None,
    accuracy: Annotated[Optional[str], typer.Option(help="CSV of model,top1 for the accuracy vs latency plot (default: the zoo's published top-1).")] = None,
    refresh: RefreshOpt = False, force: ForceOpt = False, mismatched_ceilings: MismatchOpt = False, cudnn_benchmark: CudnnBenchOpt = None,
    tf32_matmul: Tf32MatmulOpt = None, tf32_conv: Tf32ConvOpt = None, sdpa_backend: SdpaOpt = None, compile_mode: CompileModeOpt = None,
    debug: Debug = False,
):
    """Profile several models and write one comparison report (summary table, efficiency gap plot)."""
    from effkit.models.ref import resolve
    from effkit.profiling import ProfileOptions, read_accuracy, run_compare

    if len(models) < 2:
        raise UserInputError("compare needs at least two models")
    config = _run_config(device, batch, precision, channels_last, cuda_graph, compile, min_time,
                         _knobs(cudnn_benchmark, tf32_matmul, tf32_conv, sdpa_backend, compile_mode))
    acc = read_accuracy(accuracy) or {}
    refs = [resolve(m, _shapes(input_shape), resolution=resolution, **_model_kwargs(seq_len, task)) for m in models]
    top1 = {ref.name: acc.get(m, ref.top1) for m, ref in zip(models, refs)}
    with _stage_progress(_console(stderr=True)) as prog:
        task = prog.add_task("compare")
        run = run_compare(refs, config, ProfileOptions(out, ceilings, measure, fuse, None, refresh, force, mismatched_ceilings), top1,
                          on_model=lambda m: prog.update(task, description=f"compare: profiling {m}"))
    _print_summary(run)


@app.command()
@cli_errors
def report(
    run_dirs: Annotated[list[str], typer.Argument(help="Run folders written by profile, compare or sweep.")],
    out: Annotated[Optional[str], typer.Option(help="Where to write a comparison of several runs (default: reports/compare-TIME).")] = None,
    debug: Debug = False,
):
    """Rebuild a report from saved run folders without measuring again (one folder: in place; several: a comparison)."""
    from pathlib import Path

    from effkit.report.run_dir import rebuild
    from effkit.sweeping import MANIFEST, merge

    if len(run_dirs) == 1 and out is None and (Path(run_dirs[0]) / MANIFEST).is_file():  # a sweep: merged again from its point files
        counts = merge(run_dirs[0])
        _console().print(f"sweep: {counts['ok']} points ok, {counts['other']} not ok, {counts['missing']} not measured yet; "
                         f"report: [bold]{Path(run_dirs[0]) / 'index.html'}[/bold]")
        return
    folder = rebuild(run_dirs, out)
    _console().print(f"report: [bold]{folder / 'index.html'}[/bold]")


@app.command()
@cli_errors
def scale(
    base: Annotated[str, typer.Argument(help="A zoo model to scale (RegNet, EfficientNet, ConvNeXt, ResNet, ...).")] = "regnety_400mf",
    strategies: Annotated[str, typer.Option(help="Comma-separated: d, w, r, dw, dr, wr, dwr, efficientnet, dWr.")] = "w,d,r,dwr,dWr",
    factors: Annotated[str, typer.Option(help="FLOPs factors, comma-separated.")] = "1,2,4,8,16",
    alpha: Annotated[float, typer.Option(help="dWr's α: d ∝ s^((1-α)/2), w ∝ s^(α/2), r ∝ s^((1-α)/4).")] = 0.8,
    device: Annotated[Optional[str], typer.Option(help="Measure each variant here (cpu, cuda[:N]); counts only if not given.")] = None,
    measure: Annotated[Optional[bool], typer.Option("--measure/--no-measure", help="Measure on --device (default: when a device is given).")] = None,
    batch: Annotated[int, typer.Option(help="Batch size.")] = 1,
    precision: PrecisionOpt = Precision.fp32,
    out: Annotated[Optional[str], typer.Option(help="Report folder (default: reports/scale-BASE-TIME).")] = None,
    min_time: MinTimeOpt = 0.5,
    cuda_graph: GraphOpt = False,
    channels_last: CLOpt = False,
    debug: Debug = False,
):
    """Scale a model by each strategy and factor: counts (and latency), fitted exponents, plots, report."""
    from effkit.scaling import parse_list, scale as run_scale

    measure_on = device if (measure is None or measure) else None
    if measure and not device:
        raise UserInputError("--measure needs --device (cpu, cuda or cuda:N)")
    strats = [s.strip() for s in strategies.split(",") if s.strip()]
    facs = parse_list(factors, "factors")
    err = _console(stderr=True)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=err, disable=not err.is_terminal) as prog:
        task = prog.add_task(f"scale {base}", total=len(strats) * len(facs))
        res = run_scale(base, strats, facs, alpha=alpha, device=measure_on, batch=batch, dtype=precision.value, out=out, min_time_s=min_time,
                        cuda_graph=cuda_graph, channels_last=channels_last,
                        on_point=lambda p: prog.update(task, advance=1, description=f"scale {base}: {p.strategy} x{p.factor:g}"))
    from effkit.report.terminal import print_scale

    print_scale(res, _console())


@app.command()
@cli_errors
def diff(
    a: Annotated[str, typer.Argument(help="A: a run folder (profile, compare), a run.json, a trace JSON (effkit trace --json), or a model spec.")],
    b: Annotated[str, typer.Argument(help="B: the same kinds as A.")],
    device: Annotated[str, typer.Option(help="Where model specs are traced: meta (counts, no memory or arithmetic), cpu or cuda.")] = "meta",
    batch: Annotated[int, typer.Option(help="Batch size for model specs.")] = 1,
    precision: PrecisionOpt = Precision.fp32,
    model_a: Annotated[Optional[str], typer.Option(help="Which model of a comparison folder A is.")] = None,
    model_b: Annotated[Optional[str], typer.Option(help="Which model of a comparison folder B is.")] = None,
    fail_on: Annotated[Optional[str], typer.Option(help="Gate rules, e.g. 'macs>0%,params>0%,latency_ms>+5%', or a TOML file: exit 1 "
                                                        "with one line per violated rule. Only significant time changes violate time rules.")] = None,
    out: Annotated[Optional[str], typer.Option(help="Write diff.json, diff.csv and index.html (with the waterfall) here.")] = None,
    format: Annotated[Format, typer.Option(help="auto: a table on a terminal, CSV when piped; or table, csv, json.")] = Format.auto,
    top: Annotated[int, typer.Option(help="Changed layers shown in the table.")] = 25,
    alpha: Annotated[float, typer.Option(help="Significance level of the time tests.")] = 0.05,
    debug: Debug = False,
):
    """What changed from A to B: configuration, counts per layer, and times with their significance; a gate for CI."""
    from effkit.diffing import diff as run_diff, gate, read_rules

    rules = read_rules(fail_on) if fail_on else None  # a malformed rule fails before any tracing
    res = run_diff(a, b, device=device, batch=batch, precision=precision.value, model_a=model_a, model_b=model_b, alpha=alpha)
    console = _console()
    fmt = format.value if format != Format.auto else ("table" if console.is_terminal else "csv")
    from effkit.report import diff as views

    if fmt == "table":
        views.print_diff(res, console, top)
    elif fmt == "csv":
        sys.stdout.write(views.to_csv(res))
    else:
        sys.stdout.write(views.to_json(res) + "\n")
    err = _console(stderr=True)
    if fmt != "table":
        err.print(escape(res.summary()), soft_wrap=True)
    if out:
        err.print(f"diff report: [bold]{views.write_diff(res, out)}[/bold]")
    if rules:
        broken = gate(res, rules)
        for line in broken:
            err.print(f"[bold red]gate:[/bold red] {escape(line)}", soft_wrap=True)
        if broken:
            raise typer.Exit(1)
        err.print(f"gate: {len(rules)} rule{'s' if len(rules) != 1 else ''} hold")


@app.command()
@cli_errors
def advise(
    model: Annotated[str, typer.Argument(help="Zoo name, path/to/file.py:factory, package.module:factory, torchvision:, timm:, hf:.")] = DEFAULT_MODEL,
    device: DeviceOpt = "cpu",
    batch: Annotated[int, typer.Option(help="Batch size.")] = 1,
    budget: Annotated[float, typer.Option(help="Seconds the search may spend; points past it are listed as skipped.")] = 300.0,
    out: Annotated[Optional[str], typer.Option(help="Folder for the points and the report (default: a cache per model, device and torch "
                                                    "version, so a second call reuses what was measured).")] = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="Measure every point again instead of reusing saved ones.")] = False,
    throughput: Annotated[bool, typer.Option("--throughput", help="Then find the batch with the best samples/s that fits in memory "
                                                                  "(doubling, then bisection on out-of-memory; each OOM recorded).")] = False,
    min_time: MinTimeOpt = 0.3,
    input_shape: ShapeOpt = None, resolution: ResOpt = None, seq_len: SeqLenOpt = None, task: TaskOpt = None,
    debug: Debug = False,
):
    """Measure the knobs that apply (precision, layout, cudnn.benchmark, CUDA graphs, effkit's block-fused kernels, torch.compile,
    SDPA backend, CPU threads),
    rank what makes this model faster with intervals and the rung each moved, and print the Python that applies the best."""
    from effkit.advising import advise as run_advise, knobs_text

    if not budget > 0:
        raise UserInputError(f"--budget must be > 0 seconds, got {budget}")
    err = _console(stderr=True)
    with _stage_progress(err) as prog:
        task_id = prog.add_task(f"advise {model}")
        res = run_advise(model, device=device, batch=batch, budget_s=budget, out=out, refresh=refresh, min_time_s=min_time, throughput=throughput,
                         on_point=lambda p: prog.update(task_id, description=f"advise {model}: measured {knobs_text(p.knobs)} ({p.status})"),
                         **({"input_shape": _shapes(input_shape)} if input_shape else {}),
                         **({"resolution": resolution} if resolution else {}), **_model_kwargs(seq_len, task))
    from rich.table import Table

    t = Table(title=f"what makes {model} faster on {device}, batch {batch} (against the fp32 baseline)", header_style="bold")
    for c in ("change", "status", "median (ms)", "speed-up (×, 95 % interval)", "verdict", "rungs moved", "max rel diff vs fp32"):
        t.add_column(c, justify="right" if c in ("median (ms)", "speed-up (×, 95 % interval)", "max rel diff vs fp32") else "left")
    for r in res.ranking:
        sp = (f"{r['speedup']:.3f} ({r['speedup_low']:.3f}-{r['speedup_high']:.3f})" if r.get("speedup_low") else
              (f"{r['speedup']:.3f}" if r.get("speedup") else "–"))
        t.add_row(knobs_text(r["knobs"]), r["status"], f"{r['median_ms']:.3f}" if r.get("median_ms") else "–", sp, r.get("verdict", ""),
                  r.get("rungs", ""), f"{r['max_rel_diff']:.2e}" if r.get("max_rel_diff") is not None else "–")
    out_c = _console()
    out_c.print(t)
    if res.search.best.numerical_note:
        out_c.print(f"[yellow]best configuration: {escape(res.search.best.numerical_note)}[/yellow]", soft_wrap=True)
    for knobs, why in res.search.skipped:
        err.print(f"[yellow]skipped[/yellow] {escape(knobs_text(knobs))}: {escape(why)}")
    for s in res.skipped_knobs:
        err.print(f"[dim]not searched: {escape(s)}[/dim]")
    if res.search.confirmation:
        out_c.print(f"second process: {escape(res.search.confirmation)}", soft_wrap=True)
    for c in res.compile_vs_fusion or []:
        share = c["realised_share_of_predicted"]
        out_c.print(f"torch.compile ({escape(knobs_text(c['knobs']))}): kernels {c['eager_kernels_ms']:.3f} → {c['compiled_kernels_ms']:.3f} ms; "
                    + (f"kernel gap closed {c['kernel_gap_part_ms']:.3f} ms, memory traffic removed {c['memory_traffic_part_ms']:.3f} ms; "
                       if c["gain_ms"] > 0 else "compiled kernels slower; ") + "fusion "
                    f"what-if predicted {c['predicted_fusion_gain_ms']:.3f} ms" + (f" ({100 * share:.0f} % realised)" if share is not None else ""),
                    soft_wrap=True)
    if res.throughput:
        out_c.print(f"best samples/s at batch {res.throughput['best_batch']} (batches tried: "
                    + ", ".join(f"{t['batch']} {t['status']}" for t in res.throughput["tried"]) + ")")
    out_c.print("[bold]Apply the best configuration:[/bold]")
    out_c.print(res.snippet, markup=False, highlight=False)
    out_c.print(f"report: [bold]{res.folder / 'index.html'}[/bold]")


@app.command()
@cli_errors
def sweep(
    models: Annotated[list[str], typer.Argument(help="Zoo names or shell patterns (resnet*, 'convnext_*'), or any model spec.")],
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = "1",
    precision: Annotated[str, typer.Option("--precision", "--dtype", help="Precisions, comma-separated (fp32, tf32, bf16, fp16, "
                                                                        "bf16-mixed, fp16-mixed).")] = "fp32",
    knob: Annotated[Optional[list[str]], typer.Option(help="NAME=on,off for each knob to sweep: channels_last, cuda_graph, compile, "
                                                           "cudnn_benchmark (repeatable).")] = None,
    device: DeviceOpt = "cpu",
    out: Annotated[Optional[str], typer.Option(help="Folder for the point files, the merged table and the report "
                                                    "(default: reports/sweep-TIME). A rerun into it skips finished points.")] = None,
    gpus: Annotated[Optional[str], typer.Option(help="'all' or N: start torchrun on this host with one process per GPU.")] = None,
    min_time: MinTimeOpt = 0.5,
    layers: Annotated[bool, typer.Option("--layers", help="Also per-layer kernel times (the profiler; slower).")] = False,
    ceilings: Annotated[Optional[str], typer.Option(help="Analyse against these roofs (datasheet name or ceilings JSON) instead of "
                                                         "measuring the device's ceilings.")] = None,
    timm_test_size: Annotated[bool, typer.Option("--timm-test-size", help="Measure timm: models at timm's test_input_size, as timm's "
                                                                          "benchmark tables do (default: the 224 px input).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Start over in a folder that holds a sweep of another grid.")] = False,
    debug: Debug = False,
):
    """Measure a grid of models x batches x precisions x knobs and merge it into one table (timm's column names beside
    effkit's) and a report. Under `torchrun --nproc-per-node=N -m effkit sweep ...` each rank takes its own GPU and draws
    from one work queue; see the README for several hosts."""
    import os
    import sys

    from effkit.sweeping import parse_knobs, sweep as run_sweep

    knobs = parse_knobs(knob or [])
    batches = parse_batches(batch)
    precisions = [p.strip() for p in precision.split(",") if p.strip()]
    if gpus is not None and "LOCAL_RANK" not in os.environ:
        import subprocess

        import torch

        n = torch.cuda.device_count()
        want = n if gpus == "all" else (int(gpus) if gpus.isdigit() else -1)
        if want < 1 or want > n:
            raise UserInputError(f"--gpus {gpus!r}: this host has {n} GPU(s); give 'all' or a number from 1 to {n}" if n else
                                 f"--gpus {gpus!r}: this host has no CUDA GPU")
        argv = [a for a in sys.argv[1:]]
        i = argv.index("--gpus") if "--gpus" in argv else None
        argv = argv[:i] + argv[i + 2:] if i is not None else [a for a in argv if not a.startswith("--gpus=")]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={want}", "-m", "effkit", *argv]
        _console(stderr=True).print(f"starting: {' '.join(cmd)}", soft_wrap=True, markup=False, highlight=False)
        raise typer.Exit(subprocess.run(cmd).returncode)
    err = _console(stderr=True)
    grid = dict(batches=batches, precisions=precisions, knobs=knobs, device=device, out=out, min_time_s=min_time, layers=layers,
                ceilings=ceilings, force=force, timm_test_size=timm_test_size)
    if int(os.environ.get("RANK", "0")) != 0:  # the other ranks of a torchrun: one line per point
        run_sweep(models, **grid, log=lambda s: print(s, flush=True))
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[failed]} not ok"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True) as prog:  # gone at the end: an error stays one line
        tid = prog.add_task("sweep", total=None, failed=0)
        res = run_sweep(models, **grid, log=lambda s: prog.console.print(s, markup=False, highlight=False, soft_wrap=True),
                        on_progress=lambda done, bad, total: prog.update(tid, completed=done, total=total, failed=bad))
    _console().print(f"{res['ok']} points measured, {res['other']} not ok (failed, skipped or out of memory), {res['missing']} missing; "
                     f"table: [bold]{res['folder'] / 'sweep.csv'}[/bold], report: [bold]{res['folder'] / 'index.html'}[/bold]")


def _print_summary(run) -> None:
    from effkit.report.terminal import print_profile_summary

    print_profile_summary(run, _console())


def main() -> None:
    app()
