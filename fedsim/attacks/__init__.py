"""Attacks on what hospitals share (the ``attack`` registry): gradient inversion and membership inference.

The honest-but-curious server (an observer on the replies) or anyone holding
the trained model runs them; every result is a tidy row
(attack, hospital, round, metric, value, details) of ``Result.attacks``.
One attack per file: ``gradient_inversion`` and ``membership_inference``
(observers of a run, on ``UpdateAttack``), the algorithms they use
(``inversion``, ``membership``) and the scores of a reconstruction (``scores``).
"""

from fedsim.attacks.gradient_inversion import RECONSTRUCTIONS, GradientInversion
from fedsim.attacks.inversion import Reconstruction, invert_gradient, recover_labels, true_gradient, update_as_gradient
from fedsim.attacks.membership import (
    MembershipAttack,
    TrainingRecipe,
    attack_result,
    attack_update,
    lira_scores,
    membership_inference,
    plot_attacks,
)
from fedsim.attacks.membership_inference import MembershipInference
from fedsim.attacks.scores import decode, psnr, ssim
from fedsim.attacks.update_attack import ATTACKS, UpdateAttack

__all__ = ["ATTACKS", "RECONSTRUCTIONS", "GradientInversion", "MembershipAttack", "MembershipInference",
           "Reconstruction", "TrainingRecipe", "UpdateAttack", "attack_result", "attack_update", "decode",
           "invert_gradient", "lira_scores", "membership_inference", "plot_attacks", "psnr", "recover_labels", "ssim",
           "true_gradient", "update_as_gradient"]
