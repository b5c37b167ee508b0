"""What fedsim's subclasses of Flower's robust rules share: they report their decisions on the run's Grid."""

from fedsim.engine.decisions import Reporting


class RemembersGrid(Reporting):
    """A Flower strategy that keeps the run's Grid (``configure_train``), to report its decisions on it."""

    def configure_train(self, server_round, arrays, config, grid):
        self.remember_grid(grid)
        return super().configure_train(server_round, arrays, config, grid)
