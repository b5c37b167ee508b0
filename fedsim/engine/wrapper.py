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

from fedsim.engine.messages import flat, replace_weights, unflat, weights_of


class StrategyWrapper(Strategy):
    """A Flower strategy that delegates to ``strategy`` and may rework the train replies first.

    Override ``process_replies(server_round, replies)`` to filter or rewrite
    the replies before the wrapped strategy aggregates them. During a round,
    ``current_weights`` holds the global weights the hospitals started from
    (so ``update = reply weights - current_weights``; ``update(reply)``,
    ``flat_update(reply)`` and ``set_update(reply, update)`` read and write
    it), ``hospital(reply)`` names a reply's hospital and
    ``reject(server_round, reply, reason)`` records that a reply is left out
    (in the run's participation table); leaving it out is up to you.
    Any attribute the wrapper lacks is read from the wrapped strategy.
    """

    def __init__(self, strategy: Strategy):
        if not isinstance(strategy, Strategy):
            raise ValueError(f"strategy: expected a flwr Strategy, got {type(strategy).__name__}")
        self.strategy = strategy
        self.current_weights: list[np.ndarray] | None = None
        self.grid = None
        self.rejections: list[dict] = []

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
    def hospital(self, reply: Message) -> str:
        """The id of the hospital that sent ``reply``."""
        hospital_of = getattr(self.grid, "hospital_of", None)
        node_id = reply.metadata.src_node_id
        return hospital_of(node_id) if hospital_of else str(node_id)

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

    def reject(self, server_round: int, reply: Message, reason: str) -> None:
        """Record that ``reply`` is not aggregated (the caller leaves it out)."""
        hospital = self.hospital(reply)
        reason = f"{type(self).__name__}: {reason}"
        self.rejections.append({"round": server_round, "hospital": hospital, "reason": reason})
        record = getattr(self.grid, "record", None)  # the run's participation log (ObservingGrid)
        if record is not None:
            record(server_round, hospital, "rejected", reason)

    # --- Flower's Strategy interface, delegated ---------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config, grid) -> Iterable[Message]:
        self.current_weights = arrays.to_numpy_ndarrays()
        self.grid = grid
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        replies = list(replies)
        with_content = [r for r in replies if r.has_content()]
        kept = self.process_replies(server_round, with_content) if with_content else []
        return self.strategy.aggregate_train(server_round, kept + [r for r in replies if not r.has_content()])

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config, grid) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]):
        return self.strategy.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.strategy.summary()
