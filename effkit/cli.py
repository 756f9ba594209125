"""The effkit command line: thin typer commands, each a call into the Python API.

The library raises EffkitError; only this module turns it into a one-line red message
and an exit code (a traceback with --debug).
"""
from __future__ import annotations

import functools
import sys
from enum import Enum
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from effkit.errors import EffkitError, UserInputError

app = typer.Typer(
    name="effkit",
    help="Why is this model as fast as it is, and what would make it faster? Counts, measures and explains PyTorch models.",
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
)
DEFAULT_MODEL = "convnext_tiny"


class Dtype(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


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


def _console(stderr: bool = False) -> Console:
    c = Console(stderr=stderr, highlight=False)
    if not c.is_terminal:  # piped or captured: no terminal width to respect, keep tables whole
        c = Console(stderr=stderr, highlight=False, width=220)
    return c


def cli_errors(fn):
    """Turn EffkitError into a one-line message and its exit code; --debug re-raises."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
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
    model: Annotated[str, typer.Argument(help="Zoo name or alias (effkit models), path/to/file.py:factory, or package.module:factory.")] = DEFAULT_MODEL,
    batch: Annotated[int, typer.Option(help="Batch size.")] = 1,
    resolution: Annotated[Optional[int], typer.Option(help="Input height = width (builds ViTs for it).")] = None,
    input_shape: Annotated[Optional[list[str]], typer.Option("--input-shape", help="One sample's shape without the batch, e.g. 3,224,224 or 197,768; repeat for several inputs.")] = None,
    dtype: Annotated[Dtype, typer.Option(help="Parameter and input dtype.")] = Dtype.fp32,
    device: Annotated[str, typer.Option(help="cpu (real tensors), meta (no memory, no arithmetic: same counts), or cuda[:N].")] = "cpu",
    mode: Annotated[Mode, typer.Option(help="infer: forward; train: forward + backward, bytes saved for backward.")] = Mode.infer,
    depth: Annotated[Optional[int], typer.Option(help="Roll layers up to this many path components (0: the whole model).")] = None,
    csv: Annotated[Optional[str], typer.Option(help="Write the layer table as CSV here.")] = None,
    json: Annotated[Optional[str], typer.Option(help="Write totals, layers, uncovered ops and conventions as JSON here.")] = None,
    strict: Annotated[bool, typer.Option(help="Fail if any op has no formula.")] = False,
    counter: Annotated[Counter, typer.Option(help="fvcore: also show fvcore's per-layer counts (its convention).")] = Counter.effkit,
    fmt: Annotated[Format, typer.Option("--format", help="Terminal output: table on a terminal, CSV when piped (auto).")] = Format.auto,
    debug: Debug = False,
):
    """Count what a model asks for: per-layer MACs, FLOPs, params, activations, bytes."""
    from effkit.report.tables import print_trace, write_csv, write_json
    from effkit.trace import trace as run_trace

    if depth is not None and depth < 0:
        raise UserInputError(f"depth must be >= 0, got {depth}")
    shapes = [parse_shape(s) for s in input_shape] if input_shape else None
    err = _console(stderr=True)
    with err.status(f"tracing {model} ({device}, {mode})…", spinner="dots") if err.is_terminal else _null():
        result = run_trace(model, shapes, batch=batch, resolution=resolution, dtype=dtype.value, device=device,
                           mode=mode.value, strict=strict, counter=counter.value)
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


@app.command()
@cli_errors
def models(
    pattern: Annotated[str, typer.Argument(help="Shell-style pattern, e.g. 'convnext*'.")] = "*",
    debug: Debug = False,
):
    """List the built-in models."""
    from rich.table import Table

    from effkit.models import entries, list_models

    names = set(list_models(pattern))
    rows = [e for e in entries() if e.name in names or names & set(e.aliases)]
    if not rows:
        raise UserInputError(f"no built-in model matches {pattern!r}; `effkit models` lists them all")
    t = Table(title="effkit zoo (published figures from the reference implementation)", header_style="bold")
    for col in ("name", "aliases", "family", "input", "params", "GMACs", "top-1 (%)", "reference"):
        t.add_column(col, justify="right" if col in ("params", "GMACs", "top-1 (%)") else "left")
    for e in rows:
        p = e.published
        t.add_row(e.name, ", ".join(e.aliases), e.family, "x".join(map(str, e.input_shape)),
                  f"{p['params']:,}" if "params" in p else "-", f"{p['gmacs']:.3f}" if "gmacs" in p else "-",
                  f"{p['top1']:.2f}" if "top1" in p else "-", e.reference)
    _console().print(t)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def main() -> None:
    app()
