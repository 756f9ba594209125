"""Scaling a model by a flops factor s through depth d, width w and resolution r.

FLOPs ∝ d·w²·r², params ∝ d·w², activations ∝ d·w·r² (DESIGN.md). A strategy sets the
multipliers (d, w, r) so that d·w²·r² = s:

    d: (s, 1, 1)             w: (1, √s, 1)           r: (1, 1, √s)
    dw: (√s, s^¼, 1)         dr: (√s, 1, s^¼)        wr: (1, s^¼, s^¼)
    dwr: (s^⅓, s^⅙, s^⅙)     efficientnet: (α^φ, β^φ, γ^φ), α=1.2, β=1.1, γ=1.15, φ = log s / log(α·β²·γ²)
    dWr (fast compound): (s^((1−a)/2), s^(a/2), s^((1−a)/4)), a = 0.8 by default

Rounding: depths to integers ≥ 1 (nearest), widths to multiples of 8, resolution to multiples
of 4, group widths scaled with widths (then snapped: ≤ 2 kept, ≤ 5 → 4, else a multiple of 8)
and widths made divisible by their groups. The achieved flops factor differs from s after
rounding; effkit reports it (effkit.scale).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from effkit.errors import UserInputError

STRATEGIES = ("d", "w", "r", "dw", "dr", "wr", "dwr", "efficientnet", "dWr")
EFFICIENTNET = (1.2, 1.1, 1.15)


def multipliers(strategy: str, s: float, alpha: float = 0.8) -> tuple[float, float, float]:
    """(depth, width, resolution) multipliers for flops factor `s` under `strategy`."""
    if strategy not in STRATEGIES:
        raise UserInputError(f"unknown strategy {strategy!r}; choose from: {', '.join(STRATEGIES)}")
    if not s > 0:
        raise UserInputError(f"flops factor must be > 0, got {s}")
    if strategy == "efficientnet":
        a, b, g = EFFICIENTNET
        phi = math.log(s) / math.log(a * b * b * g * g)
        return a**phi, b**phi, g**phi
    if strategy == "dWr":
        if not 0 < alpha < 1:
            raise UserInputError(f"--alpha must be between 0 and 1, got {alpha}")
        return s ** ((1 - alpha) / 2), s ** (alpha / 2), s ** ((1 - alpha) / 4)
    parts = set(strategy)  # share log s equally among the chosen dimensions, in d·w²·r² terms
    k = len(parts)
    return (s ** (1 / k) if "d" in parts else 1.0, s ** (1 / (2 * k)) if "w" in parts else 1.0, s ** (1 / (2 * k)) if "r" in parts else 1.0)


def theory(strategy: str, alpha: float = 0.8) -> dict:
    """Exponents e in params ∝ flops^e and acts ∝ flops^e implied by the multipliers (before rounding)."""
    md, mw, mr = (math.log(m) / math.log(2.0) for m in multipliers(strategy, 2.0, alpha))
    return {"params": md + 2 * mw, "acts": md + mw + 2 * mr}


def round_width(w: float) -> int:
    return max(8, int(round(w / 8)) * 8)


def round_group(g: float) -> int:
    g = max(1, int(round(g)))
    return g if g <= 2 else 4 if g <= 5 else int(round(g / 8)) * 8


def round_resolution(r: float) -> int:
    return max(4, int(round(r / 4)) * 4)


def scale_config(cfg, md: float, mw: float, mr: float):
    """A RegNet config scaled by (depth, width, resolution) multipliers, rounded as above."""
    from effkit.models.regnet import quantize

    if (md, mw, mr) == (1.0, 1.0, 1.0):
        return cfg
    depths = tuple(max(1, int(round(d * md))) for d in cfg.depths)
    widths = [round_width(w * mw) for w in cfg.widths]
    groups = [min(round_group(g * mw), w) for g, w in zip(cfg.group_widths, widths)]
    widths = tuple(max(g, quantize(w, g)) for w, g in zip(widths, groups))
    return replace(cfg, depths=depths, widths=widths, group_widths=tuple(groups), resolution=round_resolution(cfg.resolution * mr))


@dataclass(frozen=True)
class Variant:
    """One scaled model: how it was asked for and what builds it."""

    base: str
    strategy: str
    factor: float  # the flops factor asked for
    d: float
    w: float
    r: float
    resolution: int
    build_kwargs: dict  # for the zoo builder

    def describe(self) -> str:
        return f"d×{self.d:.3g} w×{self.w:.3g} r×{self.r:.3g} → {self.resolution}px"


def variant(base, strategy: str, s: float, alpha: float = 0.8) -> Variant:
    """The scaled variant of a zoo model or factory (a name, or its resolved ModelRef) for one strategy and factor."""
    import inspect

    from effkit.models.ref import ModelRef, resolve
    from effkit.models.registry import factory_of, get_entry

    md, mw, mr = multipliers(strategy, s, alpha)
    ref = base if isinstance(base, ModelRef) else resolve(base)
    fn = get_entry(ref.name).fn if ref.source == "zoo" else factory_of(ref.spec) if ref.source in ("file", "module") else None
    if fn is None:
        raise UserInputError(f"model {ref.name!r} is not scalable: scaling needs a zoo model or a factory taking depth, width, resolution")
    params = inspect.signature(fn).parameters
    needs = [dim for dim, m in (("depth", md), ("width", mw), ("resolution", mr)) if m != 1.0]
    missing = [dim for dim in needs if dim not in params]
    if missing:
        has = [d for d in ("depth", "width", "resolution") if d in params]
        raise UserInputError(f"model {ref.spec!r} is not scalable by {strategy!r}: its builder lacks {', '.join(missing)} "
                             f"(it takes {', '.join(has) or 'none of depth, width, resolution'})")
    shape = ref.input_shape
    if len(shape) != 3:
        raise UserInputError(f"model {ref.spec!r} has no image input shape (C,H,W) to scale resolution from")
    res = round_resolution(shape[-1] * mr)
    kw = {"resolution": res}
    if md != 1.0:
        kw["depth"] = md
    if mw != 1.0:
        kw["width"] = mw
    return Variant(ref.spec, strategy, s, md, mw, mr, res, kw)
