"""The one-run lower bounds on epsilon: the papers' formulas, checked by hand and on a simulated Gaussian mechanism.

Neither paper's text is stored where these tests could read it, so the values checked are those its statements
fix: Steinke, Nasr & Jagielski (2023): with delta = 0 the number of right guesses is dominated by a
Binomial(r, e^eps / (1 + e^eps)), so r right guesses out of r give eps = logit(alpha^(1/r)) exactly; their
(eps, delta) extension adds 2 m delta max_i (beta(v - i) - beta(v)) / i. Mahloujifar, Melis & Chaudhuri (2024):
the f-DP bound is at least the (eps, delta) one on the same guesses (their point: it is tighter) and, like it,
never exceeds the true epsilon of a Gaussian mechanism (soundness, over many simulated runs).
"""

import math

import numpy as np
import pytest
from scipy import optimize, special, stats

from fedsim.audit import audit, epsilon_fdp, epsilon_one_run
from fedsim.audit.bounds import GUESS_SHARES, one_run_p_value


def gdp_epsilon(mu: float, delta: float) -> float:
    """The exact epsilon of the mu-GDP Gaussian mechanism at ``delta`` (Dong, Roth & Su's conversion)."""
    def gap(e):
        return stats.norm.cdf(-e / mu + mu / 2) - math.exp(e) * stats.norm.cdf(-e / mu - mu / 2) - delta
    return optimize.brentq(gap, 0, 100)


@pytest.mark.parametrize("r", [10, 50, 100, 1000])
def test_all_right_guesses_without_delta_give_the_binomial_closed_form(r):
    expected = special.logit(0.05 ** (1 / r))  # P[Binomial(r, q) = r] = q^r = alpha
    assert epsilon_one_run(1000, r, r, delta=0.0, confidence=0.95) == pytest.approx(expected, abs=1e-5)
    assert epsilon_one_run(1000, r, r, delta=1e-5) < expected  # delta can only cost


def test_the_p_value_is_the_theorems_formula_evaluated_term_by_term():
    for m, r, v, eps, delta in [(100, 40, 35, 1.0, 1e-3), (1000, 200, 150, 0.5, 1e-5), (50, 50, 50, 2.0, 1e-2),
                                (10, 10, 3, 0.1, 0.1)]:
        q = special.expit(eps)
        beta = [sum(stats.binom.pmf(k, r, q) for k in range(u, r + 1)) for u in range(v + 1)]
        worst = max((beta[v - i] - beta[v]) / i for i in range(1, v + 1))
        assert one_run_p_value(m, r, v, eps, delta) == pytest.approx(min(1, beta[v] + 2 * m * delta * worst),
                                                                     rel=1e-9, abs=1e-12)


def test_more_right_guesses_give_a_larger_bound_and_the_fdp_bound_is_tighter():
    previous = 0.0
    for v in range(65, 101, 5):  # tighter once the guesses are well above chance (at 60/100: 0.044 vs 0.050)
        one_run, fdp = epsilon_one_run(1000, 100, v, 1e-5), epsilon_fdp(1000, 100, v, 1e-5)
        assert one_run > previous and fdp > 1.3 * one_run  # e.g. 90/100: 1.63 and 2.46
        previous = one_run
    assert epsilon_one_run(1000, 100, 50, 1e-5) == epsilon_fdp(1000, 100, 50, 1e-5) == 0.0  # chance: nothing


def gaussian_run(mu: float, m: int, seed: int):
    """Scores of m canaries through a mu-GDP mechanism: N(mu, 1) when included, N(0, 1) when not."""
    rng = np.random.default_rng(seed)
    included = rng.random(m) < 0.5
    return mu * included + rng.normal(size=m), included


@pytest.mark.parametrize("mu", [0.5, 1.0, 2.0, 4.0])
def test_neither_bound_ever_exceeds_the_true_epsilon_of_a_gaussian_mechanism(mu):
    truth = gdp_epsilon(mu, 1e-5)  # 1.99, 4.38, 10.0, 24.4
    for seed in range(5):
        scores, included = gaussian_run(mu, 1000, seed)
        one_run, fdp = (audit(scores, included, 1e-5, 0.95, method) for method in ("one-run", "f-dp"))
        assert 0 <= one_run.epsilon <= fdp.epsilon < truth
        assert fdp.correct <= fdp.guesses <= 1000 and fdp.guesses // 2 * 2 == fdp.guesses


def test_a_stronger_mechanism_signal_gives_a_larger_bound():
    found = [audit(*gaussian_run(mu, 1000, 0), 1e-5, method="f-dp").epsilon for mu in (0.0, 0.5, 1.0, 2.0, 4.0)]
    assert found[0] < 0.2 and found == sorted(found) and found[-1] > 7  # measured 0.00, 0.94, 2.01, 4.31, 7.80


def test_the_grid_of_guesses_is_fixed_before_the_scores_are_seen():
    scores, included = gaussian_run(2.0, 1000, 0)
    bound = audit(scores, included, 1e-5, method="f-dp")
    assert bound.guesses in {2 * round(s * 1000 / 2) for s in GUESS_SHARES}
    # Bonferroni over the grid: the bound is the single-count bound at the corrected confidence.
    level = 1 - 0.05 / len(GUESS_SHARES)
    assert bound.epsilon == pytest.approx(epsilon_fdp(1000, bound.guesses, bound.correct, 1e-5, level))


@pytest.mark.parametrize("call, message", [
    (lambda: audit([1.0, 2.0], [True], 1e-5), "scores: expected one score per canary"),
    (lambda: audit([1.0, 2.0], [True, False], 1e-5, confidence=1.0), "confidence: must be"),
    (lambda: audit([1.0, 2.0], [True, False], 1e-5, method="bayes"), "method: must be one of"),
    (lambda: epsilon_one_run(10, 11, 5, 1e-5), "guesses: must be an integer"),
    (lambda: epsilon_fdp(10, 5, 6, 1e-5), "correct: must be an integer"),
])
def test_bad_input_names_the_field(call, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        call()
