"""The recorder: a TorchDispatchMode that sees every aten op and attributes it to a module.

Forward attribution: global module pre/post hooks keep a stack of module paths; an op
belongs to the innermost module running (a parent's own ops, such as a residual add,
belong to the parent).

Backward attribution: while the forward runs, each op's outputs are remembered; at the
next op (by then autograd has attached their grad_fn) the grad_fn is tagged with the
path in its `metadata`. In backward, `torch._C._current_autograd_node()` names the node
running, whose tag gives the path. Parameter-gradient accumulation belongs to the
module owning the parameter.

Bytes saved for backward come from `saved_tensors_hooks`: each distinct storage saved
(parameters excluded) counts once, for the layer that saved it first.

Residual blocks (the fusion what-if's unit) are found by data flow, not by shapes: while a
module call is open, the recorder follows which storages derive from each of its tensor
inputs; an add whose one operand *is* a module's input and whose other operand derives from
that same input makes the innermost such module a block. A position-embedding add (the
other operand is a parameter) or an add of two branches (neither operand is the input, as
in a projection shortcut) is not one.
"""
from __future__ import annotations

import functools
import math
import weakref
from collections import defaultdict

import torch
import torch.nn as nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode

from effkit.errors import ModelRunError
from effkit.trace.formulas import FORMULAS, FREE, GATHERS, WRITE_ONLY_SELF, Cost
from effkit.trace.paths import AUTOGRAD, ROOT, module_path
from effkit.trace.result import OpRecord


def _shape_args(a, tensors: list):
    """`a` with tensors replaced by shapes (collected into `tensors`), recursing into lists."""
    if isinstance(a, torch.Tensor):
        tensors.append(a)
        return tuple(a.shape)
    if isinstance(a, (list, tuple)) and a and any(isinstance(x, (torch.Tensor, list, tuple)) for x in a):
        return [_shape_args(x, tensors) for x in a]
    return a


def outputs(out) -> list:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in outputs(o)]
    return []


def _distinct_bytes(t: torch.Tensor) -> int:
    """Bytes of the distinct elements a tensor addresses (stride-0 broadcast dims count once)."""
    n = math.prod(s for s, st in zip(t.shape, t.stride()) if st != 0) if t.dim() else 1
    return n * t.element_size()


class Recorder(TorchDispatchMode):
    """Records an OpRecord per aten op; use `attach(model)` around the forward."""

    def __init__(self, model: nn.Module, train: bool, autocast_real: bool = False, track_memory: bool = False):
        super().__init__()
        # memory: per op, the storages it reads and the storages it creates (see trace/memory.py); the storages are held
        # so that an identity (its _cdata) is never reused by a later storage while tracing (meta traces: no memory)
        self.track_memory = track_memory
        self.mem_events: list[tuple] = []  # (phase, path, read keys, ((new key, nbytes), ...))
        self._mem_seen: set[int] = set()
        self._mem_keep: list = []
        # when the last Python tensor on a storage an op made is let go (weakref callbacks): eager PyTorch frees the
        # memory then, not at the storage's last use: a forward's local variable keeps its tensor until it is rebound
        self.mem_deaths: dict[int, int] = {}  # storage key -> number of memory events recorded when it was let go
        self._mem_owners: dict[int, int] = {}  # storage key -> tensors alive on it
        self._mem_refs: list = []
        self.autocast_real = autocast_real  # real traces under torch.autocast: its dtype-changing copies are its casts
        self.casting = False  # set by the autocast emulation (trace/autocast.py) while it casts
        self.paths = {id(m): module_path(name) for name, m in model.named_modules()}
        self.owner = {id(p): module_path(name.rpartition(".")[0]) for name, p in model.named_parameters()}
        self.param_storages = {p.untyped_storage()._cdata for p in model.parameters()}
        self.train = train
        self.phase = "forward"
        self.stack: list[str] = []
        self.records: list[OpRecord] = []
        self.uncovered: dict[str, dict] = {}
        self.module_outputs: dict[str, tuple] = {}
        self.module_inputs: dict[str, tuple] = {}  # first tensor argument's shape, first call
        self.first_seen: dict[str, int] = {}  # path -> event number of its first op (or, op-less, its first call)
        self._events = 0
        self._entered: dict[str, int] = {}
        self.module_calls: dict[str, int] = defaultdict(int)
        self.saved_bytes: dict[str, int] = defaultdict(int)
        self._saved: set[int] = set()
        self.node_paths: dict[int, str] = {}  # autograd sequence number -> forward path
        self._next_seq = torch.autograd._get_sequence_nr()
        self._handles: list = []
        self.frames: list[tuple[str, list, list]] = []  # open module calls: (path, input storages, storages derived from each)
        self.blocks: list[str] = []  # modules that add their own input to a function of it, in order

    # ------------------------------------------------------------------ module stack
    def _pre(self, module, args):
        path = self.paths.get(id(module))
        if path is not None:
            self.stack.append(path)
            self.module_calls[path] += 1
            self._events += 1
            self._entered.setdefault(path, self._events)
            ins = outputs(args)
            if path not in self.module_inputs:
                self.module_inputs[path] = tuple(ins[0].shape) if ins else None
            if self.phase == "forward":
                keys = [_storage(t) for t in ins]
                self.frames.append((path, keys, [{k} for k in keys]))

    def _post(self, module, args, output):
        path = self.paths.get(id(module))
        if path is not None and self.stack and self.stack[-1] == path:
            self.stack.pop()
            if self.frames and self.frames[-1][0] == path:
                self.frames.pop()
            if path not in self.module_outputs:
                outs = outputs(output)
                self.module_outputs[path] = tuple(outs[0].shape) if outs else None

    def execution_key(self, path: str) -> float:
        """Where a layer sits in execution order: its first forward op, else its first call."""
        return self.first_seen.get(path, self._entered.get(path, float("inf")))

    def current_path(self) -> str:
        if self.phase == "forward":
            return self.stack[-1] if self.stack else ROOT
        node = torch._C._current_autograd_node()
        if node is None:
            return AUTOGRAD
        if hasattr(node, "variable"):  # AccumulateGrad of a parameter
            return self.owner.get(id(node.variable), AUTOGRAD)
        return self.node_paths.get(node._sequence_nr(), AUTOGRAD)

    def attach(self):
        """Install the module hooks (and, in training, the saved-tensor hooks)."""
        self._handles = [register_module_forward_pre_hook(self._pre), register_module_forward_hook(self._post)]
        if self.train:
            hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
            hooks.__enter__()
            self._handles.append(hooks)
        return self

    def detach_hooks(self):
        for h in self._handles:
            if isinstance(h, torch.autograd.graph.saved_tensors_hooks):
                h.__exit__(None, None, None)
            else:
                h.remove()
        self._handles = []

    def _pack(self, t: torch.Tensor):
        storage = t.untyped_storage()
        key = storage._cdata
        if key not in self.param_storages and key not in self._saved:
            self._saved.add(key)
            self.saved_bytes[self.stack[-1] if self.stack else ROOT] += storage.nbytes()
        return t

    # ------------------------------------------------------------------ ops
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        try:
            out = func(*args, **kwargs)
        except ModelRunError:
            raise
        except Exception as e:
            raise ModelRunError(f"layer {self.current_path()!r} failed at op {func}: {type(e).__name__}: {_first_line(e)}") from e
        path = self.current_path()
        if self.track_memory:
            self._memory_event(path, args, kwargs, out)
        if self.phase == "forward":
            self._events += 1
            self.first_seen.setdefault(path, self._events)
        if self.train and self.phase == "forward":
            # every node made since the previous op belongs to this module (an in-place op
            # makes its node, then dispatches a clone and itself)
            nxt = torch.autograd._get_sequence_nr()
            for n in range(self._next_seq, nxt):
                self.node_paths[n] = path
            self._next_seq = nxt
        packet = func.overloadpacket
        if packet in FREE:
            return out
        tensors: list = []
        shaped_args = [_shape_args(a, tensors) for a in args]
        shaped_kwargs = {k: _shape_args(v, tensors) for k, v in kwargs.items()}
        outs = outputs(out)
        if self.phase == "forward" and self.frames:
            self._follow(packet, tensors, outs)
        fn = FORMULAS.get(packet)
        if fn is None:
            cost, covered = Cost(), False
            u = self.uncovered.setdefault(str(packet), {"count": 0, "layers": []})
            u["count"] += 1
            if path not in u["layers"]:
                u["layers"].append(path)
        else:
            cost, covered = fn(*shaped_args, out=tuple(outs[0].shape) if outs else None, **shaped_kwargs), True
        out_bytes = sum(t.numel() * t.element_size() for t in outs)
        cast = self.casting or (self.autocast_real and self.phase == "forward" and packet is torch.ops.aten._to_copy and len(tensors) == 1
                                and len(outs) == 1 and tensors[0].is_floating_point() and outs[0].is_floating_point()
                                and tensors[0].dtype != outs[0].dtype)
        self.records.append(OpRecord(
            len(self.records), self.phase, path, str(func),
            tuple(tuple(t.shape) for t in tensors), tuple(str(t.dtype).removeprefix("torch.") for t in tensors),
            tuple(tuple(t.shape) for t in outs), tuple(str(t.dtype).removeprefix("torch.") for t in outs),
            cost.macs, cost.flops, cost.acts if self.phase == "forward" else 0,
            _bytes_read(packet, tensors, out_bytes), out_bytes, out_bytes, covered, cast,
        ))
        return out

    def _memory_event(self, path: str, args, kwargs, out) -> None:
        reads: list = []
        _shape_args(list(args) + list(kwargs.values()), reads)
        read_keys = tuple(dict.fromkeys(_storage(t) for t in reads))
        new = []
        for t in outputs(out):
            st = t.untyped_storage()
            key = st._cdata
            if key not in self._mem_seen:
                self._mem_seen.add(key)
                self._mem_keep.append(st)
                new.append((key, st.nbytes()))
                self._mem_owners[key] = 0
            if key in self._mem_owners:
                self._mem_owners[key] += 1
                self.mem_deaths.pop(key, None)
                self._mem_refs.append(weakref.ref(t, functools.partial(self._mem_let_go, key)))
        self.mem_events.append((self.phase, path, read_keys, tuple(new)))

    def _mem_let_go(self, key: int, _ref) -> None:
        self._mem_owners[key] -= 1
        if self._mem_owners[key] == 0:
            self.mem_deaths[key] = len(self.mem_events)

    def mark_known(self, tensors) -> None:
        """Storages that exist before the traced ops (parameters, buffers, inputs): not allocated by any op."""
        for t in tensors:
            st = t.untyped_storage()
            if st._cdata not in self._mem_seen:
                self._mem_seen.add(st._cdata)
                self._mem_keep.append(st)

    def _follow(self, packet, tensors: list, outs: list) -> None:
        """Carry each open module call's derived-storage sets through this op; spot residual adds."""
        ins = {_storage(t) for t in tensors}
        new = {_storage(t) for t in outs}
        for _, _, derived in self.frames:
            for d in derived:
                if d & ins:
                    d |= new
        if packet in _ADDS and len(tensors) == 2:
            a, b = _storage(tensors[0]), _storage(tensors[1])
            for path, keys, derived in reversed(self.frames):  # the innermost module whose own input this adds
                if path != ROOT and any((a == k and b in d and b != k) or (b == k and a in d and a != k) for k, d in zip(keys, derived)):
                    if path not in self.blocks:
                        self.blocks.append(path)
                    break


_ADDS = frozenset((torch.ops.aten.add, torch.ops.aten.add_))


def _storage(t: torch.Tensor) -> int:
    """The identity of a tensor's storage (views share it)."""
    return t.untyped_storage()._cdata


def _bytes_read(packet, tensors: list, out_bytes: int) -> int:
    seen: set[int] = set()
    total = 0
    skip_first = packet in WRITE_ONLY_SELF
    for i, t in enumerate(tensors):
        if id(t) in seen or (i == 0 and skip_first):
            continue
        seen.add(id(t))
        total += out_bytes if (i == 0 and packet in GATHERS) else _distinct_bytes(t)
    return total


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else ""
