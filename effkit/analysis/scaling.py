"""Growth exponents of scaled model families: log-log least squares against FLOPs."""
from __future__ import annotations

import math

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
