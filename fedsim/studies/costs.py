"""What a candidate costs: the bytes its messages carry, and the training work (FLOPs) its hospitals do.

Both are counted, not timed, so that they are stable across machines and runs; wall time is measured
beside them, labelled as such (``fedsim.studies.assess``).
"""

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord

from fedsim.engine import Exchange, RoundObserver
from fedsim.experiment import Experiment
from fedsim.results import Result

FLOPS_PER_EXAMPLE = {"plain": 6, "DP-SGD": 8}  # x parameters: forward 2, backward 4; DP-SGD's per-example norms 2


def message_bytes(content) -> int:
    """The payload of a message: array bytes, byte strings of configs (SecAgg+'s keys, shares, masked vectors),
    8 bytes per other config or metric value."""
    total = 0
    for record in content.values():
        if isinstance(record, ArrayRecord):
            total += sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a in record.values())
        elif isinstance(record, (ConfigRecord, MetricRecord)):
            for value in record.values():
                items = value if isinstance(value, list) else [value]
                total += sum(len(v) if isinstance(v, (bytes, str)) else 8 for v in items)
    return total


class Traffic(RoundObserver):
    """Counts the bytes of every message exchanged (sent and replied)."""

    def __init__(self):
        self.bytes = 0

    def on_exchange(self, exchange: Exchange) -> None:
        for message in (*exchange.sent.values(), *exchange.replies.values()):
            if message.has_content():
                self.bytes += message_bytes(message.content)


def traffic(experiment: Experiment) -> float:
    """Bytes of every message of one round of ``experiment`` (a one-round run, uncached), times its rounds."""
    counter = Traffic()
    experiment.replace(rounds=1, observers=[counter], name=f"{experiment.label} (traffic)").run()
    return float(counter.bytes * experiment.rounds)


def work(experiment: Experiment, results: list[Result]) -> float:
    """Training FLOPs of ``results`` (mean over seeds): each local step of each reply the server received,
    ``FLOPS_PER_EXAMPLE`` x parameters x the step's batch."""
    plan = experiment.build_plan()
    fed = experiment.federation
    per_example = FLOPS_PER_EXAMPLE["DP-SGD" if plan.recipe.dp is not None else "plain"]
    totals = []
    for res in results:
        parameters = sum(int(np.prod(w.shape)) for w in res.weights)
        decided = res.tables["decisions"]
        received = decided[decided.decision.isin(["aggregated", "rejected", "not selected"])
                           & (decided.hospital != "*")].drop_duplicates(["round", "hospital"])
        rows = {h: int(n) for h, n in zip(fed.hospitals, fed.n_train)}
        examples = sum(plan.recipe.steps(rows[h]) * min(experiment.batch_size, rows[h]) for h in received.hospital)
        totals.append(per_example * parameters * examples)
    return float(np.mean(totals))
