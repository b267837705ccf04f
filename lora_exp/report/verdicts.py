"""Verdicts derived from intervals: the rule that turns a 95% interval into holds / does not hold.

For a comparison of cell a with cell b, let [lo, hi] be the 95% bootstrap interval of the
difference a − b (intervals.py: paired by seed where possible) and m the equivalence margin:

    better    "a is better than b"       holds: lo > 0          does not hold: hi < 0
    matches   "a matches b"              holds: −m ≤ lo, hi ≤ m  does not hold: lo > m or hi < −m
    at_least  "a is at least as good"    holds: lo ≥ −m         does not hold: hi < −m
    (otherwise: inconclusive; and always inconclusive when either cell has fewer than MIN_SEEDS
    runs, since an interval of one or two runs is no interval)

`better` is a test of sign; `matches` is an equivalence test and `at_least` a non-inferiority
test in the sense of the two one-sided tests (Schuirmann 1987; Wellek 2010, *Testing Statistical
Hypotheses of Equivalence and Noninferiority*): the interval must lie inside the margin, not
merely contain zero, so a noisy comparison is inconclusive rather than "matches".

MARGIN = 1.0 accuracy point (x100 scale). Why: Hu et al. (2021) call LoRA "on par" with full
fine-tuning where the Table 2 averages differ by up to about one point (RoBERTa-base: 87.2 vs
86.4; DeBERTa XXL: 91.3 vs 91.1), so one point is the paper's own resolution for "matches"; and
one run's test accuracy on tweet_sentiment (3,725 examples, p ≈ 0.8) has a binomial standard
error of sqrt(0.8·0.2/3725) = 0.66 points, so a margin below one point would demand more
precision than a single test set gives.

A claim made of several comparisons (claims_spec.py) gets an overall verdict, per score:

    holds          every comparison holds
    partly         at least one holds and at least one does not hold
    does not hold  at least one does not hold and none holds
    inconclusive   otherwise (none fails, not all hold)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lora_exp.errors import UserError
from lora_exp.report.intervals import Interval

HOLDS, FAILS, INCONCLUSIVE, PARTLY = "holds", "does not hold", "inconclusive", "partly"
MARGIN = 1.0
MIN_SEEDS = 3
KINDS = {
    "better": "a − b > 0",
    "matches": "−{m} ≤ a − b ≤ {m}",  # no '|': the text goes into Markdown tables
    "at_least": "a − b ≥ −{m}",
}


@dataclass
class Row:
    """One judged comparison, as claims.md prints it: label, rule, counts, and per score the
    estimate (an Interval, or a benchmark's point figure as text) with its verdict."""

    label: str
    rule: str
    seeds: str = ""
    results: dict = field(default_factory=dict)  # score -> (Interval | str | None, verdict)
    collapsed: str = ""


def rule_text(kind: str, margin: float = MARGIN) -> str:
    """The rule of a kind as printed in a table, e.g. '|a − b| ≤ 1.0'."""
    if kind not in KINDS:
        raise UserError(f"unknown comparison kind '{kind}': known kinds are {', '.join(KINDS)}")
    return KINDS[kind].format(m=f"{margin:g}")


def verdict(kind: str, lo: float, hi: float, margin: float = MARGIN) -> str:
    """holds / does not hold / inconclusive for an interval [lo, hi] of a − b (module rule)."""
    rule_text(kind, margin)  # validates kind
    if math.isnan(lo) or math.isnan(hi):
        return INCONCLUSIVE
    if lo > hi:
        raise UserError(f"an interval needs lo <= hi, got [{lo}, {hi}]")
    if kind == "better":
        return HOLDS if lo > 0 else FAILS if hi < 0 else INCONCLUSIVE
    if kind == "matches":
        if -margin <= lo and hi <= margin:
            return HOLDS
        return FAILS if lo > margin or hi < -margin else INCONCLUSIVE
    return HOLDS if lo >= -margin else FAILS if hi < -margin else INCONCLUSIVE


def judge(kind: str, interval: Interval, n_a: int, n_b: int, margin: float = MARGIN) -> str:
    """`verdict` of a difference's interval, inconclusive when a cell has < MIN_SEEDS runs."""
    if min(n_a, n_b) < MIN_SEEDS:
        return INCONCLUSIVE
    return verdict(kind, interval.lo, interval.hi, margin)


def overall(verdicts: list[str]) -> str:
    """A claim's verdict from its comparisons' verdicts (module rule)."""
    if not verdicts:
        return INCONCLUSIVE
    held, failed = HOLDS in verdicts, FAILS in verdicts
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    if held and failed:
        return PARTLY
    return FAILS if failed else INCONCLUSIVE
