"""The model zoo's registry, and resolvers for models defined elsewhere.

Entry functions register with `@register_model`, state their configuration and hand it to
one builder (timm's pattern). `build_model(spec)` takes a zoo name or alias,
`path/to/file.py:factory` or `package.module:factory`.
"""
from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch.nn as nn

from effkit.errors import UserInputError, choices_hint


@dataclass(frozen=True)
class ModelEntry:
    """One zoo model: its builder and what is known about it."""

    name: str
    fn: Callable[..., nn.Module]
    family: str
    input_shape: tuple[int, ...]  # one sample, no batch dimension
    reference: str  # the implementation whose architecture this one equals
    aliases: tuple[str, ...] = ()
    published: dict = field(default_factory=dict)  # params, macs, top1 ... with "source"
    scalable: bool = True  # the builder takes width, depth and resolution


_MODELS: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}


def register_model(
    family: str,
    reference: str,
    input_shape: tuple[int, ...] = (3, 224, 224),
    aliases: tuple[str, ...] = (),
    published: dict | None = None,
    scalable: bool = True,
):
    """Decorator: register `fn` under its own name (and aliases); refuses duplicates."""

    def deco(fn):
        name = fn.__name__
        for n in (name, *aliases):
            if n in _MODELS or n in _ALIASES:
                raise ValueError(f"model name {n!r} is registered twice")
        _MODELS[name] = ModelEntry(name, fn, family, tuple(input_shape), reference, tuple(aliases), dict(published or {}), scalable)
        for a in aliases:
            _ALIASES[a] = name
        return fn

    return deco


def _load_zoo() -> None:
    # Importing the family modules runs their registrations; done on first use, not at import.
    from effkit.models import convfirst, convnext, efficientnet, inceptionnext, mobilenet, mobilenetv3, regnet, resnet, swin, vit  # noqa: F401


def list_models(pattern: str = "*") -> list[str]:
    """Sorted zoo names (aliases included) matching a shell-style pattern."""
    _load_zoo()
    names = set(_MODELS) | set(_ALIASES)
    return sorted(n for n in names if fnmatch.fnmatch(n, pattern))


def get_entry(name: str) -> ModelEntry:
    """The zoo entry for a name or alias; unknown names get close suggestions."""
    _load_zoo()
    key = _ALIASES.get(name, name)
    if key not in _MODELS:
        known = sorted(set(_MODELS) | set(_ALIASES))
        hint = choices_hint(name, known)
        raise UserInputError(f"unknown model {name!r}{hint}; `effkit models` lists the {len(_MODELS)} built-in models")
    return _MODELS[key]


def entries() -> list[ModelEntry]:
    _load_zoo()
    return [ _MODELS[n] for n in sorted(_MODELS)]


@dataclass(frozen=True)
class BuiltModel:
    """A model ready to trace, with the input shape of one sample."""

    model: nn.Module
    name: str
    input_shape: tuple[int, ...] | None
    source: str  # "zoo", "file", "module", "torchvision", "timm", "hf"
    vocab_size: int | None = None  # set for models that take token ids (their input is integers below it)
    input_shapes: tuple | None = None  # several inputs: one sample's shape each (input_shape is the first)
    input_names: tuple = ()  # keyword inputs: the model is called as model(**{name: tensor})


EXTERNAL = ("torchvision", "timm", "hf")


def build_model(spec: str, resolution: int | None = None, seq_len: int | None = None, **kwargs) -> BuiltModel:
    """Build a model from a zoo name, `torchvision:NAME`, `timm:NAME`, `hf:ORG/NAME`, `file.py:factory`
    or `package.module:factory`."""
    prefix = spec.partition(":")[0]
    if ":" in spec and prefix in EXTERNAL:
        from effkit.models.external import build_external

        return build_external(prefix, spec.partition(":")[2], resolution=resolution, seq_len=seq_len, **kwargs)
    if ":" in spec:
        target, _, factory = spec.rpartition(":")
        if not target or not factory:
            raise UserInputError(f"model spec {spec!r} must be NAME, path/to/file.py:factory or package.module:factory")
        if target.endswith(".py") or "/" in target or "\\" in target:
            module, source = _import_file(target), "file"
        else:
            module, source = _import_module(target), "module"
        fn = getattr(module, factory, None)
        if fn is None or not callable(fn):
            public = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_") and not inspect.isclass(v) and not inspect.ismodule(v)]
            raise UserInputError(f"{target!r} has no factory {factory!r}{choices_hint(factory, public)}; callables there: {', '.join(sorted(public)[:10]) or 'none'}")
        model = fn(**kwargs)
        if not isinstance(model, nn.Module):
            raise UserInputError(f"factory {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
        shapes, names, vocab = declared_inputs(model)
        shape = shapes[0] if shapes else None
        if shape is not None and resolution is not None and len(shape) == 3:
            shape = (shape[0], resolution, resolution)
            shapes = (shape, *shapes[1:])
        return BuiltModel(model, spec, shape, source, vocab, shapes if shapes and len(shapes) > 1 or names else None, names)
    if seq_len is not None:
        kwargs["seq_len"] = seq_len
    entry = get_entry(spec)
    if resolution is not None:
        kwargs["resolution"] = resolution
    try:
        model = entry.fn(**kwargs)
    except TypeError as e:
        if "unexpected keyword" not in str(e):
            raise
        params = [p for p in inspect.signature(entry.fn).parameters if p != "kw"]
        raise UserInputError(f"{entry.name}: {e}; its builder takes: {', '.join(params) or 'width, depth, resolution, num_classes'}") from e
    shape = entry.input_shape
    if resolution is not None:
        shape = (shape[0], resolution, resolution)
    return BuiltModel(model, entry.name, shape, "zoo")


def factory_of(spec: str):
    """The factory callable named by `path/to/file.py:factory` or `package.module:factory`."""
    target, _, factory = spec.rpartition(":")
    module = _import_file(target) if (target.endswith(".py") or "/" in target) else _import_module(target)
    fn = getattr(module, factory, None)
    if fn is None or not callable(fn):
        raise UserInputError(f"{target!r} has no factory {factory!r}")
    return fn


def declared_inputs(model: nn.Module) -> tuple[tuple | None, tuple, int | None]:
    """(shapes, names, vocab_size) a model declares: `input_shapes` as a list of shapes (several positional inputs)
    or a dict name -> shape (keyword inputs), else `input_shape`; `vocab_size` for token-id inputs."""
    vocab = getattr(model, "vocab_size", None)
    vocab = int(vocab) if isinstance(vocab, int) else None
    shapes = getattr(model, "input_shapes", None)
    if isinstance(shapes, dict) and shapes:
        return tuple(tuple(int(x) for x in s) for s in shapes.values()), tuple(shapes), vocab
    if isinstance(shapes, (list, tuple)) and shapes and all(isinstance(s, (list, tuple)) for s in shapes):
        return tuple(tuple(int(x) for x in s) for s in shapes), (), vocab
    one = declared_input_shape(model)
    return ((one,) if one is not None else None), (), vocab


def declared_input_shape(model: nn.Module) -> tuple[int, ...] | None:
    """The input shape a model declares: `input_shape` attribute or timm's default_cfg."""
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        shape = shape[0]
    if shape is None:
        cfg = getattr(model, "default_cfg", None) or getattr(model, "pretrained_cfg", None) or {}
        shape = cfg.get("input_size") if isinstance(cfg, dict) else None
    return tuple(int(s) for s in shape) if shape is not None else None


def _import_file(path: str):
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"model file {path!r} does not exist")
    name = f"effkit_user_{abs(hash(str(p.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, p)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's file failed to import: say where
        raise UserInputError(f"model file {path!r} failed to import: {type(e).__name__}: {e}") from e
    return module


def _import_module(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        raise UserInputError(f"module {name!r} cannot be imported: {e}") from e
