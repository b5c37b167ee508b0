"""Membership inference: was this patient's record in the training data?

Three attacks, scored against a trained model's weights:

- ``"loss"``: the loss-threshold attack (Yeom et al., 2018). A record the model
  was trained on tends to have a lower loss; the score is minus the per-record
  binary cross-entropy of the target model.
- ``"lira"`` / ``"lira-offline"``: the likelihood-ratio attack (Carlini et al.,
  2022). The attacker trains *shadow models* the way the target was trained,
  each on a random half of the candidate records (in pairs that split the
  candidates between them), so every candidate is IN (trained on) for exactly
  half of the shadows and OUT for the other half.
  The statistic of a record is the logit-scaled confidence of a model on its
  true label, ``log(p_y / (1 - p_y))``; for fedsim's one-logit models it is
  the logit itself (its sign flipped for label 0), so it is exact and
  never saturates. Per record, Gaussians are fitted to the IN and OUT
  statistics of the shadows; the online score is the log-likelihood ratio
  of the target's statistic under IN vs OUT. The offline variant uses only
  the OUT Gaussian (a one-sided test: the score is the z-score of the target's
  statistic, a monotone transform of ``Pr[Z < observed]``). With few shadows
  a variance pooled over all records is more stable than per-record variances
  (``global_variance``; by default pooled below 64 shadows, as the paper advises).
- ``"rmia"`` / ``"rmia-offline"``: the relative membership inference attack
  (Zarifzadeh et al., ICML 2024) from the same shadows and statistics: how
  much more the target likes a record than the shadows do, compared with how
  much more it likes the other candidates (``rmia``).

Shadows are trained by the simulator itself: the process-wide ``Trainer`` of
the target's model (``fedsim.training.trainer_for``) is reused for every
shadow, started from ``initial_weights(seed_k)`` or, when the target is one
hospital's update, from the same global weights the hospital started from.
Nothing is rebuilt or retraced. A shadow follows the target's ``TrainingRecipe``:
same model, epochs, batch size, learning rate, DP-SGD clip and noise.

Targets:

- the final global model of a run: ``attack_result(res)`` (members: the
  training rows of every hospital or of one; non-members: held-out test rows);
- one hospital's update, the weights it sent after local training from known
  global weights: ``attack_update(...)`` (members: that hospital's training
  rows; non-members: its test rows); shadows do the same local training from
  the same global weights, so they mimic it exactly;
- anything else: ``membership_inference(model_fn, weights, members, non_members)``.

Shadows of a federated global model are, by default, trained centrally with the
same total number of passes over the data (``rounds * local_epochs`` epochs),
batch size, learning rate and DP-SGD settings: an approximation (FedAvg's
averaging, FedProx's proximal term, central/local DP, adversaries and
hospital sampling are not mimicked). Give ``attack_result`` the run's
``experiment=`` and each shadow is instead a real federated run of that
Experiment on a shadow federation (each hospital keeps its share of the shadow's
training rows): faithful to everything the Experiment does, and cheap in the
in-process engine (a 2-hospital, 25-round run takes about a second), but
``n_shadows`` times a full run.

Members and non-members are balanced (the larger side subsampled with the
seed); the members left out still train every shadow, so each shadow trains
on as many rows as there are members (plus ``population=`` rows, extra
data from the same distribution that the attacker holds).

tensorflow-privacy 0.9.0's wheel lacks its membership-inference module
(``privacy.membership_inference_attack`` only re-exports the absent
``privacy.privacy_tests``) and the split-off tensorflow-empirical-privacy 0.1.0
fails on current scikit-learn, so the attacks are written here on numpy, and
the ROC and its metrics come from scikit-learn (``sklearn.metrics.roc_curve``,
``roc_auc_score``).
"""

from fedsim.attacks.membership.lira import METHODS, lira_scores, logit_confidence, membership_inference
from fedsim.attacks.membership.outcome import METRICS, MembershipAttack, plot_attacks
from fedsim.attacks.membership.rmia import rmia_scores
from fedsim.attacks.membership.runs import attack_result, attack_update
from fedsim.recipe import TrainingRecipe

__all__ = ["METHODS", "METRICS", "MembershipAttack", "TrainingRecipe", "attack_result", "attack_update",
           "lira_scores", "logit_confidence", "membership_inference", "plot_attacks", "rmia_scores"]
