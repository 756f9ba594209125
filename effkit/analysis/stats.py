"""Two-sample tests for timed figures: is B's time different from A's, or is it noise?

- `mann_whitney`: the Mann-Whitney U test (normal approximation with tie and continuity
  corrections), for end-to-end timings with many samples; distribution-free, so a few slow
  outliers do not make a difference significant.
- `welch_log`: Welch's t-test on log times, for per-layer times with a handful of profiled
  steps each (U cannot reach significance with 5 samples a side after correcting for many
  layers; kernel times are close to log-normal and very stable on a GPU).
- `holm`: Holm's step-down correction across many layers, so that among a model's 100+
  layers noise is not called a change.
- `bootstrap_ratio_ci`: a percentile bootstrap interval of median(B) / median(A), shown
  beside the verdict.
- `disagree`: two medians of what should be the same measurement (one configuration timed
  twice in a run) that differ beyond both spreads and by more than a tenth: a measurement
  problem, where only their medians and IQRs are kept.

Pure Python (math and random), no SciPy.
"""
from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass

ALPHA = 0.05


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def mann_whitney(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test that a and b come from one distribution."""
    n1, n2 = len(a), len(b)
    if n1 < 2 or n2 < 2:
        return 1.0
    pooled = sorted([(x, 0) for x in a] + [(x, 1) for x in b])
    ranks = [0.0] * len(pooled)
    ties = 0.0
    i = 0
    while i < len(pooled):  # average ranks over ties
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        r = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[k] = r
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    r1 = sum(r for r, (_, g) in zip(ranks, pooled) if g == 0)
    u = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    mean = n1 * n2 / 2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return 1.0
    z = (abs(u - mean) - 0.5) / math.sqrt(var)
    return min(1.0, 2 * _normal_sf(max(z, 0.0)))


def _betacf(a: float, b: float, x: float) -> float:
    # continued fraction of the incomplete beta function (modified Lentz)
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1 + aa * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + aa / c if abs(1 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1 + aa * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + aa / c if abs(1 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-12:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1 - front * _betacf(b, a, 1 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """Two-sided p-value of Student's t with df degrees of freedom: I_{df/(df+t^2)}(df/2, 1/2)."""
    if not math.isfinite(t):
        return 0.0
    return betainc(df / 2, 0.5, df / (df + t * t))


def welch_log(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of Welch's t-test on log(a) against log(b)."""
    la = [math.log(x) for x in a if x > 0]
    lb = [math.log(x) for x in b if x > 0]
    if len(la) < 2 or len(lb) < 2:
        return 1.0
    va, vb = statistics.variance(la) / len(la), statistics.variance(lb) / len(lb)
    diff = statistics.fmean(lb) - statistics.fmean(la)
    if va + vb == 0:
        return 0.0 if diff else 1.0
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / ((va**2 / (len(la) - 1) if va else 0) + (vb**2 / (len(lb) - 1) if vb else 0) or 1e-300)
    return t_two_sided_p(t, df)


def holm(pvalues: list[float], alpha: float = ALPHA) -> list[bool]:
    """Which of the hypotheses Holm's step-down procedure rejects at family-wise level alpha."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    out = [False] * len(pvalues)
    m = len(pvalues)
    for rank, i in enumerate(order):
        if pvalues[i] > alpha / (m - rank):
            break
        out[i] = True
    return out


def bootstrap_ratio_ci(a: list[float], b: list[float], level: float = 0.95, draws: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of median(b) / median(a)."""
    rng = random.Random(seed)
    ratios = []
    for _ in range(draws):
        ra = statistics.median(rng.choices(a, k=len(a)))
        rb = statistics.median(rng.choices(b, k=len(b)))
        if ra > 0:
            ratios.append(rb / ra)
    ratios.sort()
    if not ratios:
        return float("nan"), float("nan")
    lo = ratios[int((1 - level) / 2 * (len(ratios) - 1))]
    hi = ratios[int((1 + level) / 2 * (len(ratios) - 1))]
    return lo, hi


def disagree(a: float, a_iqr: float | None, b: float, b_iqr: float | None, rel: float = 0.10) -> bool:
    """Two medians of the same measurement disagree: they differ by more than either's IQR (beyond both spreads) and by
    more than `rel` of the smaller. The second condition keeps a GPU's tight timings (IQRs of 0.3 %) from calling an
    ordinary 1-2 % drift between two measurements a problem; `rel` is the spread the timing itself calls large."""
    if not (a > 0 and b > 0):
        return False
    d = abs(a - b)
    return d > max(a_iqr or 0.0, b_iqr or 0.0) and d > rel * min(a, b)


@dataclass(frozen=True)
class TimeDelta:
    """B's time against A's: the ratio of medians, its interval, the test's p-value and the verdict."""

    a_s: float
    b_s: float
    ratio: float
    ci: tuple[float, float] | None
    p: float
    significant: bool
    test: str

    @property
    def verdict(self) -> str:
        if not self.significant:
            return "within noise"
        return "slower" if self.ratio > 1 else "faster"

    def to_dict(self) -> dict:
        return {"a_ms": 1e3 * self.a_s, "b_ms": 1e3 * self.b_s, "ratio": self.ratio, "ci_low": self.ci[0] if self.ci else None,
                "ci_high": self.ci[1] if self.ci else None, "p": self.p, "significant": self.significant, "verdict": self.verdict,
                "test": self.test}


def compare_samples(a: list[float], b: list[float], alpha: float = ALPHA, test: str = "mann-whitney") -> TimeDelta:
    """B's samples against A's with the named test (`mann-whitney` or `welch-log`) at level alpha."""
    p = mann_whitney(a, b) if test == "mann-whitney" else welch_log(a, b)
    ma, mb = statistics.median(a), statistics.median(b)
    ci = bootstrap_ratio_ci(a, b) if test == "mann-whitney" else None
    return TimeDelta(ma, mb, mb / ma if ma else float("nan"), ci, p, p < alpha, test)
