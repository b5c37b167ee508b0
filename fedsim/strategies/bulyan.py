"""Flower's Bulyan, reporting which replies its Krum-based selection left out."""

from flwr.serverapp import strategy as flwr_strategy

from fedsim.strategies.reporting import RemembersGrid


class Bulyan(RemembersGrid, flwr_strategy.Bulyan):
    """Flower's Bulyan; its selection rule (Flower's, by default Multi-Krum) reports each reply it left out."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.select, self.selection_rule = self.selection_rule, self.reporting_selection
        self.current: tuple[int, dict] = (0, {})  # the round and its replies, by content

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        self.current = (server_round, {id(r.content): r for r in replies if r.has_content()})
        return super().aggregate_train(server_round, replies)

    def reporting_selection(self, contents, num_malicious_nodes, num_nodes_to_select):
        """Flower's selection, each content it leaves out reported as not selected."""
        chosen = self.select(contents, num_malicious_nodes, num_nodes_to_select)
        kept = {id(c) for c in chosen}
        server_round, owners = self.current
        for content in contents:
            if id(content) not in kept and id(content) in owners:
                self.report(server_round, owners[id(content)], "not selected",
                            f"Bulyan: not among the {len(chosen)} updates its selection kept")
        return chosen
