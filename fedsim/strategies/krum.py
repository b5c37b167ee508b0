"""Flower's Krum and Multi-Krum, reporting which replies their selection left out."""

from flwr.serverapp import strategy as flwr_strategy
from flwr.serverapp.strategy.multikrum import select_multikrum
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from fedsim.strategies.reporting import RemembersGrid


class Selecting(RemembersGrid):
    """Multi-Krum's aggregation with Flower's own ``select_multikrum``, reporting each reply it did not select."""

    def aggregate_train(self, server_round, replies):
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid:
            return None, None
        chosen = select_multikrum([m.content for m in valid], num_malicious_nodes=self.num_malicious_nodes,
                                  num_nodes_to_select=self.num_nodes_to_select)
        kept = {id(c) for c in chosen}
        for reply in valid:
            if id(reply.content) not in kept:
                self.report(server_round, reply, "not selected",
                            f"{type(self).__name__}: not among the {len(chosen)} update(s) closest to the others")
        return aggregate_arrayrecords(chosen, self.weighted_by_key), self.train_metrics_aggr_fn(
            chosen, self.weighted_by_key)


class Krum(Selecting, flwr_strategy.Krum):
    """Flower's Krum: the one update closest to its neighbours is aggregated, the others are not selected."""


class MultiKrum(Selecting, flwr_strategy.MultiKrum):
    """Flower's Multi-Krum: the ``num_nodes_to_select`` updates closest to their neighbours, averaged."""
