"""Hospitals that drop out, straggle or fail, for ``Experiment(availability=...)`` (the ``availability`` registry).

The experiment always goes on with the hospitals that replied; who was
missing, and why, is ``res.participation`` (event ``failed`` for a hospital
that dropped out, missed the deadline or crashed; ``rejected`` for a round a
participation policy discarded). One model per file:

- ``dropout``: each round, each hospital is offline with probability ``rate``.
- ``stragglers``: per-hospital compute and network profiles give a simulated
  time per round; hospitals slower than ``deadline_s`` are left out.
  ``res.tables["timing"]`` (per hospital) and ``res.tables["rounds"]``
  (simulated wall-clock per round) report it, with or without a deadline.
- ``crash``: the ClientApp raises mid-round (after training).
- ``min_participation``: a round with fewer usable replies than the minimum is
  not aggregated (the global model stays as it was).

All random draws derive from the experiment seed, the round and the hospital.
"""

from fedsim.availability.base import Unavailable
from fedsim.availability.crash import Crash
from fedsim.availability.dropout import Dropout
from fedsim.availability.min_participation import MinParticipation
from fedsim.availability.stragglers import Stragglers

__all__ = ["Crash", "Dropout", "MinParticipation", "Stragglers", "Unavailable"]
