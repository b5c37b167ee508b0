"""RMIA, the relative membership inference attack (Zarifzadeh, Liu & Shokri, ICML 2024), from LiRA's shadows.

A record x is a member when the target model likes it more, relative to how
much models trained like it like x in general, than it likes other records
z relative to theirs. With Pr(x | model) the model's probability of x's true
label and Pr(x) its average over the reference (shadow) models, the pairwise
likelihood ratio is LR(x, z) = (Pr(x | target) / Pr(x)) / (Pr(z | target) /
Pr(z)); the score of x is the share of reference records z with
LR(x, z) >= ``gamma``. Online, Pr(x) averages every shadow (half trained on
x); offline, only the shadows that left x out: Pr(x) = ((1 + a) Pr_OUT(x) +
(1 - a)) / 2, the paper's linear correction for the missing IN shadows.
The reference records are the other candidates (the attacker need not know
which of them are members). The shadows, their halves of the candidates and
the statistics are LiRA's (``fedsim.attacks.membership.lira``), so the two
attacks compare at the same cost.
"""

import numpy as np
from scipy.special import logsumexp

OFFLINE_A = 0.3  # the paper's offline correction for tabular and image data of this size


def _log_probability(confidence: np.ndarray) -> np.ndarray:
    """log Pr(true label) from the logit-scaled confidence: -log(1 + exp(-c)), stable for any c."""
    return -np.logaddexp(0.0, -confidence)


def rmia_scores(target: np.ndarray, shadow: np.ndarray, is_in: np.ndarray, online: bool = True,
                gamma: float = 1.0, offline_a: float = OFFLINE_A) -> np.ndarray:
    """RMIA scores from LiRA's statistics: ``target`` (n,), ``shadow`` and ``is_in`` (n_shadows, n).

    Higher = more likely a member: the share of the other candidates z with
    LR(x, z) >= ``gamma``.
    """
    log_target, log_shadow = _log_probability(target), _log_probability(shadow)
    if online:
        log_prior = logsumexp(log_shadow, axis=0) - np.log(len(shadow))
    else:
        out = np.where(~is_in, log_shadow, -np.inf)
        log_out = logsumexp(out, axis=0) - np.log(np.maximum((~is_in).sum(axis=0), 1))
        log_prior = np.log(0.5 * ((1 + offline_a) * np.exp(log_out) + (1 - offline_a)))
    log_ratio = log_target - log_prior
    ordered = np.sort(log_ratio)
    # z with ratio(z) <= ratio(x) / gamma, the candidate itself left out where it would count
    count = np.searchsorted(ordered, log_ratio - np.log(gamma), side="right")
    count -= (gamma <= 1.0)
    return count / max(len(log_ratio) - 1, 1)
