"""What a run asks for: the precision table and the run configuration.

Ground floor: every stage reads these; they import nothing of effkit's stages.

A `Precision` says in which dtypes a model's weights and inputs are held, whether
torch.autocast runs its ops at a lower precision, and how PyTorch's TF32 switches are
set. `Precision.context(device)` sets what it touches and restores it after. The names
follow Lightning's: fp32, tf32, bf16 and fp16 cast weights and inputs; bf16-mixed and
fp16-mixed keep fp32 weights and run the step under torch.autocast.

Backend settings are knobs of the RunConfig (None: PyTorch's own default, left as found):
cudnn.benchmark, the TF32 switches for matmuls and for cuDNN convolutions, the SDPA backend
and the torch.compile mode. `RunConfig.backend()` sets them and restores them after.

A `RunConfig` is what was asked of a measurement: device, precision, batch sizes, mode,
memory layout, CUDA graphs, compile, per-layer times and the timing budget. It is frozen,
serialisable and has a stable `key()`: two equal configurations have the same key in any
process, so it can name files and caches.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace

import torch

from effkit.errors import UserInputError, check_choice, check_positive

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# the dtypes a device ceiling (peak FLOP/s) is measured for; tf32 is fp32 on TF32 tensor cores
COMPUTE_DTYPES = ("fp32", "tf32", "fp16", "bf16")


def dtype_name(dtype: torch.dtype) -> str:
    """'fp32', 'bf16', ... for a torch dtype (its plain name for others)."""
    for k, v in DTYPES.items():
        if v == dtype:
            return k
    return str(dtype).removeprefix("torch.")


def compute_dtype_unsupported(device: str, dtype: str) -> str | None:
    """None if products in `dtype` run on `device`, else the reason they do not."""
    if device.startswith("cuda"):
        major = torch.cuda.get_device_capability(torch.device(device))[0]
        if dtype in ("tf32", "bf16") and major < 8:
            return f"{dtype} needs compute capability 8.0 or newer"
        return None
    return "tf32 is a CUDA tensor-core mode" if dtype == "tf32" else None


def autocast_unsupported(device: str, dtype: torch.dtype) -> str | None:
    """None if this torch's autocast runs `dtype` on `device`'s type, else why not."""
    import warnings

    kind = "cuda" if device.startswith("cuda") else "cpu"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.autocast(kind, dtype=dtype):
                on = torch.is_autocast_enabled(kind) if kind == "cuda" or hasattr(torch, "get_autocast_dtype") else True
    except (RuntimeError, TypeError) as e:
        return f"torch {torch.__version__} has no {kind} autocast for {dtype}: {e}"
    return None if on else f"torch {torch.__version__}'s {kind} autocast does not support {str(dtype).removeprefix('torch.')}"


@contextlib.contextmanager
def tf32_switches(matmul: bool | None, cudnn: bool | None):
    """Set PyTorch's TF32 switches (None: leave as they are) and restore them after."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        if matmul is not None:
            torch.backends.cuda.matmul.allow_tf32 = matmul
        if cudnn is not None:
            torch.backends.cudnn.allow_tf32 = cudnn
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@dataclass(frozen=True)
class Precision:
    """How a model's numbers are held and computed."""

    name: str
    param_dtype: str  # weights and buffers: fp32, bf16, fp16
    input_dtype: str  # floating inputs
    autocast_dtype: str | None  # torch.autocast's lower precision, or None (no autocast)
    tf32: bool | None  # TF32 for matmuls and convolutions: on, off, or None (PyTorch's defaults)
    description: str
    cuda_only: bool = False

    @property
    def param_torch(self) -> torch.dtype:
        return DTYPES[self.param_dtype]

    @property
    def input_torch(self) -> torch.dtype:
        return DTYPES[self.input_dtype]

    @property
    def compute_dtype(self) -> str:
        """The dtype the model's products (conv, matmul) run in: a key of the ceilings' peaks."""
        if self.autocast_dtype:
            return self.autocast_dtype
        return "tf32" if self.tf32 else self.param_dtype

    def unsupported(self, device: str) -> str | None:
        """None if this precision runs on `device`, else why not."""
        if self.cuda_only and not device.startswith("cuda"):
            return f"{self.name} is a CUDA tensor-core mode"
        if device == "meta":
            return None
        if self.mixed:
            missing = autocast_unsupported(device, self.autocast_torch)
            if missing:
                return missing
        return compute_dtype_unsupported(device, self.compute_dtype)

    @property
    def mixed(self) -> bool:
        return self.autocast_dtype is not None

    @property
    def autocast_torch(self) -> torch.dtype | None:
        return DTYPES[self.autocast_dtype] if self.autocast_dtype else None

    @contextlib.contextmanager
    def context(self, device: str):
        """Set the TF32 switches (on CUDA) for the block, and restore them after."""
        cuda = device.startswith("cuda")
        with tf32_switches(self.tf32, self.tf32) if cuda else contextlib.nullcontext():
            yield

    def autocast(self, device: str):
        """torch.autocast for a mixed precision on `device`'s type; a null context otherwise."""
        if not self.mixed:
            return contextlib.nullcontext()
        return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=self.autocast_torch)


PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    Precision("fp32", "fp32", "fp32", None, None, "weights and inputs in float32; TF32 as PyTorch sets it (cuDNN convolutions on, matmuls off)"),
    Precision("tf32", "fp32", "fp32", None, True, "float32 weights and inputs; matmuls and convolutions on TF32 tensor cores",
              cuda_only=True),
    Precision("fp16", "fp16", "fp16", None, None, "weights and inputs cast to float16"),
    Precision("bf16", "bf16", "bf16", None, None, "weights and inputs cast to bfloat16"),
    Precision("bf16-mixed", "fp32", "fp32", "bf16", None, "float32 weights and inputs; torch.autocast runs eligible ops in bfloat16"),
    Precision("fp16-mixed", "fp32", "fp32", "fp16", None, "float32 weights and inputs; torch.autocast runs eligible ops in float16"),
)}


def get_precision(name: str, what: str = "precision") -> Precision:
    """The Precision called `name`; an unknown name gets the choices."""
    return PRECISIONS[check_choice(what, name, PRECISIONS)]


def supported_precisions(device: str) -> list[str]:
    return [n for n, p in PRECISIONS.items() if not p.unsupported(device)]


def check_precision(name: str, device: str, what: str = "precision") -> Precision:
    """The Precision called `name`, if it runs on `device`; else an error naming the ones that do."""
    p = get_precision(name, what)
    reason = p.unsupported(device)
    if reason:
        raise UserInputError(f"{what} {name} cannot run on {device}: {reason}; choose one of: {', '.join(supported_precisions(device))}")
    return p


MODES = ("infer", "train")
LAYOUTS = ("contiguous", "channels_last")
SDPA_BACKENDS = ("flash", "efficient", "cudnn", "math")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
GRAPHING_COMPILE_MODES = ("reduce-overhead", "max-autotune")  # these capture CUDA graphs of their own
PYTORCH_TF32_DEFAULTS = (False, True)  # torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@contextlib.contextmanager
def _cudnn_benchmark(on: bool | None):
    saved = torch.backends.cudnn.benchmark
    try:
        if on is not None:
            torch.backends.cudnn.benchmark = on
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def _sdpa(backend: str | None):
    if backend is None:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    names = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "cudnn": "CUDNN_ATTENTION", "math": "MATH"}
    return sdpa_kernel([getattr(SDPBackend, names[backend])])


def backend_state() -> dict:
    """The backend settings in force now (recorded with every measured point)."""
    out = {"cudnn_benchmark": torch.backends.cudnn.benchmark, "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
           "tf32_cudnn": torch.backends.cudnn.allow_tf32}
    try:
        out["sdpa_enabled"] = [n for n, f in (("flash", torch.backends.cuda.flash_sdp_enabled), ("efficient", torch.backends.cuda.mem_efficient_sdp_enabled),
                                              ("cudnn", getattr(torch.backends.cuda, "cudnn_sdp_enabled", None)), ("math", torch.backends.cuda.math_sdp_enabled))
                               if f is not None and f()]
    except Exception:  # an older torch without one of these switches
        pass
    return out


FUSED_DTYPES = ("bf16", "fp16")  # the weights' dtypes effkit's block-fused kernels run in on CUDA
FUSED_PRECISIONS = tuple(n for n, p in PRECISIONS.items() if p.param_dtype in FUSED_DTYPES)


@dataclass(frozen=True)
class RunConfig:
    """What a measurement asks for. Frozen and serialisable; `key()` names it."""

    device: str = "cpu"
    precision: str = "fp32"
    batches: tuple[int, ...] = (1,)
    mode: str = "infer"
    layout: str = "contiguous"
    cuda_graph: bool = False
    compile: bool = False
    layers: bool = True  # per-layer times through the profiler
    fallback_eager: bool = False  # measure eager if compilation fails
    cudnn_benchmark: bool | None = None  # knobs: None leaves PyTorch's own setting
    tf32_matmul: bool | None = None
    tf32_cudnn: bool | None = None
    sdpa_backend: str | None = None  # flash, efficient, cudnn, math
    compile_mode: str | None = None  # with compile: default, reduce-overhead, max-autotune, max-autotune-no-cudagraphs
    min_time_s: float = 1.0  # timed seconds per point, at least
    min_runs: int = 20  # timed steps per point, at least
    ci_target: float = 0.02  # then time on until the median's 95 % interval is within this fraction of it ...
    max_time_s: float | None = None  # ... or this many seconds pass (None: 5 x min_time_s, at least 2 s)
    fused: bool = False  # ConvFirst and stride-1 MBConv blocks swapped for block-fused kernels (effkit.kernels), inference only; with compile, the rest compiled around them
    fused_only: tuple[str, ...] | None = None  # with fused: the module paths (blocks, stems) to fuse; None: every one that matches

    def __post_init__(self):
        batches = (self.batches,) if isinstance(self.batches, int) else tuple(self.batches)
        if not batches:
            raise UserInputError("give at least one batch size")
        for b in batches:
            check_positive("batch", b)
        object.__setattr__(self, "batches", batches)
        get_precision(self.precision)
        check_choice("mode", self.mode, MODES)
        check_choice("layout", self.layout, LAYOUTS)
        if self.min_time_s < 0:
            raise UserInputError(f"min time must be >= 0 s, got {self.min_time_s}")
        check_positive("min runs", self.min_runs)
        if not 0 < self.ci_target < 1:
            raise UserInputError(f"ci target must be a fraction between 0 and 1, got {self.ci_target}")
        if self.sdpa_backend is not None:
            check_choice("SDPA backend", self.sdpa_backend, SDPA_BACKENDS)
        if self.compile_mode is not None:
            check_choice("compile mode", self.compile_mode, COMPILE_MODES)
            object.__setattr__(self, "compile", True)
        if self.fused_only is not None:
            only = (self.fused_only,) if isinstance(self.fused_only, str) else tuple(self.fused_only)
            if not only:
                raise UserInputError("--fused-only names no block: give at least one module path, or leave it out to fuse every block")
            if not self.fused:
                raise UserInputError(f"--fused-only {','.join(only)} picks blocks to fuse: it needs --fused")
            object.__setattr__(self, "fused_only", only)
        if self.fused and self.mode != "infer":
            raise UserInputError(f"--fused swaps blocks for inference kernels (BatchNorms folded): it needs --mode infer, not --mode {self.mode}")
        if self.fused and self.device.startswith("cuda") and self.prec.param_dtype not in FUSED_DTYPES:
            # their tiles are sized for 16-bit operands; with fp32 weights (autocast or not) convfirst_net fused and compiled
            # failed for want of shared memory on an H100 (benchmarks/README.md, advise run 5). On the CPU the folded math runs in
            # PyTorch, in any dtype
            raise UserInputError(f"--fused runs effkit's block kernels on CUDA in the weights' dtype, and they are built for 16-bit "
                                 f"weights: give --precision {' or '.join(FUSED_PRECISIONS)}, not {self.precision}")
        if self.cuda_graph and self.compile_mode in GRAPHING_COMPILE_MODES:
            raise UserInputError(f"--cuda-graph with --compile-mode {self.compile_mode}: that mode captures CUDA graphs of its own, which "
                                 "cannot be captured again; use --compile-mode default (or max-autotune-no-cudagraphs), or drop --cuda-graph")

    @property
    def prec(self) -> Precision:
        return PRECISIONS[self.precision]

    @property
    def channels_last(self) -> bool:
        return self.layout == "channels_last"

    def replace(self, **changes) -> "RunConfig":
        return replace(self, **changes)

    def tf32_flags(self) -> tuple[bool, bool]:
        """(matmul, cuDNN) TF32 in force for this run: the precision's, else the knobs', else PyTorch's defaults."""
        if self.prec.tf32 is not None:
            return self.prec.tf32, self.prec.tf32
        m, c = PYTORCH_TF32_DEFAULTS
        return (m if self.tf32_matmul is None else self.tf32_matmul), (c if self.tf32_cudnn is None else self.tf32_cudnn)

    @contextlib.contextmanager
    def backend(self):
        """Set the precision's and the knobs' backend switches for the block, and restore every one after."""
        cuda = self.device.startswith("cuda")
        with self.prec.context(self.device), \
                (tf32_switches(self.tf32_matmul, self.tf32_cudnn) if cuda and self.prec.tf32 is None else contextlib.nullcontext()), \
                _cudnn_benchmark(self.cudnn_benchmark), _sdpa(self.sdpa_backend):
            yield

    @property
    def knobs(self) -> dict:
        """The backend knobs set (not None)."""
        return {k: v for k, v in (("cudnn_benchmark", self.cudnn_benchmark), ("tf32_matmul", self.tf32_matmul), ("tf32_cudnn", self.tf32_cudnn),
                                  ("sdpa_backend", self.sdpa_backend), ("compile_mode", self.compile_mode)) if v is not None}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["batches"] = list(self.batches)
        if self.fused_only is not None:
            d["fused_only"] = list(self.fused_only)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        """A RunConfig from `to_dict()`; keys this version does not know are refused by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserInputError(f"run configuration has unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**d)

    def key(self) -> str:
        """A stable name for this configuration: the same in every process and on every machine."""
        d = self.to_dict()
        for late in ("fused", "fused_only"):  # added later: left out when off, so every earlier configuration keeps its key
            if not d[late]:
                d.pop(late)
        text = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> str:
        """'bf16, infer, channels-last, CUDA graph' and so on."""
        parts = [self.precision, self.mode]
        if self.channels_last:
            parts.append("channels-last")
        if self.compile:
            parts.append(f"compiled ({self.compile_mode})" if self.compile_mode else "compiled")
        if self.cuda_graph:
            parts.append("CUDA graph")
        if self.fused:
            parts.append(f"block-fused ({len(self.fused_only)} chosen)" if self.fused_only else "block-fused")
        parts += [f"{k}={'on' if v is True else 'off' if v is False else v}" for k, v in self.knobs.items() if k != "compile_mode"]
        return ", ".join(parts)
