"""Membership inference on fedsim runs: a run's final global model, or one hospital's update."""

import dataclasses
import tempfile
import warnings

import numpy as np

from fedsim.attacks.membership.lira import METHODS, balance, membership_inference, run_attack
from fedsim.attacks.membership.outcome import MembershipAttack
from fedsim.federation import Federation
from fedsim.models import ModelFn
from fedsim.recipe import TrainingRecipe
from fedsim.results import Result
from fedsim.validation import Options, check


def attack_result(res, hospital: str | None = None, *, method: str = "lira", n_shadows: int = 16,
                  recipe: TrainingRecipe | None = None, experiment=None, global_variance: bool | None = None,
                  seed: int = 0, progress: bool = True, run_shadow=None) -> MembershipAttack:
    """Membership inference on a run's final global model.

    Members: the training rows of every hospital (``hospital=None``) or of one;
    non-members: their held-out test rows, balanced within each hospital.
    LiRA's shadows train centrally with ``recipe`` (default: derived from
    ``res.config``, ``rounds * local_epochs`` epochs and the run's DP-SGD), or,
    given the run's ``experiment``, are real federated runs of it on shadow
    federations (``n_shadows`` runs). Every other training row of the
    federation trains every shadow. ``metrics(per_hospital=True)`` breaks a
    ``hospital=None`` attack down by hospital. ``run_shadow(experiment) ->
    Result`` runs each federated shadow (default: ``experiment.run()``; the
    studies pass their cached runner).
    """
    if not isinstance(res, Result):
        raise ValueError(f"res: expected a fedsim Result, got {type(res).__name__}")
    check("method", method, Options(*METHODS))
    fed = res.federation
    chosen = (set(range(fed.n_hospitals)) if hospital is None
              else {fed.index_of(hospital, ids_only=True, also="None (all)")})
    if experiment is not None:
        _check_experiment(experiment, fed)
    if method != "loss" and recipe is None:
        if experiment is not None:
            recipe = TrainingRecipe.from_experiment(experiment)
        else:
            recipe = TrainingRecipe.from_config(res.config)
            _warn_unmimicked(res.config)

    in_rows, out_rows, extra_rows = _candidate_rows(fed, chosen, seed)
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
            shadow_trainer = _federated_shadow(experiment, np.concatenate([in_site, out_site]), extra_site, folder,
                                               run_shadow or (lambda shadow: shadow.run()))
        # Already balanced, so membership_inference keeps the candidates in this order.
        attack = run_attack(
            res.model_fn, res.weights, (fed.x_train[in_rows], fed.y_train[in_rows]),
            (fed.x_test[out_rows], fed.y_test[out_rows]), method=method, recipe=recipe, n_shadows=n_shadows,
            start_weights=None, population=(fed.x_train[extra_rows], fed.y_train[extra_rows]) if lira else None,
            global_variance=global_variance, hospital=hospital or "all", round=final_round, seed=seed,
            progress=progress, shadow_trainer=shadow_trainer,
        )
    attack.groups = np.array(fed.hospitals)[np.concatenate([in_site, out_site])]
    return attack


def _check_experiment(experiment, fed) -> None:
    """Refuse an ``experiment`` that is not the fedsim Experiment whose federation made the run."""
    if not callable(getattr(experiment, "replace", None)) or not hasattr(experiment, "federation"):
        raise ValueError(f"experiment: expected the fedsim Experiment of this run, got {type(experiment).__name__}")
    if experiment.federation is not fed:
        raise ValueError("experiment: its federation is not the one of res; pass the Experiment that made res")


def _candidate_rows(fed, chosen: set[int], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Members (training rows), non-members (test rows) and extra rows (population) of the attack.

    The chosen hospitals' training and test rows, balanced within each
    hospital; every other training row (left out by balancing, other
    hospitals') is extra.
    """
    rng = np.random.default_rng([seed, 1])
    in_rows, out_rows, extra_rows = [], [], []
    for i in range(fed.n_hospitals):
        train_lo, train_hi = fed.train_offsets[i], fed.train_offsets[i + 1]
        if i in chosen:
            test_lo, test_hi = fed.test_offsets[i], fed.test_offsets[i + 1]
            keep_in, keep_out, left_out = balance(train_hi - train_lo, test_hi - test_lo, rng)
            in_rows.append(train_lo + keep_in)
            out_rows.append(test_lo + keep_out)
            extra_rows.append(train_lo + left_out)
        else:
            extra_rows.append(np.arange(train_lo, train_hi))
    in_rows, out_rows, extra_rows = (np.concatenate(r).astype(np.int64) for r in (in_rows, out_rows, extra_rows))
    return in_rows, out_rows, extra_rows


def _warn_unmimicked(config: dict) -> None:
    """Warn when central shadows cannot mimic parts of a federated run.

    Mimicked: local training settings (DP-SGD among them, from
    ``client_training``), observers, and the update validator (it only
    rejects implausible replies: an honest run's shadows meet none).
    """
    others = [c["name"] for c in config.get("components", ())
              if c["family"] != "attack" and c["name"] not in ("dpsgd", "update_validator")]
    if others or config.get("strategy") not in (None, "fedavg"):
        warnings.warn(f"attack_result: shadows are trained centrally and ignore strategy "
                      f"{config.get('strategy')!r} and components {others}; pass experiment= for federated "
                      f"shadows", stacklevel=3)


def _federated_shadow(experiment, candidate_sites: np.ndarray, extra_sites: np.ndarray, folder: str, run_shadow):
    """Shadows as federated runs of ``experiment``: each hospital trains on its share of the shadow's rows.

    The sites are the hospital index of every candidate and every extra row, in
    the order a shadow's rows are built (its IN candidates, then the extras).
    Each shadow's audit log goes to ``folder``; ``run_shadow`` runs it.
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
        return run_shadow(run).weights

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
    if not isinstance(federation, Federation):
        raise ValueError(f"federation: expected a fedsim Federation, got {type(federation).__name__}")
    i = federation.index_of(hospital, ids_only=True)
    return membership_inference(
        model_fn, weights, federation.train_rows(i), federation.test_rows(i), method=method, recipe=recipe,
        n_shadows=n_shadows, start_weights=start_weights if method != "loss" else None,
        global_variance=global_variance, hospital=hospital, round=round, seed=seed, progress=progress,
    )
