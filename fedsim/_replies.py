"""Small helpers shared by adversaries, defenses and availability models.

They read and rewrite Flower train messages (``arrays`` + ``metrics``) and
merge the tidy tables several components report under one name.
"""

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from flwr.app import Array, ArrayRecord, Message, RecordDict
from flwr.serverapp.strategy import Strategy

from fedsim.engine import Plan


def weights_of(content: RecordDict) -> list[np.ndarray]:
    """The arrays of a train message or reply (its one ArrayRecord)."""
    return next(iter(content.array_records.values())).to_numpy_ndarrays()


def replace_weights(content: RecordDict, weights: Sequence[np.ndarray]) -> None:
    """Put ``weights`` into the content's ArrayRecord in place, keeping its keys."""
    key, record = next(iter(content.array_records.items()))
    content[key] = ArrayRecord(dict(zip(record.keys(), (Array(np.asarray(w)) for w in weights), strict=True)))


def claimed_examples(content: RecordDict, key: str = "num-examples"):
    """The example count a reply claims (None when there is none)."""
    for record in content.metric_records.values():
        if key in record:
            return record[key]
    return None


def set_claim(content: RecordDict, value, key: str = "num-examples") -> None:
    for record in content.metric_records.values():
        if key in record:
            record[key] = value


def copy_message(message: Message) -> Message:
    """A message with its own copy of the content (the same metadata)."""
    import copy

    return Message(content=copy.deepcopy(message.content), metadata=copy.copy(message.metadata))


def flat(weights: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(w, dtype=np.float64).ravel() for w in weights])


def unflat(vector: np.ndarray, like: Sequence[np.ndarray]) -> list[np.ndarray]:
    out, start = [], 0
    for w in like:
        out.append(vector[start:start + w.size].reshape(w.shape).astype(w.dtype))
        start += w.size
    return out


def add_report(plan: Plan, name: str, report: Callable[[], pd.DataFrame]) -> None:
    """Register ``report`` under ``name``; reports of several components under one name are stacked."""
    previous = plan.reports.get(name)
    if previous is None:
        plan.reports[name] = report
    else:
        plan.reports[name] = lambda: pd.concat([previous(), report()], ignore_index=True)


def positive_int_or_fraction(field: str, value) -> None:
    ok = (isinstance(value, int) and not isinstance(value, bool) and value >= 1) or (
        isinstance(value, float) and 0 < value <= 1)
    if not ok:
        raise ValueError(f"{field}: must be an integer >= 1 or a fraction in (0, 1], got {value!r}")


def number(field: str, value, minimum: float | None = None, strict: bool = False, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum}"
        raise ValueError(f"{field}: must be a finite number{bound}{' or None' if allow_none else ''}, got {value!r}")


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
