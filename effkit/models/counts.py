"""Params and MACs of zoo models at their default input, counted by meta traces and cached per
effkit and torch version (they change only when the code does)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from effkit.paths import cache_root


def _cache() -> Path:
    import effkit

    return cache_root() / f"zoo-counts-{effkit.__version__}-torch{torch.__version__}.json"


def zoo_counts(names: list[str], on_model: Callable[[str], None] | None = None) -> dict:
    from effkit.trace import trace

    path = _cache()
    cached = json.loads(path.read_text()) if path.exists() else {}
    for n in names:
        if n not in cached:
            r = trace(n, device="meta")
            cached[n] = {"params": r.params, "macs": r.totals.macs, "input": list(r.input_shapes[0][1:])}
        if on_model:
            on_model(n)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cached))
    return {n: cached[n] for n in names}
