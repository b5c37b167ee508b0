"""What each mitigation buys against leakage: one attack rerun under several mitigations, beside the AUROC.

A mitigation here is any set of Experiment changes (``privacy=``,
``batch_size=``, ``local_steps=``, ...), not only a ``fedsim.defenses``
component. The attack watches every run as an observer; under
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
class LeakageComparison:
    """The attacked run and the utility run of each mitigation (the same run when no utility settings)."""

    attacked: dict[str, Result]
    utility: dict[str, Result]

    def table(self) -> pd.DataFrame:
        """Tidy: mitigation, attack, hospital, round, metric, value, auroc (final global AUROC of the utility run)."""
        frames = [res.attacks.dropna(subset=["metric"]).assign(mitigation=label,
                                                               auroc=self.utility[label].final("auroc"))
                  for label, res in self.attacked.items()]
        columns = ["mitigation", "attack", "hospital", "round", "metric", "value", "auroc"]
        return pd.concat(frames, ignore_index=True)[columns]

    def plot(self, metric: str = "psnr"):
        """The attack metric against AUROC, one point per mitigation."""
        return plot_leakage(self.table(), metric)

    def plot_reconstructions(self):
        """Each mitigation's reconstructed scan under the original."""
        first = next(iter(self.attacked.values()))
        return plot_reconstructions(self.attacked, first.federation.image_shape)


def compare_mitigations(experiment: Experiment, attack: Component, mitigations: dict[str, dict],
                        utility: dict | None = None, cache="default") -> LeakageComparison:
    """Run ``experiment`` once per mitigation with ``attack`` watching (cached, ``fedsim.studies.run_grid``).

    ``mitigations`` maps a label to Experiment changes, e.g. ``{"none": {},
    "DP-SGD z=1": {"privacy": fs.privacy.DPSGD(noise_multiplier=1.0)}, "batch 16": {"batch_size": 16}}``.
    ``utility``: Experiment changes for a second run per mitigation that
    measures AUROC (e.g. ``{"batch_size": 16, "local_steps": None, "rounds": 20}``);
    the mitigation's own changes apply on top of them. Under SecAgg+ an attack
    that can read the aggregate reads it (the only update that server sees),
    with one more round if needed.
    """
    if not isinstance(experiment, Experiment):
        raise ValueError(f"experiment: expected a fedsim Experiment, got {type(experiment).__name__}")
    (attack,) = as_components("attack", attack, "attack")
    if not isinstance(mitigations, dict) or not mitigations:
        raise ValueError("mitigations: give a non-empty {label: {Experiment field: value}} dict")
    if utility is not None and not isinstance(utility, dict):
        raise ValueError(f"utility: expected a dict of Experiment changes or None, got {type(utility).__name__}")
    attacked, measured = {}, {}
    for label, changes in mitigations.items():
        if not isinstance(changes, dict):
            raise ValueError(f"mitigations[{label!r}]: expected a dict of Experiment changes, "
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
                                                 cache=cache, desc="mitigations")}
    return LeakageComparison({k: done[k] for k in attacked},
                             {k: done[f"{k} (utility)"] if utility is not None else done[k] for k in attacked})


def compare_defenses(experiment: Experiment, attack: Component, defenses: dict[str, dict],
                     utility: dict | None = None, cache="default") -> LeakageComparison:
    """``compare_mitigations`` under its earlier name (``defenses`` are the mitigations)."""
    return compare_mitigations(experiment, attack, defenses, utility, cache)
