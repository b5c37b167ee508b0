"""Lower bounds on epsilon from one training run with canaries.

The setting (Steinke, Nasr & Jagielski 2023, "Privacy auditing with one (1)
training run"): m canaries, each included in the run independently with
probability 1/2. After the run an auditor scores every canary, guesses
"included" for the highest scores and "excluded" for the lowest, and abstains
on the rest: r guesses, v of them right. A run that is (epsilon, delta)-DP
with respect to each canary cannot make many right guesses likely:

- ``epsilon_one_run`` (Steinke et al.): with q = e^eps / (1 + e^eps) and
  beta(u) = P[Binomial(r, q) >= u], the chance of v or more right guesses is
  at most beta(v) + 2 m delta max_{1 <= i <= v} (beta(v - i) - beta(v)) / i
  (for delta = 0: beta(v), the number of right guesses is dominated by a
  Binomial(r, q)). The lower bound is the largest epsilon this probability
  rules out at the confidence level. It assumes nothing about the mechanism
  but the (epsilon, delta) claim.
- ``epsilon_fdp`` (Mahloujifar, Melis & Chaudhuri 2024, "Auditing
  f-differential privacy in one run"): the same guesses tested against a
  whole trade-off curve, here the Gaussian one (mu-GDP) of the Gaussian
  mechanism that is exactly (epsilon, delta)-DP. Their analysis walks the
  number of right guesses down from v, bounding at each step the probability
  mass of "right" and "wrong" guesses with the curve; the claim is refuted
  when the masses cannot add up to the guesses made. Tighter than the
  (epsilon, delta) bound (the paper's point), but it tests a stronger claim:
  that the run is as private as a Gaussian mechanism with that epsilon and
  delta (DP-SGD's curve is close to Gaussian, not exactly).

Why these are written here: jax-privacy 2.0 has both bounds in its
``auditing`` module (numpy, scipy and dp-accounting at run time), but the
package's ``__init__`` imports JAX, which fedsim does not depend on, and a
module cannot be imported without its package's ``__init__``;
tensorflow-empirical-privacy ships only a multi-run bound from ROC points and
fails on current scikit-learn (see ``fedsim.attacks.membership``). Both
bounds are short functions of scipy's Binomial and normal distributions.

Choosing how many guesses to make after seeing the scores would void the
confidence level, so ``audit`` tries a fixed grid of guess counts with a
Bonferroni correction (each at 1 - confidence over the grid's size) and
reports the largest bound.
"""

import math
from dataclasses import dataclass

import dp_accounting
import numpy as np
from scipy import special, stats

from fedsim.validation import Integer, Options, Real, check

METHODS = ("one-run", "f-dp")
EPSILON_CAP = 60.0  # no bound is searched beyond this (e^60 is already certainty)
GUESS_SHARES = (1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125)  # guesses as shares of the canaries, the Bonferroni grid


def _check_counts(canaries, guesses, correct) -> None:
    check("canaries", canaries, Integer(min=1))
    check("guesses", guesses, Integer(min=0, max=canaries))
    check("correct", correct, Integer(min=0, max=guesses))


def one_run_p_value(canaries: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
    """How likely ``correct`` or more right guesses out of ``guesses`` are under an (epsilon, delta) claim."""
    q = special.expit(epsilon)
    tail = stats.binom.sf(np.arange(correct - 1, -2, -1), guesses, q)  # P[W >= correct - i], i = 0..correct
    beta = float(tail[0])
    if delta == 0 or correct == 0:
        return beta
    steps = np.arange(1, correct + 1)
    worst = float(np.max((tail[1:] - beta) / steps))
    return min(1.0, beta + 2 * canaries * delta * worst)


def _largest_refuted(refutes, tolerance: float = 1e-6) -> float:
    """The largest epsilon in [0, EPSILON_CAP] that ``refutes(epsilon)`` (true up to a point), by bisection."""
    if not refutes(0.0):
        return 0.0
    if refutes(EPSILON_CAP):
        return EPSILON_CAP
    low, high = 0.0, EPSILON_CAP
    while high - low > tolerance:
        middle = (low + high) / 2
        low, high = (middle, high) if refutes(middle) else (low, middle)
    return low


def epsilon_one_run(canaries: int, guesses: int, correct: int, delta: float, confidence: float = 0.95) -> float:
    """Steinke et al.'s lower bound on epsilon at ``delta``, holding with probability ``confidence``."""
    _check_counts(canaries, guesses, correct)
    alpha = 1 - confidence
    if correct == 0:
        return 0.0
    return _largest_refuted(lambda e: one_run_p_value(canaries, guesses, correct, e, delta) <= alpha)


def gaussian_mu(epsilon: float, delta: float) -> float:
    """mu of the Gaussian mechanism (mu-GDP) that is exactly (epsilon, delta)-DP (inf where it needs no noise)."""
    sigma = dp_accounting.get_sigma_gaussian(epsilon, delta)
    return math.inf if sigma == 0 else 1.0 / sigma


def fdp_refutes(canaries: int, guesses: int, correct: int, mu: float, confidence: float = 0.95) -> bool:
    """Whether the guesses refute a mu-GDP claim (Mahloujifar et al.'s recursion over right guesses)."""
    alpha = 1 - confidence
    right, wrong = alpha * correct / canaries, alpha * (guesses - correct) / canaries
    for i in range(correct - 1, -1, -1):
        # The least "wrong" mass the Gaussian curve allows beside this much "right" mass.
        floor = float(special.ndtr(special.ndtri(right) - mu)) if math.isfinite(mu) else 0.0
        if floor <= wrong:
            break  # nothing changes from here down
        right = min(1.0, right + i / (guesses - i) * (floor - wrong))
        wrong = floor
    return right + wrong > guesses / canaries


def epsilon_fdp(canaries: int, guesses: int, correct: int, delta: float, confidence: float = 0.95) -> float:
    """Mahloujifar et al.'s lower bound on epsilon at ``delta`` for a Gaussian trade-off curve."""
    _check_counts(canaries, guesses, correct)
    if correct == 0:
        return 0.0
    return _largest_refuted(lambda e: fdp_refutes(canaries, guesses, correct, gaussian_mu(e, delta), confidence))


BOUNDS = {"one-run": epsilon_one_run, "f-dp": epsilon_fdp}


@dataclass(frozen=True)
class Bound:
    """An audit's result: the lower bound, its confidence, and the guesses it rests on."""

    epsilon: float
    confidence: float
    method: str
    canaries: int
    guesses: int
    correct: int


def guess(scores: np.ndarray, included: np.ndarray, guesses: int) -> int:
    """Right guesses when the top ``guesses // 2`` scores are guessed in and the bottom ones out (ties: by index)."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    half = guesses // 2
    top, bottom = order[:half], order[len(order) - half:] if half else order[:0]
    return int(np.sum(included[top]) + np.sum(~included[bottom]))


def audit(scores, included, delta: float, confidence: float = 0.95, method: str = "one-run") -> Bound:
    """The largest lower bound over the grid of guess counts (``GUESS_SHARES``), Bonferroni-corrected.

    ``scores``: one per canary, higher = more likely included; ``included``:
    whether each canary was in the run (drawn with probability 1/2).
    """
    check("method", method, Options(*METHODS))
    check("confidence", confidence, Real(min=0, max=1, min_open=True, max_open=True))
    check("delta", delta, Real(min=0, max=1, max_open=True))
    scores, included = np.asarray(scores, np.float64), np.asarray(included, bool)
    if scores.shape != included.shape or scores.ndim != 1 or len(scores) < 2:
        raise ValueError(f"scores: expected one score per canary (at least 2), got shapes {scores.shape} and "
                         f"{included.shape}")
    m = len(scores)
    counts = sorted({min(m - m % 2, 2 * max(1, round(share * m / 2))) for share in GUESS_SHARES}, reverse=True)
    level = 1 - (1 - confidence) / len(counts)
    best = Bound(0.0, confidence, method, m, 0, 0)
    for r in counts:
        v = guess(scores, included, r)
        epsilon = BOUNDS[method](m, r, v, delta, level)
        if epsilon > best.epsilon:
            best = Bound(epsilon, confidence, method, m, r, v)
    return best
