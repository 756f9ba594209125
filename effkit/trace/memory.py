"""Peak memory predicted from a meta trace: will this batch fit, and what fills the memory at the peak?

The recorder (track_memory) notes, for every aten op, the storages it reads and the storages it creates.
Liveness is storage-level: a view shares its base's storage (free), an in-place op creates nothing, and a
storage lives from the op that created it to the last op that reads it or, if later, until the last Python
tensor on it is let go (as eager PyTorch frees it: a forward's local variable holds its tensor until it is
rebound or the forward returns), or to the end, for the model's outputs and the parameters' gradients. Live bytes at each op are the sum over the storages alive then;
the peak is their maximum, plus what lives throughout: parameters, buffers, the inputs, and in training
the optimizer's state (a steady-state step: the state exists from the step before; gradients are set to
None before the forward, as `zero_grad(set_to_none=True)` does).

Training runs forward, backward and the optimizer's step (`sgd`, `sgd-momentum` or `adamw`, with
`foreach=True` as on CUDA) on fake tensors, the step's state created by one untracked step first. At the
peak the bytes are broken into parameters, buffers, inputs, activations (by the layer that allocated
them), gradients, optimizer state and temporaries (storages created by the peak's op and never read
after it). The allocator's rounding and the libraries' workspaces (cuBLAS, cuDNN) are not modelled:
`fits` keeps a stated headroom for them and for the CUDA context.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import torch

from effkit.errors import UserInputError

OPTIMIZERS = ("sgd", "sgd-momentum", "adamw")
STEP = "optimizer step"  # the recorder's phase while the optimizer steps: what it allocates is the step's temporaries
KINDS = ("parameters", "buffers", "inputs", "activations", "gradients", "optimizer state", "temporaries")


@dataclass(frozen=True)
class MemoryPrediction:
    model: str
    batch: int
    precision: str
    mode: str
    optimizer: str | None
    peak_bytes: int
    at_peak: dict  # kind -> bytes at the peak
    peak_op: int  # index of the op at the peak
    peak_phase: str
    peak_path: str
    layers_at_peak: tuple = ()  # (layer path, activation bytes it allocated that are alive at the peak), largest first
    timeline: tuple = ()  # per op: (phase, path, activations, gradients, temporaries) bytes alive, dynamic part only
    static_bytes: int = 0  # parameters + buffers + inputs + optimizer state

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers_at_peak"] = [list(x) for x in self.layers_at_peak]
        d["timeline"] = [list(x) for x in self.timeline]
        return d

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v / 1e6:,.1f} MB" for k, v in self.at_peak.items() if v)
        what = "inference" if self.mode == "infer" else f"a training step ({self.optimizer or 'no optimizer'})"
        return (f"predicted peak for {what} at batch {self.batch}, {self.precision}: {self.peak_bytes / 1e6:,.1f} MB, during "
                f"{self.peak_phase} at {self.peak_path or '(model)'}: {parts}")


def liveness(events: list[tuple], keep_to_end: set, grad_keys: set = frozenset(), deaths: dict | None = None) -> dict:
    """From recorder events (phase, path, read keys, ((new key, nbytes), ...)): per op the live bytes by kind, and the
    peak. A storage lives from its creating op to its last reader (to the end if in `keep_to_end`), or, where `deaths`
    is given, until its last tensor was let go if that is later: `deaths[key]` events had been recorded then, so the
    storage was alive through op deaths[key] - 1; a storage made by an op and absent from `deaths` was never let go
    during the trace and lives to the end."""
    n = len(events)
    alloc, size, owner, last, born_in = {}, {}, {}, {}, {}
    for i, (phase, path, reads, news) in enumerate(events):
        for key, nbytes in news:
            alloc[key], size[key], owner[key], born_in[key] = i, nbytes, path, phase
            last[key] = i
        for key in reads:
            if key in alloc:
                last[key] = max(last[key], i)
    for key in keep_to_end:
        if key in alloc:
            last[key] = n - 1
    if deaths is not None:
        for key in alloc:
            last[key] = max(last[key], deaths[key] - 1 if key in deaths else n - 1)
    # sweep: +size at alloc, -size after last
    start: dict[int, list] = {}
    end: dict[int, list] = {}
    for key, i in alloc.items():
        start.setdefault(i, []).append(key)
        end.setdefault(last[key], []).append(key)
    def kind(key, i: int) -> str:
        """What a storage alive at op i is: a gradient, a temporary (made by op i and read by no later op, or made by
        the optimizer's step), or an activation."""
        if key in grad_keys:
            return "gradients"
        if (alloc[key] == i and last[key] == i and key not in keep_to_end) or born_in[key] == STEP:
            return "temporaries"
        return "activations"

    live: set = set()
    timeline = []
    best, best_i, best_live = -1, 0, set()
    for i in range(n):
        live.update(start.get(i, ()))
        by_kind = {"activations": 0, "gradients": 0, "temporaries": 0}
        for key in live:
            by_kind[kind(key, i)] += size[key]
        total = sum(by_kind.values())
        timeline.append((events[i][0], events[i][1], by_kind["activations"], by_kind["gradients"], by_kind["temporaries"]))
        if total > best:
            best, best_i, best_live = total, i, set(live)
        live.difference_update(end.get(i, ()))
    by_layer: dict[str, int] = {}
    for key in best_live:
        if kind(key, best_i) == "activations":
            by_layer[owner[key]] = by_layer.get(owner[key], 0) + size[key]
    return {"timeline": timeline, "peak_index": best_i, "peak_dynamic": max(best, 0), "by_layer": by_layer}


def _storage_bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        st = t.untyped_storage()
        if st._cdata not in seen:
            seen.add(st._cdata)
            total += st.nbytes()
    return total


def _optimizer(name: str | None, params):
    if name is None:
        return None
    if name not in OPTIMIZERS:
        raise UserInputError(f"unknown optimizer {name!r}; effkit models: {', '.join(OPTIMIZERS)}")
    if name == "sgd":
        return torch.optim.SGD(params, lr=1e-3, foreach=True)
    if name == "sgd-momentum":
        return torch.optim.SGD(params, lr=1e-3, momentum=0.9, foreach=True)
    return torch.optim.AdamW(params, lr=1e-3, foreach=True)


def predict_memory(ref, batch: int, *, precision: str = "fp32", mode: str = "infer", optimizer: str | None = None) -> MemoryPrediction:
    """Predicted peak memory of one inference or training step of `ref` at `batch`, from a trace on fake tensors."""
    from effkit.config import get_precision
    from effkit.trace.recorder import Recorder, outputs
    from effkit.trace.tracer import _run_backward, fake_mode
    from effkit.models.ref import quiet_fake_tensor_log

    if mode not in ("infer", "train"):
        raise UserInputError(f"unknown mode {mode!r}; choose infer or train")
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise UserInputError(f"unknown optimizer {optimizer!r}; effkit models: {', '.join(OPTIMIZERS)}")
    prec = get_precision(precision)
    if prec.mixed and mode == "train":
        raise UserInputError(f"a training-memory prediction under {prec.name} is not modelled (autocast's backward casts need real tensors); "
                             "use a cast precision (bf16, fp16, fp32)")
    fake = fake_mode()
    net = ref.build("cpu", prec.param_torch, fake=fake)
    net.train(mode == "train")
    rec = Recorder(net, train=mode == "train", track_memory=True)
    with fake, quiet_fake_tensor_log():
        xs = ref.inputs(batch, prec.input_torch, "cpu")
        params = [p for p in net.parameters()]
        buffers = [b for b in net.buffers()]
        rec.mark_known(params + buffers + xs)
        opt = _optimizer(optimizer, params) if mode == "train" else None
        grad_keys: set = set()
        state_bytes = 0
        if opt is not None:  # the state a steady-state step starts with: one untracked step first
            out = ref.call(net, xs)
            _run_backward(out, Recorder(net, train=False))
            opt.step()
            opt.zero_grad(set_to_none=True)
            state = [t for s in opt.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
            state_bytes = _storage_bytes(state)
            rec.mark_known(state)
            del out
        rec.attach()
        try:
            with torch.enable_grad() if mode == "train" else torch.no_grad(), rec:
                out = ref.call(net, xs)
                if mode == "train":
                    _run_backward(out, rec)
                    grad_keys = {p.grad.untyped_storage()._cdata for p in params if p.grad is not None}
                    if opt is not None:
                        rec.phase = STEP
                        opt.step()
        finally:
            rec.detach_hooks()
        out_keys = {t.untyped_storage()._cdata for t in outputs(out)}
        deaths = dict(rec.mem_deaths)
    live = liveness(rec.mem_events, out_keys | grad_keys, grad_keys, deaths)
    params_b, buffers_b, inputs_b = _storage_bytes(params), _storage_bytes(buffers), _storage_bytes(xs)
    i = live["peak_index"]
    phase, path, acts, grads, temps = live["timeline"][i] if live["timeline"] else ("forward", "", 0, 0, 0)
    at_peak = {"parameters": params_b, "buffers": buffers_b, "inputs": inputs_b, "activations": acts, "gradients": grads,
               "optimizer state": state_bytes, "temporaries": temps}
    static = params_b + buffers_b + inputs_b + state_bytes
    layers = tuple(sorted(live["by_layer"].items(), key=lambda kv: -kv[1]))
    return MemoryPrediction(ref.name, batch, prec.name, mode, optimizer if mode == "train" else None, static + live["peak_dynamic"], at_peak,
                            i, phase, path, layers, tuple(live["timeline"]), static)


# ----------------------------------------------------------------------------- will it fit?
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb|kib|mib|gib|tib)?\s*$", re.I)
_UNITS = {None: 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
HEADROOM_FRACTION = 0.05  # of the budget, for the allocator's rounding and fragmentation
CONTEXT_BYTES = 600 * 2**20  # the CUDA context and library workspaces, outside PyTorch's allocator or not traced


def parse_size(text: str) -> int:
    """'80GB', '40 GiB', '512MB' -> bytes; anything else is a one-line error naming the value and the form."""
    m = _SIZE.match(str(text))
    if not m:
        raise UserInputError(f"--fits {text!r} is not a size; give a number with a unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. 80GB, "
                             "or 'cuda' for the free memory of this machine's GPU")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "b").lower()])


def budget_of(text: str) -> tuple[int, str]:
    """(bytes, where it came from) for --fits: a size, or 'cuda[:N]' (the device's free memory now)."""
    if str(text).lower().startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserInputError("--fits cuda needs a CUDA GPU, and none is available here; give a size instead, e.g. --fits 80GB")
        index = int(text.split(":")[1]) if ":" in text else 0
        free, _ = torch.cuda.mem_get_info(index)
        return free, f"free memory of cuda:{index} now"
    return parse_size(text), "given"


def usable(budget: int) -> int:
    """What the prediction may fill of a budget: minus the CUDA context's allowance and a fraction for the allocator."""
    return int((budget - CONTEXT_BYTES) * (1 - HEADROOM_FRACTION))


def largest_batch(peak_of, budget: int, limit: int = 1 << 16) -> tuple[int, list]:
    """The largest batch whose predicted peak fits `usable(budget)`, by doubling then bisection over `peak_of(batch)`;
    returns it (0: not even batch 1) and the batches tried with their peaks."""
    cap = usable(budget)
    tried = []

    def fits(b):
        p = peak_of(b)
        tried.append((b, p))
        return p <= cap

    if not fits(1):
        return 0, tried
    lo, hi = 1, 2
    while hi <= limit and fits(hi):
        lo, hi = hi, hi * 2
    if hi > limit:
        return lo, tried
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo, tried


__all__ = ["MemoryPrediction", "OPTIMIZERS", "budget_of", "largest_batch", "liveness", "parse_size", "predict_memory", "usable"]
