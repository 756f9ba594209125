"""The layer-path conventions the trace and the per-layer timings agree on."""
from __future__ import annotations

ROOT = "(root)"  # the path of ops the top-level module's forward runs itself
AUTOGRAD = "(autograd)"  # backward ops whose autograd node belongs to no module
OUTSIDE = "(outside the model)"  # measured time that ran in no module's range


def module_path(name: str) -> str:
    """The layer path of a module from its `named_modules()` name ('' is the top module)."""
    return name or ROOT


def path_depth(path: str) -> int:
    return 0 if path in (ROOT, AUTOGRAD) else path.count(".") + 1


def truncate_path(path: str, depth: int) -> str:
    if path in (ROOT, AUTOGRAD) or path_depth(path) <= depth:
        return path
    return ROOT if depth <= 0 else ".".join(path.split(".")[:depth])
