"""Flower's own strategies by name, configured for a fedsim experiment."""

import logging

from flwr.serverapp import strategy as flwr_strategy
from flwr.serverapp.strategy import Strategy

from fedsim._flower import flower_log_level

STRATEGIES: dict[str, type[Strategy]] = {
    "fedavg": flwr_strategy.FedAvg,
    "fedprox": flwr_strategy.FedProx,
    "fedadam": flwr_strategy.FedAdam,
    "fedyogi": flwr_strategy.FedYogi,
    "fedadagrad": flwr_strategy.FedAdagrad,
    "fedavgm": flwr_strategy.FedAvgM,
    "fedmedian": flwr_strategy.FedMedian,
    "fedtrimmedavg": flwr_strategy.FedTrimmedAvg,
    "krum": flwr_strategy.Krum,
    "multikrum": flwr_strategy.MultiKrum,
    "bulyan": flwr_strategy.Bulyan,
}

# What a named strategy's aggregation rule itself resists (robust aggregators; weak against small, targeted
# updates such as a backdoor).
THREATS: dict[str, tuple[str, ...]] = {name: ("poisoning", "backdoor")
                                       for name in ("fedmedian", "fedtrimmedavg", "krum", "multikrum", "bulyan")}

# Where Flower's default makes the named strategy a no-op (FedProx with mu=0 is FedAvg).
DEFAULT_OPTIONS: dict[str, dict] = {"fedprox": {"proximal_mu": 0.1}}


def strategy_label(strategy: str | Strategy) -> str:
    """A strategy's name: the one it was given by, or its class name."""
    return strategy if isinstance(strategy, str) else type(strategy).__name__


def aggregation_facts(strategy: str | Strategy) -> dict:
    """The aggregation rule in plain data: its name and the threats the rule itself addresses."""
    name = strategy_label(strategy)
    return {"name": name, "threats": list(THREATS.get(name.lower(), ()))}


def make_strategy(strategy: str | Strategy, fraction_train: float, options: dict | None = None) -> Strategy:
    """A Flower strategy instance: given one is used as it is; a name is built.

    Named strategies sample ``fraction_train`` of the hospitals each round and
    skip federated evaluation (fedsim evaluates the global model on every
    hospital's test split on the server). ``options`` go to the constructor,
    e.g. ``{"proximal_mu": 0.01}`` or ``{"eta": 0.05}``.
    """
    if isinstance(strategy, Strategy):
        if options:
            raise ValueError("strategy_options: only for a strategy given by name; configure the instance instead")
        return strategy
    if not isinstance(strategy, str) or strategy.lower() not in STRATEGIES:
        raise ValueError(f"strategy: unknown {strategy!r}; allowed: {sorted(STRATEGIES)} or a flwr Strategy instance")
    name = strategy.lower()
    kwargs = {"fraction_train": fraction_train, "fraction_evaluate": 0.0,
              **DEFAULT_OPTIONS.get(name, {}), **(options or {})}
    try:
        with flower_log_level(logging.ERROR):  # no warning that fraction_evaluate=0 skips evaluation
            return STRATEGIES[name](**kwargs)
    except TypeError as error:
        raise ValueError(f"strategy_options: {error}") from None
