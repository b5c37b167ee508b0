"""fedsim: measure what federated learning leaks, resists and costs, on simulated hospitals.

    import fedsim as fs
    fed = fs.synthetic_federation("icu_mortality", n_hospitals=20, seed=0)
    res = fs.Experiment(federation=fed, strategy="fedavg", rounds=20).run()
    res.final("auroc")

Extension points: ``Component`` (a technique, attack or defense of your
own, registered by name), ``StrategyWrapper`` (a server-side defense),
``Turn`` (what an adversary acts on), ``Plan`` (what a component installs
into) and ``RoundObserver`` (anything that watches the exchanges).
"""

from data_synthetic import KNOBS, list_scenarios
from fedsim import (
    _tf,  # noqa: F401  (sets up TensorFlow with Keras 2 before anything else)
    adversaries,
    attacks,
    audit,
    availability,
    baselines,
    defenses,
    deploy,  # registers the deployment and simulation engines
    governance,
    plots,
    privacy,
    studies,
)
from fedsim.adversaries import Turn
from fedsim.claims import claim
from fedsim.components import REGISTRY, Component, from_settings
from fedsim.engine import Exchange, Plan, RoundObserver, StrategyWrapper
from fedsim.experiment import Experiment
from fedsim.federation import Federation, synthetic_federation
from fedsim.results import Result
from fedsim.strategies import STRATEGIES
from fedsim.studies import compare, evaluate_defense, sweep

__version__ = "0.1.0"

# Kept where earlier code found it: the leakage study lives with the other studies now.
attacks.compare_defenses = studies.compare_defenses

__all__ = [
    "KNOBS", "REGISTRY", "STRATEGIES", "Component", "Exchange", "Experiment", "Federation", "Plan", "Result",
    "RoundObserver", "StrategyWrapper", "Turn", "adversaries", "attacks", "audit", "availability", "baselines", "claim",
    "compare", "defenses", "deploy", "evaluate_defense", "from_settings", "governance", "list_scenarios", "plots",
    "privacy", "studies", "sweep", "synthetic_federation",
]
