"""Bootstrap intervals of seed medians and of differences between two cells, paired by seed.

A cell is the scores x_1..x_n of n runs that differ only in the seed. We report its median and a
**percentile bootstrap** 95% interval of the median (Efron & Tibshirani 1993, *An Introduction to
the Bootstrap*, ch. 13):

    draw B = RESAMPLES samples x*_b of size n from x with replacement (seeded RNG, SEED)
    m*_b = median(x*_b)
    interval = [q_{2.5%}(m*), q_{97.5%}(m*)]      (numpy's linear quantile)

A comparison of two cells a and b (the *difference* a − b):

    paired (both cells hold exactly the same seeds s):  d_s = a_s − b_s, estimate median(d),
        interval = the bootstrap interval above applied to d (one shared seed removes the part
        of the noise both runs share: the data order, the head's initialisation)
    unpaired (the seed sets differ):  estimate median(a) − median(b); every resample draws a*
        from a and b* from b independently, statistic median(a*) − median(b*)

A benchmark's ratio (intervals for the speed and latency claims): median(a) / median(b) of two
samples of timings, each resample drawing the same rounds t from both when a_t and b_t were
measured in the same round (paired), else each sample on its own (`ratio_interval`).

Runs are never dropped to force a pairing: a comparison with any unmatched seed is unpaired, and
says so. Collapsed runs (collapse.py) stay in: an interval over all runs is the honest one, and a
cell with a collapsed seed gets a wide interval, which is the point.

Why the percentile method: it needs no variance estimate and respects monotone transformations;
BCa needs a jackknife acceleration that is degenerate for the median of 3-5 values. Caveat: with
few seeds the interval is coarse. For n = 3 and n = 5 it is [min, max] of the sample (a
resample's median is the smallest value with probability 7/27, resp. 0.058, both > 2.5%), which
covers the population median with probability 1 − 2·0.5ⁿ: 75% for n = 3, 94% for n = 5; a
"holds" on 3 seeds is weaker than the 95% suggests. With 10 seeds the interval tightens.

Why numpy and not `scipy.stats.bootstrap`: scipy is not a dependency of the project; the two
cases above are a few vectorised numpy lines; scipy's bootstrap refuses a sample of one value and
warns on constant ones, both of which occur here (one run of a cell, a rounded-identical
score); and numpy's `Generator` streams are what keep the files byte-identical. B = 10,000: the
bootstrap distribution of a median of n ≤ 10 values is discrete, and 10,000 draws put the
Monte-Carlo error of its 2.5% and 97.5% quantiles well below the 0.1 printed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lora_exp.errors import UserError

RESAMPLES = 10_000
CONFIDENCE = 0.95
SEED = 2021  # the paper's year; any fixed value makes every report byte-reproducible


@dataclass(frozen=True)
class Interval:
    """An estimate with its bootstrap interval and how it was obtained."""

    estimate: float
    lo: float
    hi: float
    n: int  # values (paired: seed pairs; unpaired: the smaller of the two cells)
    paired: bool = True


def _quantiles(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(stats, [tail, 1.0 - tail])
    return float(lo), float(hi)


def _values(values, what: str) -> np.ndarray:
    x = np.asarray(list(values), dtype=float)
    if x.size == 0:
        raise UserError(f"no values for {what}: a cell without runs has no interval")
    if not np.all(np.isfinite(x)):
        raise UserError(f"{what} holds a non-finite value: {x.tolist()}")
    return x


def median_interval(
    values, resamples: int = RESAMPLES, seed: int = SEED, confidence: float = CONFIDENCE
) -> Interval:
    """Median of `values` and its percentile bootstrap interval (module docstring).

    One value gives [x, x]: a degenerate interval, which verdicts.py never lets decide.
    """
    x = _values(values, "a median")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(resamples, x.size))  # (B, n) resample indices
    lo, hi = _quantiles(np.median(x[idx], axis=1), confidence)
    return Interval(float(np.median(x)), lo, hi, int(x.size))


def unpaired_interval(
    a, b, resamples: int = RESAMPLES, seed: int = SEED, confidence: float = CONFIDENCE
) -> Interval:
    """median(a) − median(b), each sample resampled independently (module docstring)."""
    x, y = _values(a, "cell a"), _values(b, "cell b")
    rng = np.random.default_rng(seed)
    ix = rng.integers(0, x.size, size=(resamples, x.size))
    iy = rng.integers(0, y.size, size=(resamples, y.size))
    stats = np.median(x[ix], axis=1) - np.median(y[iy], axis=1)  # (B,)
    lo, hi = _quantiles(stats, confidence)
    estimate = float(np.median(x) - np.median(y))
    return Interval(estimate, lo, hi, int(min(x.size, y.size)), paired=False)


def ratio_interval(
    a,
    b,
    paired: bool,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> Interval:
    """median(a) / median(b) of two benchmark samples (timings), with its percentile bootstrap
    interval: the claims about speed are ratios, so the statistic is the ratio of medians that
    the benchmark's own tables print, resampled.

    Args:
        paired: a[t] and b[t] were measured in the same round t (Table 1's interleaved trials):
            resample rounds, keeping each pair; else (two loops run one after the other) resample
            each sample independently.
    """
    x, y = _values(a, "sample a"), _values(b, "sample b")
    if paired and x.size != y.size:
        raise UserError(f"paired samples need one value per round each, got {x.size} and {y.size}")
    rng = np.random.default_rng(seed)
    ix = rng.integers(0, x.size, size=(resamples, x.size))
    iy = ix if paired else rng.integers(0, y.size, size=(resamples, y.size))
    stats = np.median(x[ix], axis=1) / np.median(y[iy], axis=1)
    lo, hi = _quantiles(stats, confidence)
    estimate = float(np.median(x) / np.median(y))
    return Interval(estimate, lo, hi, int(min(x.size, y.size)), paired=paired)


def difference(
    a: dict, b: dict, resamples: int = RESAMPLES, seed: int = SEED, confidence: float = CONFIDENCE
) -> Interval:
    """a − b for two cells given as {seed: score}: paired when the seed sets are equal.

    Args:
        a, b: the scores of each cell by seed.
    """
    if not a or not b:
        raise UserError("a comparison needs runs in both cells")
    if set(a) == set(b):
        seeds = sorted(a)
        d = [a[s] - b[s] for s in seeds]
        return median_interval(d, resamples, seed, confidence)
    return unpaired_interval(
        [a[s] for s in sorted(a)], [b[s] for s in sorted(b)], resamples, seed, confidence
    )
