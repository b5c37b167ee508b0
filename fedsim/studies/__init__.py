"""Studies: grids of Experiments over the one cached runner (``run_grid``).

- ``compare``: several runs side by side, metrics by round;
- ``sweep``: one experiment with any field varied, over seeds, final metrics beside epsilon;
- ``evaluate_defense``: one defense against a suite of attacks;
- ``compare_mitigations``: one update attack rerun under several mitigations (any Experiment changes),
  beside utility (``compare_defenses`` is its earlier name);
- ``assess``: candidate mitigation sets against a battery of real attacks and an audit, one decision table.
"""

from fedsim.studies.assess import Assessment, assess
from fedsim.studies.compare import compare
from fedsim.studies.defense_bench import default_attacks, evaluate_defense
from fedsim.studies.grid import Trial, cache_key, run_grid
from fedsim.studies.leakage import LeakageComparison, compare_defenses, compare_mitigations
from fedsim.studies.sweep import describe, sweep

__all__ = ["Assessment", "LeakageComparison", "Trial", "assess", "cache_key", "compare", "compare_defenses",
           "compare_mitigations", "default_attacks", "describe", "evaluate_defense", "run_grid", "sweep"]
