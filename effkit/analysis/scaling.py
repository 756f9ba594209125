"""Growth exponents of scaled model families: log-log least squares against FLOPs."""
from __future__ import annotations

import math
import re

import numpy as np


def fit_exponent(xs: list[float], ys: list[float]) -> float | None:
    """Slope e of log y = e log x + c (least squares); None with fewer than two distinct x."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len({p[0] for p in pts}) < 2:
        return None
    lx, ly = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    return float(np.polyfit(lx, ly, 1)[0])


def r_squared(xs: list[float], ys: list[float]) -> float | None:
    """R² of the log-log linear fit of ys on xs: how well one predicts the other."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len(pts) < 3:
        return None
    lx, ly = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    slope, icpt = np.polyfit(lx, ly, 1)
    res = ly - (slope * lx + icpt)
    tot = ly - ly.mean()
    return float(1 - (res @ res) / (tot @ tot)) if tot @ tot else None


def _numbered_children(paths: list[str]) -> dict[str, set[str]]:
    """container path -> its children whose last component is a number or a numbered name (b1, 0, layer2 ...)."""
    out: dict[str, set[str]] = {}
    for p in paths:
        parts = p.split(".")
        for k in range(1, len(parts) + 1):
            parent, child = ".".join(parts[:k - 1]), parts[k - 1]
            if re.fullmatch(r"[\w-]*\d", child):
                out.setdefault(parent, set()).add(child)
    return out


def _index(child: str) -> int:
    return int(re.search(r"(\d+)$", child).group(1))


def depth_unscaled_share(base: list[dict], deeper: list[dict]) -> dict | None:
    """Which part of the base network depth scaling does not copy, and its share of activations and FLOPs.

    `base` and `deeper` are per-layer rows (path, acts, flops) of the base and of a depth-scaled variant. A container
    whose numbered children grew in number is a stage that depth scaling deepens; it grows by copies of its later
    blocks, never of its first (the stride-2 transition block, with its own shapes). Not copied: everything outside
    such stages (stem, head) and each stage's first block. With a fixed share f_a of activations and f_f of FLOPs,
    activations grow as FLOPs^e with e ≈ (1 - f_a) / (1 - f_f) near the base: below 1 when the parts not copied hold
    more of the activations than of the FLOPs."""
    b, d = _numbered_children([r["path"] for r in base]), _numbered_children([r["path"] for r in deeper])
    stages = {p for p, kids in d.items() if len(kids) > len(b.get(p, ())) and p in b}
    if not stages:
        return None

    def copied(path: str) -> bool:
        for st in stages:
            prefix = st + "." if st else ""
            if path.startswith(prefix) and path != st:
                child = path[len(prefix):].split(".")[0]
                first = min(b[st], key=_index)
                return child != first and child in b[st]
        return False

    acts = sum(r.get("acts") or 0 for r in base)
    flops = sum(r.get("flops") or 0 for r in base)
    fa = sum(r.get("acts") or 0 for r in base if not copied(r["path"])) / acts if acts else 0.0
    ff = sum(r.get("flops") or 0 for r in base if not copied(r["path"])) / flops if flops else 0.0
    return {"stages": sorted(stages), "acts_share": fa, "flops_share": ff, "exponent_near_base": (1 - fa) / (1 - ff) if ff < 1 else None}
