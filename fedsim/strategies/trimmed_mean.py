"""Flower's trimmed mean, reporting the share of each reply's coordinates it trimmed away."""

import numpy as np
from flwr.serverapp import strategy as flwr_strategy

from fedsim.engine.messages import weights_of
from fedsim.strategies.reporting import RemembersGrid


class FedTrimmedAvg(RemembersGrid, flwr_strategy.FedTrimmedAvg):
    """Flower's trimmed mean (``beta`` of the replies cut at each end of every coordinate); each aggregated reply's
    decision carries the share of its coordinates that were cut (``value``)."""

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        valid = [r for r in replies if r.has_content()]
        cut = int(self.beta * len(valid))
        if valid:
            stack = np.stack([np.concatenate([np.ravel(w) for w in weights_of(r.content)]) for r in valid])
            ranks = np.argsort(np.argsort(stack, axis=0, kind="stable"), axis=0, kind="stable")
            trimmed = ((ranks < cut) | (ranks >= len(valid) - cut)).mean(axis=1)
            for reply, share in zip(valid, trimmed, strict=True):
                self.report(server_round, reply, "aggregated", f"{share:.0%} of its coordinates trimmed",
                            value=float(share), by=type(self).__name__)
        return super().aggregate_train(server_round, replies)
