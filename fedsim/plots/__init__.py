"""Every fedsim figure (seaborn), drawn from tidy tables.

Each function returns its Figure, already closed: Jupyter shows it once (as
the cell's value, or with ``display(fig)``), scripts save it with
``fig.savefig``. This package imports nothing else of fedsim.
"""

from fedsim.plots.attacks import plot_leakage, plot_reconstructions, plot_roc
from fedsim.plots.decision import plot_decision
from fedsim.plots.federation import plot_federation
from fedsim.plots.overview import plot_overview
from fedsim.plots.privacy import privacy_cost_by_hospital, privacy_utility
from fedsim.plots.rounds import plot_comparison, plot_rounds

__all__ = ["plot_comparison", "plot_decision", "plot_federation", "plot_leakage", "plot_overview",
           "plot_reconstructions", "plot_roc", "plot_rounds", "privacy_cost_by_hospital", "privacy_utility"]
