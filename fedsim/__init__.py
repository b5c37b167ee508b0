"""fedsim: measure what federated learning leaks, resists and costs, on simulated hospitals.

    import fedsim as fs
    fed = fs.synthetic_federation("icu_mortality", n_hospitals=20, seed=0)
    res = fs.Experiment(federation=fed, strategy="fedavg", rounds=20).run()
    res.final("auroc")
"""

from fedsim import _tf  # noqa: F401  (sets up TensorFlow with Keras 2 before anything else)
from data_synthetic import KNOBS, list_scenarios
from fedsim import adversaries, attacks, availability, baselines, defenses, governance, plots, privacy
from fedsim.bench import evaluate_defense
from fedsim.engine import Exchange, RoundObserver
from fedsim.experiment import Experiment, compare
from fedsim.federation import Federation, synthetic_federation
from fedsim.results import Result
from fedsim.strategies import STRATEGIES
from fedsim.sweeps import sweep

__version__ = "0.1.0"

__all__ = [
    "KNOBS", "STRATEGIES", "list_scenarios", "Exchange", "Experiment", "Federation", "Result", "RoundObserver",
    "adversaries", "attacks", "availability", "baselines", "compare", "defenses", "evaluate_defense", "plots", "privacy",
    "governance", "sweep", "synthetic_federation",
]
