"""Flower's own strategies by name, configured for a fedsim experiment.

The robust rules (``krum``, ``multikrum``, ``bulyan``, ``fedtrimmedavg``)
are Flower's, subclassed one per file only to report what they decided about
each reply (``fedsim.engine.decisions``): the audit log says which replies
Krum left out and how much of each the trimmed mean cut, as the rule decided.
``register`` adds a rule of your own by name (CONTRIBUTING.md has a recipe).
"""

import logging

from flwr.serverapp import strategy as flwr_strategy
from flwr.serverapp.strategy import Strategy

from fedsim._flower import flower_log_level
from fedsim.strategies.bulyan import Bulyan
from fedsim.strategies.krum import Krum, MultiKrum
from fedsim.strategies.trimmed_mean import FedTrimmedAvg
from fedsim.validation import Integer, Mapping, NoneValue, Real, Seq, Text, check

STRATEGIES: dict[str, type[Strategy]] = {}  # by registry name (lower case)
TITLES: dict[str, str] = {}  # the name people read (CLI output, the report, notebooks): ``title("fedavg")``
THREATS: dict[str, tuple[str, ...]] = {}  # what the rule itself resists (the report's threat model)


def register(name: str, strategy: type[Strategy], title: str | None = None,
             threats: tuple[str, ...] = ()) -> type[Strategy]:
    """Make the Flower strategy class ``strategy`` available by ``name`` (``Experiment(strategy=name)``, YAML,
    the CLI), with the ``title`` people read and the ``threats`` the rule itself resists."""
    name = check("name", name, Text())
    if not (isinstance(strategy, type) and issubclass(strategy, Strategy)):
        raise ValueError(f"strategy: expected a flwr Strategy class, got {strategy!r}")
    threats = tuple(check("threats", threats, Seq(Text(), what="a list of threat names")))
    STRATEGIES[name.lower()], TITLES[name.lower()], THREATS[name.lower()] = strategy, title or name, threats
    return strategy


# Robust aggregators resist poisoning and backdoors by themselves (weakly against small, targeted updates).
ROBUST = ("poisoning", "backdoor")
register("fedavg", flwr_strategy.FedAvg, "FedAvg")
register("fedprox", flwr_strategy.FedProx, "FedProx")
register("fedadam", flwr_strategy.FedAdam, "FedAdam")
register("fedyogi", flwr_strategy.FedYogi, "FedYogi")
register("fedadagrad", flwr_strategy.FedAdagrad, "FedAdagrad")
register("fedavgm", flwr_strategy.FedAvgM, "FedAvgM")
register("fedmedian", flwr_strategy.FedMedian, "median", ROBUST)
register("fedtrimmedavg", FedTrimmedAvg, "trimmed mean", ROBUST)
register("krum", Krum, "Krum", ROBUST)
register("multikrum", MultiKrum, "Multi-Krum", ROBUST)
register("bulyan", Bulyan, "Bulyan", ROBUST)

# Where Flower's default makes the named strategy a no-op (FedProx with mu=0 is FedAvg).
DEFAULT_OPTIONS: dict[str, dict] = {"fedprox": {"proximal_mu": 0.1}}

# The valid range of the numeric options of Flower's strategies (where Flower would fail at run time or misbehave).
OPTION_RANGES = {
    "min_train_nodes": Integer(min=0), "min_available_nodes": Integer(min=1),
    "num_malicious_nodes": Integer(min=0), "num_nodes_to_select": Integer(min=1),
    "beta": Real(min=0, max=0.5, max_open=True), "proximal_mu": Real(min=0),
    "eta": Real(min=0, min_open=True), "eta_l": Real(min=0, min_open=True), "tau": Real(min=0, min_open=True),
    "beta_1": Real(min=0, max=1, max_open=True), "beta_2": Real(min=0, max=1, max_open=True),
    "server_learning_rate": Real(min=0, min_open=True), "server_momentum": Real(min=0, max=1, max_open=True),
}

# Options fedsim sets itself, and what to do instead.
RESERVED_OPTIONS = {
    "fraction_train": "use Experiment(fraction_train=...) instead",
    "fraction_evaluate": "fedsim evaluates every hospital's test split on the server, Flower's evaluation stays off",
}


def strategy_label(strategy: str | Strategy) -> str:
    """A strategy's name: the one it was given by, or its class name."""
    return strategy if isinstance(strategy, str) else type(strategy).__name__


def title(strategy: str | Strategy) -> str:
    """The display name of a strategy: ``TITLES`` for a named one (``"fedavg"`` -> "FedAvg"), else its label."""
    label = strategy_label(strategy)
    return TITLES.get(label.lower(), label) if isinstance(strategy, str) else label


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
    options = dict(check("strategy_options", options, Mapping(), NoneValue()) or {})
    if isinstance(strategy, Strategy):
        if options:
            raise ValueError("strategy_options: only for a strategy given by name; configure the instance instead")
        return strategy
    if not isinstance(strategy, str) or strategy.lower() not in STRATEGIES:
        raise ValueError(f"strategy: unknown {strategy!r}; allowed: {sorted(STRATEGIES)} or a flwr Strategy instance")
    name = strategy.lower()
    for key, value in options.items():
        if key in RESERVED_OPTIONS:
            raise ValueError(f"strategy_options.{key}: set by fedsim, not an option; {RESERVED_OPTIONS[key]}")
        if key in OPTION_RANGES:
            options[key] = check(f"strategy_options.{key}", value, OPTION_RANGES[key])
    kwargs = {"fraction_train": fraction_train, "fraction_evaluate": 0.0, **DEFAULT_OPTIONS.get(name, {}), **options}
    try:
        with flower_log_level(logging.ERROR):  # no warning that fraction_evaluate=0 skips evaluation
            return STRATEGIES[name](**kwargs)
    except (TypeError, ValueError) as error:  # an unknown option, or a value Flower refuses
        raise ValueError(f"strategy_options: {error}") from None
