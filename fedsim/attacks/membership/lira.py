"""The loss attack, LiRA and RMIA (online and offline) with shadow models the simulator trains."""

import numpy as np
from tqdm.auto import tqdm

from fedsim.attacks.membership.outcome import MembershipAttack
from fedsim.attacks.membership.rmia import rmia_scores
from fedsim.models import ModelFn
from fedsim.recipe import TrainingRecipe
from fedsim.training import Trainer, trainer_for
from fedsim.validation import Integer, IsCallable, NoneValue, Options, check

METHODS = ("lira", "lira-offline", "rmia", "rmia-offline", "loss")
_MIN_PER_RECORD = 64  # below this many shadows the variance is pooled over records by default
_SHADOW_SEED_OFFSET = 10_000


def check_shadows(n_shadows) -> int:
    """``n_shadows``, checked: shadows come in IN/OUT pairs."""
    ok, n = Integer(min=2).accepts(n_shadows)
    if not ok or n % 2:
        raise ValueError(f"n_shadows: must be an even integer >= 2 (shadows come in IN/OUT pairs), got {n_shadows!r}")
    return n


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


def balance(n_members: int, n_non: int, rng: np.random.Generator):
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
    same. ``method``: ``"lira"`` (online LiRA), ``"lira-offline"``,
    ``"rmia"``, ``"rmia-offline"`` (RMIA from the same shadows) or
    ``"loss"``. LiRA and RMIA train ``n_shadows`` shadow models with ``recipe`` from
    ``initial_weights(seed_k)`` or, for one hospital's update, from
    ``start_weights`` (the global weights it started its local training from).
    ``population``: extra (x, y) rows the attacker holds; they train every shadow.
    ``global_variance``: pool the Gaussians' variance over candidates (default:
    when there are fewer than 64 shadows). ``hospital`` and ``round`` label
    the metrics rows. Same seed, same scores.
    """
    return run_attack(model_fn, weights, members, non_members, method=method, recipe=recipe, n_shadows=n_shadows,
                   start_weights=start_weights, population=population, global_variance=global_variance,
                   hospital=hospital, round=round, seed=seed, progress=progress, shadow_trainer=None)


def run_attack(model_fn, weights, members, non_members, *, method, recipe, n_shadows, start_weights, population,
            global_variance, hospital, round, seed, progress, shadow_trainer) -> MembershipAttack:
    """``membership_inference``, with the shadows' training replaceable (federated shadows)."""
    check("model_fn", model_fn, IsCallable("a callable n_features -> tf.keras.Model"))
    check("method", method, Options(*METHODS))
    check("seed", seed, Integer(min=0))
    check("round", round, Integer(min=0), NoneValue())
    x_in, y_in = _check_rows("members", members, None)
    x_out, y_out = _check_rows("non_members", non_members, x_in.shape[1])
    if not len(x_in) or not len(x_out):
        raise ValueError(f"members, non_members: need at least one row each, got {len(x_in)} and {len(x_out)}")
    trainer = trainer_for(model_fn, x_in.shape[1])
    weights = _check_weights(trainer, weights)
    lira = method != "loss"
    if lira:
        global_variance, start_weights = _check_shadow_settings(trainer, n_shadows, recipe, global_variance,
                                                                start_weights)
    elif start_weights is not None or population is not None:
        raise ValueError("start_weights, population: only used by the shadow attacks (lira, rmia and their "
                         "offline variants)")
    x_pop, y_pop = (_check_rows("population", population, x_in.shape[1]) if population is not None
                    else (x_in[:0], y_in[:0]))

    rng = np.random.default_rng(seed)
    keep_in, keep_out, left_out = balance(len(x_in), len(x_out), rng)
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
    if method.startswith("rmia"):
        scores = rmia_scores(target, shadow, is_in, online=method == "rmia")
    else:
        scores = lira_scores(target, shadow, is_in, online=method == "lira", global_variance=global_variance)
    # The statistics stay with the result: lira_scores(**attack.info["statistics"], online=False) or
    # rmia_scores(**...) give the other attacks from the same shadows without training them again.
    info.update(n_shadows=n_shadows, global_variance=global_variance, recipe=recipe,
                shadows="central" if shadow_trainer is None else "federated",
                shadow_rows=int(is_in[0].sum() + len(x_extra)),
                statistics={"target": target, "shadow": shadow, "is_in": is_in})
    return MembershipAttack(method, scores, is_member, hospital, round, info=info)


def _check_shadow_settings(trainer: Trainer, n_shadows, recipe, global_variance, start_weights):
    """The shadow attacks' settings, checked: (global_variance resolved, start_weights checked)."""
    check_shadows(n_shadows)
    if not isinstance(recipe, TrainingRecipe):
        raise ValueError(f"recipe: LiRA needs the target's TrainingRecipe to train shadows, got {recipe!r}")
    if global_variance is None:
        global_variance = n_shadows < _MIN_PER_RECORD
    if not global_variance and n_shadows < 4:
        raise ValueError(f"global_variance: per-candidate variances need n_shadows >= 4, got {n_shadows}")
    if start_weights is not None:
        start_weights = _check_weights(trainer, start_weights, "start_weights")
    return global_variance, start_weights


def _central_shadow(trainer: Trainer, recipe: TrainingRecipe, start_weights):
    def train(k, seed, x, y, _rows):
        start = trainer.initial_weights(seed) if start_weights is None else start_weights
        return recipe.fit(trainer, start, x, y, np.random.default_rng([seed, k]))
    return train
