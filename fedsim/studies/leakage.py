"""What each defense buys: one attack rerun under several defenses, beside the model's AUROC.

Each defense is a set of Experiment changes (``privacy=``, ``batch_size=``,
``local_steps=``, ...). The attack watches every run as an observer; under
SecAgg+ a gradient inversion attacks the aggregate, the only update that
server sees (one more round runs if needed: it shows in the next broadcast).
The worst case for a hospital (batch size 1, one local step) is no way to
train a model, so the AUROC of each defense can come from a second,
``utility`` run: the same defense under realistic training settings.
"""

import dataclasses
from dataclasses import dataclass

import pandas as pd

from fedsim.attacks import UpdateAttack
from fedsim.components import Component, as_components
from fedsim.experiment import Experiment
from fedsim.plots import plot_leakage, plot_reconstructions
from fedsim.results import Result
from fedsim.studies.grid import run_grid


@dataclass(frozen=True)
class DefenseComparison:
    """The attacked run and the utility run of each defense (the same run when no utility settings)."""

    attacked: dict[str, Result]
    utility: dict[str, Result]

    def table(self) -> pd.DataFrame:
        """Tidy: defense, attack, hospital, round, metric, value, auroc (final global AUROC of the utility run)."""
        frames = [res.attacks.dropna(subset=["metric"]).assign(defense=label, auroc=self.utility[label].final("auroc"))
                  for label, res in self.attacked.items()]
        columns = ["defense", "attack", "hospital", "round", "metric", "value", "auroc"]
        return pd.concat(frames, ignore_index=True)[columns]

    def plot(self, metric: str = "psnr"):
        """The attack metric against AUROC, one point per defense."""
        return plot_leakage(self.table(), metric)

    def plot_reconstructions(self):
        """Each defense's reconstructed scan under the original."""
        first = next(iter(self.attacked.values()))
        return plot_reconstructions(self.attacked, first.federation.image_shape)


def compare_defenses(experiment: Experiment, attack: Component, defenses: dict[str, dict],
                     utility: dict | None = None, cache="default") -> DefenseComparison:
    """Run ``experiment`` once per defense with ``attack`` watching (cached, ``fedsim.studies.run_grid``).

    ``defenses`` maps a label to Experiment changes, e.g. ``{"none": {},
    "DP-SGD z=1": {"privacy": fs.privacy.DPSGD(noise_multiplier=1.0)}}``.
    ``utility``: Experiment changes for a second run per defense that measures
    AUROC (e.g. ``{"batch_size": 16, "local_steps": None, "rounds": 20}``);
    the defense's own changes apply on top of them. Under SecAgg+ an attack
    that can read the aggregate reads it (the only update that server sees),
    with one more round if needed.
    """
    if not isinstance(experiment, Experiment):
        raise ValueError(f"experiment: expected a fedsim Experiment, got {type(experiment).__name__}")
    (attack,) = as_components("attack", attack, "attack")
    if not isinstance(defenses, dict) or not defenses:
        raise ValueError("defenses: give a non-empty {label: {Experiment field: value}} dict")
    if utility is not None and not isinstance(utility, dict):
        raise ValueError(f"utility: expected a dict of Experiment changes or None, got {type(utility).__name__}")
    attacked, measured = {}, {}
    for label, changes in defenses.items():
        if not isinstance(changes, dict):
            raise ValueError(f"defenses[{label!r}]: expected a dict of Experiment changes, "
                             f"got {type(changes).__name__}")
        label = str(label)
        run = experiment.replace(name=label, **changes)
        watcher = attack
        if isinstance(attack, UpdateAttack) and "aggregate" in attack.targets and run.build_plan().secagg is not None:
            watcher = dataclasses.replace(attack, target="aggregate")
            run = run.replace(rounds=max(run.rounds, attack.round + 1))  # the aggregate shows a round later
        attacked[label] = run.replace(observers=[*run.observers, watcher])
        if utility is not None:
            measured[label] = experiment.replace(name=f"{label} (utility)", **{**utility, **changes})
    done = {t.label: t.result for t in run_grid({**attacked, **{f"{k} (utility)": v for k, v in measured.items()}},
                                                 cache=cache, desc="defenses")}
    return DefenseComparison({k: done[k] for k in attacked},
                             {k: done[f"{k} (utility)"] if utility is not None else done[k] for k in attacked})
