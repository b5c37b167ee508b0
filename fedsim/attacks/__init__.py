"""Attacks on what hospitals share: gradient inversion of updates and membership inference.

The honest-but-curious server (an observer on the replies) or anyone holding
the trained model runs them; every result is a tidy row
(attack, hospital, round, metric, value) of ``Result.attacks``.
"""

from fedsim.attacks.curious_server import GradientInversion, MembershipInference
from fedsim.attacks.defenses import DefenseComparison, compare_defenses
from fedsim.attacks.inversion import (
           Reconstruction,
           invert_gradient,
           recover_labels,
           true_gradient,
           update_as_gradient,
)
from fedsim.attacks.membership import (
    MembershipAttack,
    TrainingRecipe,
    attack_result,
    attack_update,
    lira_scores,
    membership_inference,
    plot_attacks,
)
from fedsim.attacks.scores import decode, psnr, ssim

__all__ = ["DefenseComparison", "GradientInversion", "MembershipAttack", "MembershipInference", "Reconstruction", "TrainingRecipe",
           "attack_result", "attack_update", "compare_defenses", "decode", "invert_gradient", "lira_scores",
           "membership_inference", "plot_attacks", "psnr", "recover_labels", "ssim", "true_gradient",
           "update_as_gradient"]
