"""What a run asks for: the precision table and the run configuration.

Ground floor: every stage reads these; they import nothing of effkit's stages.

A `Precision` says in which dtypes a model's weights and inputs are held, whether
torch.autocast runs its ops at a lower precision, and how PyTorch's TF32 switches are
set. `Precision.context(device)` sets what it touches and restores it after.

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
        return compute_dtype_unsupported(device, self.compute_dtype)

    @contextlib.contextmanager
    def context(self, device: str):
        """Set the TF32 switches (on CUDA) for the block, and restore them after."""
        cuda = device.startswith("cuda")
        with tf32_switches(self.tf32, self.tf32) if cuda else contextlib.nullcontext():
            yield


PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    Precision("fp32", "fp32", "fp32", None, False, "weights and inputs in float32; TF32 off"),
    Precision("tf32", "fp32", "fp32", None, True, "float32 weights and inputs; matmuls and convolutions on TF32 tensor cores",
              cuda_only=True),
    Precision("fp16", "fp16", "fp16", None, False, "weights and inputs cast to float16"),
    Precision("bf16", "bf16", "bf16", None, False, "weights and inputs cast to bfloat16"),
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
    min_time_s: float = 1.0  # timed seconds per point, at least
    min_runs: int = 20  # timed steps per point, at least
    ci_target: float = 0.02  # then time on until the median's 95 % interval is within this fraction of it ...
    max_time_s: float | None = None  # ... or this many seconds pass (None: 5 x min_time_s, at least 2 s)

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

    @property
    def prec(self) -> Precision:
        return PRECISIONS[self.precision]

    @property
    def channels_last(self) -> bool:
        return self.layout == "channels_last"

    def replace(self, **changes) -> "RunConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["batches"] = list(self.batches)
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
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> str:
        """'bf16, infer, channels-last, CUDA graph' and so on."""
        parts = [self.precision, self.mode]
        if self.channels_last:
            parts.append("channels-last")
        if self.compile:
            parts.append("compiled")
        if self.cuda_graph:
            parts.append("CUDA graph")
        return ", ".join(parts)
