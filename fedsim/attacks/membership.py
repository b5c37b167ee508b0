"""Membership inference: was this patient's record in the training data?

Two attacks, scored against a trained model's weights:

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

import dataclasses
import tempfile
import warnings
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve
from tqdm.auto import tqdm

from fedsim.models import ModelFn
from fedsim.training import Trainer, trainer_for

METHODS = ("lira", "lira-offline", "loss")
METRICS = ("auc", "advantage", "tpr@0.1%fpr", "tpr@1%fpr")
_LOW_FPR = {"tpr@0.1%fpr": 0.001, "tpr@1%fpr": 0.01}
_MIN_PER_RECORD = 64  # below this many shadows the variance is pooled over records by default
_SHADOW_SEED_OFFSET = 10_000


def _check_int(field: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{field}: must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class TrainingRecipe:
    """How the target was trained; every shadow is trained the same way.

    ``epochs`` passes over the shadow's rows in mini-batches of ``batch_size``
    with SGD at ``learning_rate``; ``max_steps`` caps the optimizer steps;
    ``dp=(l2_norm_clip, noise_multiplier)`` trains with DP-SGD, as
    ``fedsim.privacy.DPSGD`` does.
    """

    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 0.05
    dp: tuple[float, float] | None = None
    max_steps: int | None = None

    def __post_init__(self):
        _check_int("epochs", self.epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        if isinstance(self.learning_rate, bool) or not isinstance(self.learning_rate, (int, float)) \
                or not self.learning_rate > 0:
            raise ValueError(f"learning_rate: must be a number > 0, got {self.learning_rate!r}")
        if self.max_steps is not None:
            _check_int("max_steps", self.max_steps, 1)
        if self.dp is not None:
            ok = (isinstance(self.dp, (tuple, list)) and len(self.dp) == 2
                  and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.dp)
                  and self.dp[0] > 0 and self.dp[1] >= 0)
            if not ok:
                raise ValueError(f"dp: must be None or (l2_norm_clip > 0, noise_multiplier >= 0), got {self.dp!r}")
            object.__setattr__(self, "dp", (float(self.dp[0]), float(self.dp[1])))

    @classmethod
    def from_config(cls, config: dict, local: bool = False) -> "TrainingRecipe":
        """The recipe of a run from its ``Result.config``.

        ``local=False``: the whole run as one central training (``rounds *
        local_epochs`` epochs; a centralized baseline's own epochs).
        ``local=True``: one hospital's local training in one round (its
        ``local_steps`` cap included; the central recipe has no cap).
        DP-SGD settings are the run's ``dpsgd`` entry.
        """
        if "baseline" in config:
            if config["baseline"] != "centralized" or local:
                what = "a local update" if local else f"a {config['baseline']!r} baseline"
                raise ValueError(f"recipe: cannot be derived for {what}; give recipe=TrainingRecipe(...)")
            return cls(epochs=int(config["epochs"]), batch_size=int(config["batch_size"]),
                       learning_rate=float(config["learning_rate"]))
        try:
            epochs = int(config["local_epochs"]) * (1 if local else int(config["rounds"]))
            batch_size, learning_rate = int(config["batch_size"]), float(config["learning_rate"])
        except KeyError as missing:
            raise ValueError(f"recipe: the run's config lacks {missing}; give recipe=TrainingRecipe(...)") from None
        steps = config.get("local_steps")
        return cls(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                   dp=(dpsgd["l2_norm_clip"], dpsgd["noise_multiplier"]) if (dpsgd := config.get("dpsgd")) else None,
                   max_steps=int(steps) if local and steps is not None else None)

    @classmethod
    def from_experiment(cls, experiment, local: bool = False) -> "TrainingRecipe":
        """The recipe of an ``Experiment`` (see ``from_config``)."""
        return cls.from_config(experiment.config(), local=local)

    def fit(self, trainer: Trainer, weights, x: np.ndarray, y: np.ndarray, rng: np.random.Generator):
        """Train ``trainer``'s model from ``weights`` on (x, y) with this recipe; the new weights."""
        new, _, _ = trainer.fit(weights, x, y, epochs=self.epochs, batch_size=self.batch_size,
                                learning_rate=self.learning_rate, rng=rng, max_steps=self.max_steps, dp=self.dp)
        return new


# --- the target's statistic ---------------------------------------------------------------

def _check_weights(trainer: Trainer, weights, field: str = "weights") -> list[np.ndarray]:
    variables = trainer.model.weights
    if not isinstance(weights, (list, tuple)) or len(weights) != len(variables):
        got = len(weights) if isinstance(weights, (list, tuple)) else type(weights).__name__
        raise ValueError(f"{field}: expected a list of {len(variables)} arrays for this model, got {got}")
    arrays = [np.asarray(w) for w in weights]
    for k, (array, variable) in enumerate(zip(arrays, variables, strict=True)):
        if tuple(array.shape) != tuple(variable.shape):
            raise ValueError(f"{field}: array {k} has shape {array.shape}, the model expects {tuple(variable.shape)}")
    return arrays


def logit_confidence(trainer: Trainer, weights, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``log(p_y / (1 - p_y))`` of each row's true label, from the model's logit (float64, exact)."""
    logits = trainer.logits(weights, np.asarray(x, np.float32)).astype(np.float64)
    return np.where(y > 0.5, logits, -logits)


def _loss(confidence: np.ndarray) -> np.ndarray:
    """Binary cross-entropy from the logit-scaled confidence: log(1 + exp(-c)), stable for any c."""
    return np.logaddexp(0.0, -confidence)


# --- the attack's outcome -----------------------------------------------------------------

@dataclass(eq=False)
class MembershipAttack:
    """Scores of one membership-inference attack: higher = more likely a member.

    ``groups`` names each candidate's hospital where the candidates come from
    several (``metrics(per_hospital=True)`` breaks the metrics down by it).
    """

    attack: str
    scores: np.ndarray
    is_member: np.ndarray
    hospital: str = "all"
    round: int | None = None
    groups: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.scores = np.asarray(self.scores, dtype=np.float64)
        self.is_member = np.asarray(self.is_member, dtype=bool)
        if self.scores.shape != self.is_member.shape or self.scores.ndim != 1:
            raise ValueError(f"scores: expected one score per candidate ({self.is_member.shape}), "
                             f"got shape {self.scores.shape}")
        if self.is_member.all() or not self.is_member.any():
            raise ValueError("is_member: needs both members and non-members")

    def _values(self, member: np.ndarray, scores: np.ndarray) -> dict[str, float]:
        fpr, tpr, _ = roc_curve(member, scores)
        values = {"auc": float(roc_auc_score(member, scores)), "advantage": float(np.max(tpr - fpr))}
        for name, limit in _LOW_FPR.items():
            values[name] = float(tpr[fpr <= limit].max())  # fpr starts at 0, so never empty
        return values

    def metrics(self, per_hospital: bool = False) -> pd.DataFrame:
        """Tidy metrics: attack, hospital, round, metric, value.

        ``auc``; ``advantage``, the largest TPR - FPR over thresholds; and
        ``tpr@0.1%fpr`` / ``tpr@1%fpr``, the highest TPR at an FPR no larger
        than 0.1% / 1% (with fewer than 1000 / 100 non-members, that is the
        TPR at zero false positives). ``per_hospital`` adds each hospital's rows.
        """
        parts = [(self.hospital, np.ones(len(self.scores), bool))]
        if per_hospital and self.groups is not None:
            parts += [(str(h), self.groups == h) for h in pd.unique(self.groups)]
        rows = []
        for hospital, mask in parts:
            member = self.is_member[mask]
            if member.all() or not member.any():
                continue
            for metric, value in self._values(member, self.scores[mask]).items():
                rows.append({"attack": self.attack, "hospital": hospital, "round": self.round,
                             "metric": metric, "value": value})
        frame = pd.DataFrame(rows, columns=["attack", "hospital", "round", "metric", "value"])
        return frame.astype({"attack": "str", "hospital": "str", "round": "Int64", "metric": "str",
                             "value": "float64"})

    def roc(self) -> pd.DataFrame:
        """The ROC curve: fpr and tpr, both non-decreasing."""
        fpr, tpr, _ = roc_curve(self.is_member, self.scores)
        return pd.DataFrame({"fpr": fpr, "tpr": tpr})

    def plot(self, ax=None):
        """The ROC on log-log axes (low false-positive rates are what matters); see ``plot_attacks``."""
        return plot_attacks([self], ax=ax)

    def __repr__(self) -> str:
        auc = roc_auc_score(self.is_member, self.scores)
        return (f"MembershipAttack({self.attack!r}, hospital={self.hospital!r}, {len(self.scores)} candidates, "
                f"AUC {auc:.3f})")


# --- the attacks --------------------------------------------------------------------------

def _check_rows(field: str, rows, n_features: int | None) -> tuple[np.ndarray, np.ndarray]:
    if not (isinstance(rows, (tuple, list)) and len(rows) == 2):
        raise ValueError(f"{field}: expected a pair (x, y) of arrays, got {type(rows).__name__}")
    x, y = np.asarray(rows[0], dtype=np.float32), np.asarray(rows[1], dtype=np.float32)
    if x.ndim != 2 or y.shape != (len(x),):
        raise ValueError(f"{field}: x must be 2-D (rows, features) and y 1-D with one label per row, "
                         f"got shapes {x.shape} and {y.shape}")
    if n_features is not None and x.shape[1] != n_features:
        raise ValueError(f"{field}: x has {x.shape[1]} features, expected {n_features}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"{field}: labels must be 0 or 1")
    return x, y


def _balance(n_members: int, n_non: int, rng: np.random.Generator):
    """Sorted indices of an equal number of members and non-members, and the members left out."""
    n = min(n_members, n_non)
    members = np.sort(rng.permutation(n_members)[:n])
    left_out = np.setdiff1d(np.arange(n_members), members)
    return members, np.sort(rng.permutation(n_non)[:n]), left_out


def _in_masks(n_shadows: int, n_candidates: int, rng: np.random.Generator) -> np.ndarray:
    """(n_shadows, n_candidates) booleans, shadows in complementary pairs.

    Each pair splits the candidates into two random halves, one per shadow,
    so every candidate is IN for exactly half of the shadows and every shadow
    trains on half of the candidates.
    """
    masks = np.empty((n_shadows, n_candidates), dtype=bool)
    for k in range(0, n_shadows, 2):
        half = np.zeros(n_candidates, dtype=bool)
        half[rng.permutation(n_candidates)[: n_candidates // 2]] = True
        masks[k], masks[k + 1] = half, ~half
    return masks


def _gaussian_loglik(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mean) / std) ** 2 - np.log(std)


def lira_scores(target: np.ndarray, shadow: np.ndarray, is_in: np.ndarray, online: bool = True,
                global_variance: bool = True) -> np.ndarray:
    """LiRA scores from statistics: ``target`` (n,), ``shadow`` and ``is_in`` (n_shadows, n).

    Online: log N(target; IN) - log N(target; OUT); offline: the target's
    z-score under OUT. ``global_variance`` pools the variance over candidates.
    """
    def fit(mask):
        count = mask.sum(axis=0)
        mean = np.where(mask, shadow, 0.0).sum(axis=0) / count
        var = np.where(mask, (shadow - mean) ** 2, 0.0).sum(axis=0) / np.maximum(count - 1, 1)
        if global_variance:
            var = np.full_like(var, var.mean())
        return mean, np.maximum(np.sqrt(var), 1e-6)

    mean_out, std_out = fit(~is_in)
    if not online:
        return (target - mean_out) / std_out
    mean_in, std_in = fit(is_in)
    return _gaussian_loglik(target, mean_in, std_in) - _gaussian_loglik(target, mean_out, std_out)


def _shadow_seeds(n_shadows: int, seed: int) -> list[int]:
    """Each shadow's seed (its initial weights, its batches and noise).

    Small and predictable rather than random: ``Trainer.initial_weights``
    keeps every seed's weights for the life of the process, so shadows reuse
    the same few; the offset keeps them apart from the usual run seeds.
    """
    return [_SHADOW_SEED_OFFSET + seed * n_shadows + k for k in range(n_shadows)]


def membership_inference(
    model_fn: ModelFn,
    weights,
    members,
    non_members,
    *,
    method: str = "lira",
    recipe: TrainingRecipe | None = None,
    n_shadows: int = 16,
    start_weights=None,
    population=None,
    global_variance: bool | None = None,
    hospital: str = "all",
    round: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> MembershipAttack:
    """Attack the model ``model_fn`` with ``weights``: which candidates did it train on?

    ``members`` and ``non_members`` are (x, y) pairs of model inputs and 0/1
    labels; the larger side is subsampled (with ``seed``) so both count the
    same. ``method``: ``"lira"`` (online LiRA), ``"lira-offline"`` or
    ``"loss"``. LiRA trains ``n_shadows`` shadow models with ``recipe`` from
    ``initial_weights(seed_k)`` or, for one hospital's update, from
    ``start_weights`` (the global weights it started its local training from).
    ``population``: extra (x, y) rows the attacker holds; they train every shadow.
    ``global_variance``: pool the Gaussians' variance over candidates (default:
    when there are fewer than 64 shadows). ``hospital`` and ``round`` label
    the metrics rows. Same seed, same scores.
    """
    return _attack(model_fn, weights, members, non_members, method=method, recipe=recipe, n_shadows=n_shadows,
                   start_weights=start_weights, population=population, global_variance=global_variance,
                   hospital=hospital, round=round, seed=seed, progress=progress, shadow_trainer=None)


def _attack(model_fn, weights, members, non_members, *, method, recipe, n_shadows, start_weights, population,
            global_variance, hospital, round, seed, progress, shadow_trainer) -> MembershipAttack:
    """``membership_inference``, with the shadows' training replaceable (federated shadows)."""
    if not callable(model_fn):
        raise ValueError(f"model_fn: expected a callable n_features -> tf.keras.Model, got {type(model_fn).__name__}")
    if method not in METHODS:
        raise ValueError(f"method: unknown {method!r}; allowed: {list(METHODS)}")
    _check_int("seed", seed, 0)
    if round is not None:
        _check_int("round", round, 0)
    x_in, y_in = _check_rows("members", members, None)
    x_out, y_out = _check_rows("non_members", non_members, x_in.shape[1])
    if not len(x_in) or not len(x_out):
        raise ValueError(f"members, non_members: need at least one row each, got {len(x_in)} and {len(x_out)}")
    trainer = trainer_for(model_fn, x_in.shape[1])
    weights = _check_weights(trainer, weights)
    lira = method != "loss"
    if lira:
        if isinstance(n_shadows, bool) or not isinstance(n_shadows, (int, np.integer)) or n_shadows < 2 \
                or n_shadows % 2:
            raise ValueError(f"n_shadows: must be an even integer >= 2 (shadows come in IN/OUT pairs), "
                             f"got {n_shadows!r}")
        if not isinstance(recipe, TrainingRecipe):
            raise ValueError(f"recipe: LiRA needs the target's TrainingRecipe to train shadows, got {recipe!r}")
        if global_variance is None:
            global_variance = n_shadows < _MIN_PER_RECORD
        if not global_variance and n_shadows < 4:
            raise ValueError(f"global_variance: per-candidate variances need n_shadows >= 4, got {n_shadows}")
        if start_weights is not None:
            start_weights = _check_weights(trainer, start_weights, "start_weights")
    elif start_weights is not None or population is not None:
        raise ValueError("start_weights, population: only used by method='lira' or 'lira-offline'")
    x_pop, y_pop = (_check_rows("population", population, x_in.shape[1]) if population is not None
                    else (x_in[:0], y_in[:0]))

    rng = np.random.default_rng(seed)
    keep_in, keep_out, left_out = _balance(len(x_in), len(x_out), rng)
    x = np.concatenate([x_in[keep_in], x_out[keep_out]])
    y = np.concatenate([y_in[keep_in], y_out[keep_out]])
    is_member = np.repeat([True, False], len(keep_in))
    target = logit_confidence(trainer, weights, x, y)
    info = {"n_candidates": len(x)}
    if not lira:
        return MembershipAttack("loss", -_loss(target), is_member, hospital, round, info=info)

    # Each shadow trains on its half of the candidates plus every extra row: members
    # dropped by balancing and the attacker's population, so as many rows as the target.
    x_extra = np.concatenate([x_in[left_out], x_pop])
    y_extra = np.concatenate([y_in[left_out], y_pop])
    is_in = _in_masks(n_shadows, len(x), rng)
    seeds = _shadow_seeds(n_shadows, seed)
    shadow = np.empty((n_shadows, len(x)))
    train = shadow_trainer or _central_shadow(trainer, recipe, start_weights)
    for k in tqdm(range(n_shadows), desc=f"{method} shadows", unit="model", leave=False, disable=not progress):
        rows = is_in[k]
        shadow_weights = train(k, seeds[k], np.concatenate([x[rows], x_extra]), np.concatenate([y[rows], y_extra]),
                               rows)
        shadow[k] = logit_confidence(trainer, shadow_weights, x, y)
    scores = lira_scores(target, shadow, is_in, online=method == "lira", global_variance=global_variance)
    # The statistics stay with the result: lira_scores(**attack.info["statistics"], online=False)
    # gives the offline variant of the same shadows without training them again.
    info.update(n_shadows=n_shadows, global_variance=global_variance, recipe=recipe,
                shadows="central" if shadow_trainer is None else "federated",
                shadow_rows=int(is_in[0].sum() + len(x_extra)),
                statistics={"target": target, "shadow": shadow, "is_in": is_in})
    return MembershipAttack(method, scores, is_member, hospital, round, info=info)


def _central_shadow(trainer: Trainer, recipe: TrainingRecipe, start_weights):
    def train(k, seed, x, y, _rows):
        start = trainer.initial_weights(seed) if start_weights is None else start_weights
        return recipe.fit(trainer, start, x, y, np.random.default_rng([seed, k]))
    return train


# --- conveniences for fedsim runs ---------------------------------------------------------

def _hospital_index(fed, hospital) -> int:
    if hospital not in fed.hospitals:
        shown = list(fed.hospitals[:10]) + (["..."] if fed.n_hospitals > 10 else [])
        raise ValueError(f"hospital: unknown {hospital!r}; allowed: None (all) or a hospital id {shown}")
    return fed.hospitals.index(hospital)


def attack_result(
    res,
    hospital: str | None = None,
    *,
    method: str = "lira",
    n_shadows: int = 16,
    recipe: TrainingRecipe | None = None,
    experiment=None,
    global_variance: bool | None = None,
    seed: int = 0,
    progress: bool = True,
) -> MembershipAttack:
    """Membership inference on a run's final global model.

    Members: the training rows of every hospital (``hospital=None``) or of one;
    non-members: their held-out test rows, balanced within each hospital.
    LiRA's shadows train centrally with ``recipe`` (default: derived from
    ``res.config``, ``rounds * local_epochs`` epochs and the run's DP-SGD), or,
    given the run's ``experiment``, are real federated runs of it on shadow
    federations (``n_shadows`` runs). Every other training row of the
    federation trains every shadow. ``metrics(per_hospital=True)`` breaks a
    ``hospital=None`` attack down by hospital.
    """
    from fedsim.experiment import Experiment
    from fedsim.results import Result

    if not isinstance(res, Result):
        raise ValueError(f"res: expected a fedsim Result, got {type(res).__name__}")
    if method not in METHODS:
        raise ValueError(f"method: unknown {method!r}; allowed: {list(METHODS)}")
    fed = res.federation
    chosen = set(range(fed.n_hospitals)) if hospital is None else {_hospital_index(fed, hospital)}
    if experiment is not None:
        if not isinstance(experiment, Experiment):
            raise ValueError(f"experiment: expected the fedsim Experiment of this run, got {type(experiment).__name__}")
        if experiment.federation is not fed:
            raise ValueError("experiment: its federation is not the one of res; pass the Experiment that made res")
    if method != "loss" and recipe is None:
        if experiment is not None:
            recipe = TrainingRecipe.from_experiment(experiment)
        else:
            recipe = TrainingRecipe.from_config(res.config)
            _warn_unmimicked(res.config)

    # Candidates: the chosen hospitals' training and test rows, balanced within each
    # hospital; every other training row (left out by balancing, other hospitals') is extra.
    rng = np.random.default_rng([seed, 1])
    in_rows, out_rows, extra_rows = [], [], []
    for i in range(fed.n_hospitals):
        train_lo, train_hi = fed.train_offsets[i], fed.train_offsets[i + 1]
        if i in chosen:
            test_lo, test_hi = fed.test_offsets[i], fed.test_offsets[i + 1]
            keep_in, keep_out, left_out = _balance(train_hi - train_lo, test_hi - test_lo, rng)
            in_rows.append(train_lo + keep_in)
            out_rows.append(test_lo + keep_out)
            extra_rows.append(train_lo + left_out)
        else:
            extra_rows.append(np.arange(train_lo, train_hi))
    in_rows, out_rows, extra_rows = (np.concatenate(r).astype(np.int64) for r in (in_rows, out_rows, extra_rows))
    if not len(in_rows):
        raise ValueError(f"hospital: {hospital or 'the federation'} has no training and test rows to attack")
    in_site = np.searchsorted(fed.train_offsets, in_rows, side="right") - 1
    out_site = np.searchsorted(fed.test_offsets, out_rows, side="right") - 1
    extra_site = np.searchsorted(fed.train_offsets, extra_rows, side="right") - 1
    lira = method != "loss"
    final_round = int(res.metrics["round"].max()) if len(res.metrics) else None
    with tempfile.TemporaryDirectory(prefix="fedsim-shadows-") as folder:
        shadow_trainer = None
        if experiment is not None and lira:
            shadow_trainer = _federated_shadow(experiment, np.concatenate([in_site, out_site]), extra_site, folder)
        # Already balanced, so membership_inference keeps the candidates in this order.
        attack = _attack(
            res.model_fn, res.weights, (fed.x_train[in_rows], fed.y_train[in_rows]),
            (fed.x_test[out_rows], fed.y_test[out_rows]), method=method, recipe=recipe, n_shadows=n_shadows,
            start_weights=None, population=(fed.x_train[extra_rows], fed.y_train[extra_rows]) if lira else None,
            global_variance=global_variance, hospital=hospital or "all", round=final_round, seed=seed,
            progress=progress, shadow_trainer=shadow_trainer,
        )
    attack.groups = np.array(fed.hospitals)[np.concatenate([in_site, out_site])]
    return attack


def _warn_unmimicked(config: dict) -> None:
    """Warn when central shadows cannot mimic parts of a federated run."""
    others = [c for c in config.get("components", ())
              if not str(c).startswith(("DPSGD(", "UpdateValidator("))]
    if others or config.get("strategy") not in (None, "fedavg"):
        warnings.warn(f"attack_result: shadows are trained centrally and ignore strategy "
                      f"{config.get('strategy')!r} and components {others}; pass experiment= for federated "
                      f"shadows", stacklevel=3)


def _federated_shadow(experiment, candidate_sites: np.ndarray, extra_sites: np.ndarray, folder: str):
    """Shadows as federated runs of ``experiment``: each hospital trains on its share of the shadow's rows.

    The sites are the hospital index of every candidate and every extra row, in
    the order a shadow's rows are built (its IN candidates, then the extras).
    Each shadow's audit log goes to ``folder``.
    """
    fed = experiment.federation

    def train(k, seed, x, y, rows):
        site = np.concatenate([candidate_sites[rows], extra_sites])
        order = np.argsort(site, kind="stable")
        counts = np.bincount(site, minlength=fed.n_hospitals)
        shadow_fed = dataclasses.replace(fed, x_train=np.ascontiguousarray(x[order]), y_train=y[order],
                                         train_offsets=np.concatenate([[0], np.cumsum(counts)]))
        run = experiment.replace(federation=shadow_fed, seed=seed, name=f"shadow {k}", observers=(),
                                 evaluate_every=experiment.rounds, out=f"{folder}/shadow-{k}")
        return run.run().weights

    return train


def attack_update(
    federation,
    hospital: str,
    model_fn: ModelFn,
    start_weights,
    weights,
    *,
    recipe: TrainingRecipe | None = None,
    method: str = "lira",
    n_shadows: int = 16,
    global_variance: bool | None = None,
    round: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> MembershipAttack:
    """Membership inference on one hospital's update: ``weights`` it sent after local training from ``start_weights``.

    Members: the hospital's training rows; non-members: its test rows. LiRA's
    shadows start from ``start_weights`` and repeat the local training
    (``recipe``, e.g. ``TrainingRecipe.from_config(res.config, local=True)``)
    on random halves of the candidates.
    """
    from fedsim.federation import Federation

    if not isinstance(federation, Federation):
        raise ValueError(f"federation: expected a fedsim Federation, got {type(federation).__name__}")
    i = _hospital_index(federation, hospital)
    return membership_inference(
        model_fn, weights, federation.train_rows(i), federation.test_rows(i), method=method, recipe=recipe,
        n_shadows=n_shadows, start_weights=start_weights if method != "loss" else None,
        global_variance=global_variance, hospital=hospital, round=round, seed=seed, progress=progress,
    )


def plot_attacks(attacks, ax=None):
    """ROC curves of one or more attacks on log-log axes, chance as a dashed line.

    Draws into ``ax`` if given (and returns its Figure, still open), else into
    a new Figure, closed before it is returned (as ``fedsim.plots`` does).
    """
    attacks = list(attacks) if not isinstance(attacks, MembershipAttack) else [attacks]
    if not attacks or not all(isinstance(a, MembershipAttack) for a in attacks):
        raise ValueError("attacks: expected one or more MembershipAttack")
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.5, 4.5), constrained_layout=True)
    # Zero rates cannot be drawn on log axes: clip at half the smallest non-zero FPR.
    floor = min(0.5 / max(1, int((~a.is_member).sum())) for a in attacks)
    for attack in attacks:
        roc = attack.roc().clip(lower=floor)
        auc = roc_auc_score(attack.is_member, attack.scores)
        ax.plot(roc.fpr, roc.tpr, lw=1.8, label=f"{attack.attack}, {attack.hospital} (AUC {auc:.3f})")
    ax.plot([floor, 1], [floor, 1], color="grey", ls="--", lw=1, label="chance")
    ax.set(xscale="log", yscale="log", xlim=(floor, 1), ylim=(floor, 1), xlabel="false positive rate",
           ylabel="true positive rate", title="Membership inference")
    ax.legend(loc="lower right", fontsize=8)
    if fig is None:
        return ax.figure
    plt.close(fig)
    return fig


__all__ = ["METHODS", "METRICS", "MembershipAttack", "TrainingRecipe", "attack_result", "attack_update",
           "lira_scores", "logit_confidence", "membership_inference", "plot_attacks"]
