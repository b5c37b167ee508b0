"""What each defense buys: one attack rerun under several defenses, beside the model's AUROC.

Each defense is a set of Experiment changes (``privacy=``, ``batch_size=``,
``local_steps=``, ...). The attack watches every run as an observer; under
SecAgg+ a gradient inversion attacks the aggregate, the only update that
server sees. ``defense_table`` is tidy: one row per (defense, metric), with
the AUROC that run's final global model reaches.
"""

import dataclasses

import pandas as pd

from fedsim.attacks.curious_server import GradientInversion
from fedsim.components import Component, as_components
from fedsim.experiment import Experiment
from fedsim.privacy import SecAgg
from fedsim.results import Result


def run_defenses(experiment: Experiment, attack: Component, defenses: dict[str, dict]) -> dict[str, Result]:
    """Run ``experiment`` once per defense with ``attack`` watching; {label: Result}.

    ``defenses`` maps a label to Experiment changes, e.g. ``{"none": {},
    "DP-SGD z=1": {"privacy": fs.privacy.DPSGD(noise_multiplier=1.0)}}``.
    """
    if not isinstance(experiment, Experiment):
        raise ValueError(f"experiment: expected a fedsim Experiment, got {type(experiment).__name__}")
    as_components("attack", attack)
    if not isinstance(defenses, dict) or not defenses:
        raise ValueError("defenses: give a non-empty {label: {Experiment field: value}} dict")
    results = {}
    for label, changes in defenses.items():
        if not isinstance(changes, dict):
            raise ValueError(f"defenses[{label!r}]: expected a dict of Experiment changes, got {type(changes).__name__}")
        run = experiment.replace(name=str(label), **changes)
        watcher = attack
        if isinstance(attack, GradientInversion) and any(
                isinstance(c, SecAgg) for c in as_components("privacy", run.privacy)):
            watcher = dataclasses.replace(attack, target="aggregate")
        results[str(label)] = run.replace(observers=[*run.observers, watcher]).run()
    return results


def defense_table(results: dict[str, Result]) -> pd.DataFrame:
    """The attack rows of each run with its label and final AUROC.

    Columns: defense, attack, hospital, round, metric, value, auroc.
    """
    frames = [res.attacks.dropna(subset=["metric"]).assign(defense=label, auroc=res.final("auroc"))
              for label, res in results.items()]
    return pd.concat(frames, ignore_index=True)[["defense", "attack", "hospital", "round", "metric", "value", "auroc"]]
