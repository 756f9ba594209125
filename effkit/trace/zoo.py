"""Params and MACs of zoo models at their default input, counted by meta traces and cached per
counting version, effkit version and torch version (they change only when the code does)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from effkit._version import COUNTING_VERSION, __version__
from effkit.files import atomic_write_text, read_json_cache
from effkit.models.ref import resolve
from effkit.paths import cache_root
from effkit.trace.tracer import trace_ref


def cache_path() -> Path:
    return cache_root() / f"zoo-counts-c{COUNTING_VERSION}-{__version__}-torch{torch.__version__}.json"


def zoo_counts(names: list[str], on_model: Callable[[str], None] | None = None) -> dict:
    """{name: {params, macs, input}} for zoo models, counted once and cached."""
    path = cache_path()
    cached = read_json_cache(path) or {}
    for n in names:
        if n not in cached:
            r = trace_ref(resolve(n), [1], device="meta")[0]
            cached[n] = {"params": r.params, "macs": r.totals.macs, "input": list(r.input_shapes[0][1:])}
        if on_model:
            on_model(n)
    atomic_write_text(path, json.dumps(cached))
    return {n: cached[n] for n in names}
