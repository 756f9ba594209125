"""A model spec resolved once: `resolve(spec, ...) -> ModelRef`.

A ModelRef names a model (a zoo name, `file.py:factory`, `package.module:factory`,
`torchvision:NAME`, `timm:NAME`, `hf:ORG/NAME`, or a module instance) together with its
builder arguments and the shapes of its inputs (one sample each, no batch). It is frozen
and picklable, so it crosses process boundaries; `.build(device, dtype, fake)` makes a
fresh module each time it is called (an instance ref returns its instance).
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import logging
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from effkit.errors import ModelRunError, UserInputError, check_positive
from effkit.models.registry import BuiltModel, build_model, declared_input_shape, declared_inputs, get_entry


@dataclass(frozen=True)
class ModelRef:
    name: str
    source: str  # "zoo", "file", "module", "torchvision", "timm", "hf", "instance"
    spec: str  # what resolves it again; the class name for an instance
    input_shapes: tuple[tuple[int, ...], ...]  # one sample per input, no batch dimension
    vocab_size: int | None = None  # token-id inputs: integers below this
    kwargs: tuple[tuple[str, object], ...] = ()  # builder arguments
    published: dict = field(default_factory=dict, compare=False)  # params, macs, top1 ... with "source"
    instance: nn.Module | None = field(default=None, compare=False, repr=False)
    input_names: tuple[str, ...] = ()  # keyword inputs, one name per input shape: model(**{name: tensor})

    def call(self, model: nn.Module, xs: list):
        """Run `model` on inputs made by `inputs()`: positionally, or by name where the model declared names."""
        return model(**dict(zip(self.input_names, xs))) if self.input_names else model(*xs)

    @property
    def top1(self) -> float | None:
        return self.published.get("top1")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The first input's shape (one sample)."""
        return self.input_shapes[0]

    def build(self, device: str = "cpu", dtype: torch.dtype | None = None, fake=None) -> nn.Module:
        """The model: on real tensors (moved to `device`/`dtype`), or, given a FakeTensorMode, on its fake tensors."""
        if self.instance is not None:
            if fake is not None:
                with fake:
                    return fake_copy(self.instance, dtype or torch.float32)
            return self.instance.to(device=device, dtype=dtype) if dtype is not None else self.instance.to(device)
        if fake is None:
            model = self._build_real()
            try:
                return model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
            except (RuntimeError, TypeError) as e:
                raise UserInputError(f"model {self.name!r} cannot be moved to {device}: {e}") from e
        try:
            with fake, default_dtype(dtype or torch.float32), no_init(True), quiet_fake_tensor_log():
                return self._build_real()
        except DataDependentBuild:
            # the builder computes its configuration with tensors (torchvision's RegNet does): build on real
            # CPU tensors, initialisers off (the values are never used), then swap in fake parameters
            with default_dtype(dtype or torch.float32), no_init(True):
                model = self._build_real()
            with fake:
                return fake_copy(model, dtype or torch.float32)

    def _build_real(self) -> nn.Module:
        try:
            return build_model(self.spec, **dict(self.kwargs)).model
        except (UserInputError, ModelRunError):
            raise
        except Exception as e:
            if type(e).__name__ in ("DataDependentOutputException", "DynamicOutputShapeException"):
                raise DataDependentBuild() from e
            raise ModelRunError(f"model {self.name!r} could not be built: {type(e).__name__}: {_first_line(e)}") from e

    def inputs(self, batch: int, dtype: torch.dtype, device: str = "cpu", channels_last: bool = False) -> list[torch.Tensor]:
        """Random inputs for a batch: token ids below the vocabulary, else floats of `dtype`."""
        if self.vocab_size:
            return [torch.randint(0, self.vocab_size, (batch, *s), device=device) for s in self.input_shapes]
        xs = [torch.randn((batch, *s), dtype=dtype, device=device) for s in self.input_shapes]
        if channels_last:
            xs = [x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x for x in xs]
        return xs


def resolve(model, input_shape=None, *, resolution: int | None = None, seq_len: int | None = None, **build_kwargs) -> ModelRef:
    """Resolve a model spec once. `input_shape` is one sample's shape (or a list of shapes, one per input);
    by default the model's own. Builder arguments (width, depth, resolution, ...) go to the zoo builder or factory."""
    if resolution is not None:
        check_positive("resolution", resolution)
    if seq_len is not None:
        check_positive("seq-len", seq_len)
    if isinstance(model, ModelRef):
        if input_shape is None and resolution is None and seq_len is None and not build_kwargs:
            return model
        model = model.instance if model.instance is not None else model.spec
    if isinstance(model, BuiltModel):
        if build_kwargs:
            raise UserInputError(f"builder arguments {sorted(build_kwargs)} need a model name, not a built model")
        shapes = _shapes(model.name, input_shape, model.input_shapes or model.input_shape, resolution)
        return ModelRef(model.name, model.source, model.name, shapes, model.vocab_size, instance=model.model,
                        input_names=_names(model.input_names, shapes))
    if isinstance(model, nn.Module):
        if build_kwargs:
            raise UserInputError(f"builder arguments {sorted(build_kwargs)} need a model name, not a built model")
        declared, names, vocab = declared_inputs(model)
        shapes = _shapes(type(model).__name__, input_shape, declared, resolution)
        return ModelRef(type(model).__name__, "instance", type(model).__name__, shapes, vocab, instance=model, input_names=_names(names, shapes))
    if not isinstance(model, str):
        raise UserInputError(f"cannot use a {type(model).__name__} as a model; give a model name, a spec like file.py:factory, or an nn.Module")
    kwargs = dict(build_kwargs)
    if resolution is not None:
        kwargs["resolution"] = resolution
    if seq_len is not None:
        kwargs["seq_len"] = seq_len
    if ":" not in model:
        entry = get_entry(model)
        _check_builder_args(entry.name, entry.fn, kwargs)
        declared = entry.input_shape if resolution is None else (entry.input_shape[0], resolution, resolution)
        shapes = _shapes(entry.name, input_shape, declared, resolution)
        return ModelRef(entry.name, "zoo", entry.name, shapes, None, tuple(sorted(kwargs.items())), dict(entry.published))
    # a factory or a model from elsewhere: its input is declared by what it builds; build it once on fake tensors
    from torch._subclasses.fake_tensor import FakeTensorMode

    probe = ModelRef(model, "spec", model, ((1,),), kwargs=tuple(sorted(kwargs.items())))
    built = _probe(probe, FakeTensorMode(allow_non_fake_inputs=True))
    shapes = _shapes(built.name, input_shape, built.input_shapes or built.input_shape, resolution)
    return ModelRef(built.name, built.source, model, shapes, built.vocab_size, probe.kwargs, input_names=_names(built.input_names, shapes))


def _names(names: tuple, shapes: tuple) -> tuple:
    """Keyword input names, kept only while they match the inputs one to one (an --input-shape list replaces them)."""
    return tuple(names) if names and len(names) == len(shapes) else ()


def _probe(ref: ModelRef, fake) -> BuiltModel:
    """The registry's BuiltModel of a spec, built on fake tensors (no memory) where the builder allows."""
    kwargs = dict(ref.kwargs)
    try:
        with fake, default_dtype(torch.float32), no_init(True), quiet_fake_tensor_log():
            return build_model(ref.spec, **kwargs)
    except (UserInputError, ModelRunError):
        raise
    except Exception as e:
        if type(e).__name__ not in ("DataDependentOutputException", "DynamicOutputShapeException"):
            raise ModelRunError(f"model {ref.spec!r} could not be built: {type(e).__name__}: {_first_line(e)}") from e
    with default_dtype(torch.float32), no_init(True):
        return build_model(ref.spec, **kwargs)


def _check_builder_args(name: str, fn, kwargs: dict) -> None:
    params = inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()) or not kwargs:
        return
    bad = [k for k in kwargs if k not in params]
    if bad:
        takes = [p for p in params if p != "kw"]
        raise UserInputError(f"{name}: unexpected builder argument(s) {', '.join(bad)}; its builder takes: {', '.join(takes)}")


def _shapes(name: str, input_shape, declared, resolution) -> tuple[tuple[int, ...], ...]:
    if input_shape is None:
        if declared is None:
            raise UserInputError(f"model {name!r} does not declare its input shape; give --input-shape, e.g. 3,224,224")
        shapes = [tuple(d) for d in declared] if declared and isinstance(declared[0], (list, tuple)) else [tuple(declared)]
    elif input_shape and isinstance(input_shape[0], int):
        shapes = [tuple(input_shape)]
    else:
        shapes = [tuple(s) for s in input_shape]
    for s in shapes:
        if not s or any(int(d) <= 0 for d in s):
            raise UserInputError(f"input shape {','.join(map(str, s))!r} must be positive integers, e.g. 3,224,224")
    if resolution is not None and input_shape is not None and len(shapes[0]) == 3:
        shapes[0] = (shapes[0][0], resolution, resolution)
    return tuple(tuple(int(d) for d in s) for s in shapes)


class DataDependentBuild(Exception):
    """A builder branched on tensor values while building on fake tensors."""


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(prev)


@contextlib.contextmanager
def no_init(active: bool):
    """Make torch.nn.init's in-place initialisers no-ops: fake tensors have no values, and
    some initialisers (trunc_normal_'s rejection loop) branch on values."""
    if not active:
        yield
        return
    import torch.nn.init as init

    names = [n for n in dir(init) if n.endswith("_") and not n.startswith("_") and callable(getattr(init, n))]
    saved = {n: getattr(init, n) for n in names}
    try:
        for n in names:
            setattr(init, n, lambda tensor, *a, **k: tensor)
        yield
    finally:
        for n, f in saved.items():
            setattr(init, n, f)


@contextlib.contextmanager
def quiet_fake_tensor_log():
    """Fake tensors log a traceback for every op they fail on; effkit reports the error itself."""
    log = logging.getLogger("torch._subclasses.fake_tensor")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def fake_copy(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of `model` whose parameters and buffers are fake tensors of the active fake mode
    (the caller's module stays untouched)."""
    from torch._guards import active_fake_mode

    mode = active_fake_mode()
    with torch.utils._python_dispatch._disable_current_modes():
        real = copy.deepcopy(model).to(dtype)
    for m in real.modules():
        for name, p in list(m._parameters.items()):
            if p is not None:
                m._parameters[name] = nn.Parameter(mode.from_tensor(p.detach()), requires_grad=p.requires_grad)
        for name, b in list(m._buffers.items()):
            if b is not None:
                m._buffers[name] = mode.from_tensor(b)
    return real


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else ""
