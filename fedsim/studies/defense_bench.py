"""A bench for defenses: one defense against a suite of attacks, as one tidy table (over the one runner)."""

from collections.abc import Callable, Sequence

import pandas as pd
from flwr.serverapp.strategy import Strategy

from fedsim import adversaries as adv
from fedsim.components import Component, as_components
from fedsim.defenses import Wrap
from fedsim.experiment import Experiment
from fedsim.federation import Federation
from fedsim.results import Result
from fedsim.strategies import STRATEGIES, title
from fedsim.studies.grid import check_seeds, run_grid

COLUMNS = ["attack", "defense", "seed", "clean_auroc", "attacked_auroc", "auroc_drop", "backdoor_success",
           "rejected_updates", "honest_rejected", "time_s"]


def default_attacks() -> dict[str, Component]:
    """The standard suite: 20 % of the hospitals attack (one hospital for the backdoor)."""
    return {
        "sign flip": adv.SignFlip(hospitals=0.2),
        "label flip": adv.LabelFlip(hospitals=0.2),
        "Gaussian noise": adv.GaussianNoise(hospitals=0.2),
        "ALIE": adv.ALIE(hospitals=0.2),
        "IPM": adv.IPM(hospitals=0.2),
        "free riders": adv.FreeRider(hospitals=0.2),
        "model replacement": adv.ModelReplacement(hospitals=0.1),
    }


def _defense_settings(defense) -> tuple[str, dict]:
    """Experiment settings (strategy / defenses) and a name for what is benchmarked."""
    if isinstance(defense, str):
        if defense.lower() not in STRATEGIES:
            raise ValueError(f"defense: unknown strategy {defense!r}; allowed: {sorted(STRATEGIES)}, a flwr "
                             "Strategy, a strategy wrapper class or fedsim defense components")
        return title(defense), {"strategy": defense.lower()}
    if isinstance(defense, Strategy):
        return type(defense).__name__, {"strategy": defense}
    if isinstance(defense, Component) or (isinstance(defense, Sequence) and defense
                                          and all(isinstance(d, Component) for d in defense)):
        items = as_components("defense", defense, "defense")
        return " + ".join(d.title or d.name for d in items), {"defenses": items}
    if callable(defense):
        return getattr(defense, "__name__", type(defense).__name__), {"defenses": Wrap(defense)}
    raise ValueError(f"defense: expected a strategy name, a flwr Strategy, a wrapper (strategy -> Strategy) or "
                     f"defense components, got {type(defense).__name__}")


def _outcome(res: Result) -> tuple[float, float, int]:
    """Final AUROC, final backdoor success (NaN without a backdoor) and rejected updates of a run."""
    backdoor = res.tables.get("backdoor")
    success = float(backdoor.backdoor_success.iloc[-1]) if backdoor is not None and len(backdoor) else float("nan")
    return res.final("auroc"), success, int((res.participation.event == "rejected").sum())


def evaluate_defense(
    defense: str | Strategy | Callable[[Strategy], Strategy] | Component | Sequence[Component],
    attacks: Sequence[Component] | dict[str, Component] | None = None,
    federation: Federation | None = None,
    seeds: Sequence[int] = (0,),
    name: str | None = None,
    strategy: str | Strategy = "fedavg",
    cache="default",
    **experiment,
) -> pd.DataFrame:
    """Run ``defense`` against each attack (and without attack) for each seed; one row per (attack, seed).

    ``defense``: a strategy name (``"krum"``), a Flower Strategy instance, a
    strategy wrapper (a class or function taking the strategy, e.g. a
    ``fedsim.defenses.StrategyWrapper`` subclass; it wraps ``strategy``), or
    fedsim defense components. ``attacks``: adversary components, a
    {name: adversary} dict, or None for ``default_attacks()``. Other keyword
    arguments go to every ``Experiment`` (``rounds``, ``learning_rate``...).
    Columns: attack, defense, seed, clean_auroc (same defense, no attack),
    attacked_auroc, auroc_drop, backdoor_success (model replacement only),
    rejected_updates (in ``res.participation``), honest_rejected (replies the
    defense rejected in the clean run, where every hospital is honest: its
    false rejections), time_s (the attacked run).
    Runs are cached (``fedsim.studies.run_grid``; ``cache=None`` turns it off).
    """
    if not isinstance(federation, Federation):
        raise ValueError(f"federation: expected a fedsim Federation, got {type(federation).__name__}")
    if attacks is None:
        attacks = default_attacks()
    if not isinstance(attacks, dict):
        items = as_components("attacks", list(attacks), "adversary")
        attacks = {}
        for attack in items:
            label = attack.title or attack.name
            attacks[label if label not in attacks else f"{label} #{len(attacks) + 1}"] = attack
    attacks = {label: as_components(f"attacks[{label!r}]", attack, "adversary") for label, attack in attacks.items()}
    if "no attack" in attacks:
        raise ValueError("attacks: 'no attack' names the clean run; give the attack another name")
    seeds = check_seeds(seeds)
    label, settings = _defense_settings(defense)
    label = name or label
    if "defenses" in settings and "strategy" not in settings:
        settings["strategy"] = strategy
    base = Experiment(federation=federation, name=label, **{**experiment, **settings})
    runs = {"no attack": base, **{attack_name: base.replace(adversaries=attack)
                                  for attack_name, attack in attacks.items()}}
    trials = {(t.label, t.seed): t for t in run_grid(runs, seeds=seeds, cache=cache, desc=f"defense {label}")}
    rows = []
    for seed in seeds:
        clean_auroc, _, honest_rejected = _outcome(trials["no attack", seed].result)
        for attack_name in attacks:
            trial = trials[attack_name, seed]
            auroc, success, rejected = _outcome(trial.result)
            rows.append({"attack": attack_name, "defense": label, "seed": seed, "clean_auroc": clean_auroc,
                         "attacked_auroc": auroc, "auroc_drop": clean_auroc - auroc, "backdoor_success": success,
                         "rejected_updates": rejected, "honest_rejected": honest_rejected, "time_s": trial.seconds})
    return pd.DataFrame(rows, columns=COLUMNS)


__all__ = ["default_attacks", "evaluate_defense"]
