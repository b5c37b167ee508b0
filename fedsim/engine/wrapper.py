"""``StrategyWrapper``: the base of every fedsim strategy wrapper, and of yours.

A wrapper delegates every Flower ``Strategy`` call to the strategy it wraps
and may rework the train replies before they are aggregated. Write one in a
notebook cell and plug it in with ``fedsim.defenses.Wrap``::

    class DropOpposite(fs.StrategyWrapper):
        def process_replies(self, server_round, replies):
            mean = np.mean([self.flat_update(r) for r in replies], axis=0)
            kept = []
            for reply in replies:
                if self.flat_update(reply) @ mean < 0:
                    self.reject(server_round, reply, "points away from the mean update")
                else:
                    kept.append(reply)
            return kept

    fs.Experiment(..., defenses=fs.defenses.Wrap(DropOpposite))
"""

from collections.abc import Iterable

import numpy as np
from flwr.app import ArrayRecord, Message
from flwr.serverapp.strategy import Strategy

from fedsim.engine.decisions import Reporting
from fedsim.engine.messages import flat, replace_weights, unflat, weights_of


class StrategyWrapper(Reporting, Strategy):
    """A Flower strategy that delegates to ``strategy`` and may rework the train replies first.

    Override ``process_replies(server_round, replies)`` to filter or rewrite
    the replies before the wrapped strategy aggregates them. During a round,
    ``current_weights`` holds the global weights the hospitals started from
    (so ``update = reply weights - current_weights``; ``update(reply)``,
    ``flat_update(reply)`` and ``set_update(reply, update)`` read and write
    it), ``hospital(reply)`` names a reply's hospital and
    ``reject(server_round, reply, reason)`` records that a reply is left out
    (in the run's decision record: participation table, audit log, report);
    leaving it out is up to you. A reply left out without ``reject`` is
    recorded as rejected "without a reason"; ``report`` records any other
    decision (``fedsim.engine.decisions``). Any attribute the wrapper lacks
    is read from the wrapped strategy.
    """

    def __init__(self, strategy: Strategy):
        if not isinstance(strategy, Strategy):
            raise ValueError(f"strategy: expected a flwr Strategy, got {type(strategy).__name__}")
        self.strategy = strategy
        self.current_weights: list[np.ndarray] | None = None
        self.grid = None
        self.reported: list[dict] = []

    def __getattr__(self, name):
        inner = self.__dict__.get("strategy")
        if inner is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(inner, name)

    # --- what subclasses override --------------------------------------------
    def process_replies(self, server_round: int, replies: list[Message]) -> list[Message]:
        """The replies the wrapped strategy aggregates (default: all of them)."""
        return replies

    # --- helpers ---------------------------------------------------------------
    def update(self, reply: Message) -> list[np.ndarray]:
        """The reply's weights minus the global weights of this round."""
        return [np.asarray(w, np.float64) - np.asarray(g, np.float64)
                for w, g in zip(weights_of(reply.content), self.current_weights, strict=True)]

    def flat_update(self, reply: Message) -> np.ndarray:
        """The reply's update as one vector."""
        return flat(self.update(reply))

    def set_update(self, reply: Message, update) -> None:
        """Make ``reply`` carry ``current_weights + update`` (a vector or a list of arrays)."""
        vector = flat(update) if isinstance(update, (list, tuple)) else np.asarray(update, np.float64)
        replace_weights(reply.content, unflat(flat(self.current_weights) + vector, self.current_weights))

    def on_release(self, server_round: int, sampled: int) -> None:
        """An aggregate of ``server_round`` (of ``sampled`` hospitals sampled) was released: what the wrapper
        does then (a DP mechanism charges its ledger). Called after ``aggregate_train`` releases, and by the
        SecAgg+ workflow, which unmasks the aggregate itself. Default: nothing."""

    def reject(self, server_round: int, reply: Message, reason: str) -> None:
        """Record that ``reply`` is not aggregated (the caller leaves it out)."""
        self.report(server_round, reply, "rejected", f"{type(self).__name__}: {reason}")

    # --- Flower's Strategy interface, delegated ---------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config, grid) -> Iterable[Message]:
        self.current_weights = arrays.to_numpy_ndarrays()
        self.remember_grid(grid)
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        replies = list(replies)
        with_content = [r for r in replies if r.has_content()]
        kept = self.process_replies(server_round, with_content) if with_content else []
        rejected = {r["hospital"] for r in self.reported if r["round"] == server_round and r["decision"] == "rejected"}
        left = {self.hospital(r) for r in with_content} - {self.hospital(r) for r in kept} - rejected
        for reply in with_content:
            if self.hospital(reply) in left:
                self.reject(server_round, reply, "left out without a reason")
        return self.strategy.aggregate_train(server_round, kept + [r for r in replies if not r.has_content()])

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config, grid) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]):
        return self.strategy.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.strategy.summary()


class AggregationRecord(StrategyWrapper):
    """The engine's innermost wrapper: records which replies reach the aggregation rule (``aggregated``).

    Whatever a wrapper outside it, a DP mechanism or the rule itself does,
    the decision record then says which replies the rule really received.
    """

    def configure_train(self, server_round: int, arrays: ArrayRecord, config, grid) -> Iterable[Message]:
        self.remember_grid(grid)  # it reads no update: no need to decode the weights
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def process_replies(self, server_round: int, replies: list[Message]) -> list[Message]:
        rule = type(self.strategy).__name__
        for reply in replies:
            self.report(server_round, reply, "aggregated", by=rule)
        return replies

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        replies = list(replies)
        arrays, metrics = super().aggregate_train(server_round, replies)
        if arrays is None:  # the rule released no aggregate (too few replies for Bulyan...): none was aggregated
            for reply in replies:
                if reply.has_content():
                    self.report(server_round, reply, "not selected",
                                f"{type(self.strategy).__name__} released no aggregate this round")
        return arrays, metrics


def unrecorded(strategy: Strategy) -> Strategy:
    """``strategy`` without the engine's ``AggregationRecord`` around it."""
    return strategy.strategy if isinstance(strategy, AggregationRecord) else strategy
