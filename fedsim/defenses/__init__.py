"""Server-side defenses for ``Experiment(defenses=...)`` (the ``defense`` registry); they compose with DP.

Robust aggregation rules are Flower's own strategies, by name:
``strategy="krum" | "multikrum" | "bulyan" | "fedmedian" | "fedtrimmedavg"``
(``strategy_options={"num_malicious_nodes": 2}`` for the Krum family).
The components here, one per file, add to whatever strategy runs:

- ``update_validator``: a reply screen rejecting implausible updates (an
  absurd norm, an example count other than the hospital's committed one)
  before any strategy sees them; malformed ones (NaN/Inf, wrong keys, shapes
  or dtypes) never get that far (the engine's ``ReplyCheck``). Every
  experiment gets one with its defaults, which reject no honest hospital on
  any shipped configuration; every rejection lands in the run's decision
  record (``res.participation``, the audit log, the report).
- ``norm_bound``: bounds the L2 norm of every update (Sun et al. 2019),
  optionally adding weak Gaussian noise to each update.
- ``trust_score``: FLTrust-style trust scores (Cao et al. 2021) from a small
  root dataset the server trains on itself.
- ``wrap``: any strategy wrapper of your own, e.g. a ``StrategyWrapper``
  subclass written in a notebook cell.

What each defense did, round by round, is ``res.tables["defenses"]``.
"""

from fedsim.defenses.base import DEFENSES
from fedsim.defenses.norm_bound import NormBound, NormBoundStrategy
from fedsim.defenses.trust_score import TrustScore, TrustScoreStrategy
from fedsim.defenses.update_validator import UpdateValidator
from fedsim.defenses.wrap import Wrap
from fedsim.engine import StrategyWrapper

__all__ = ["DEFENSES", "NormBound", "NormBoundStrategy", "StrategyWrapper", "TrustScore", "TrustScoreStrategy",
           "UpdateValidator", "Wrap"]
