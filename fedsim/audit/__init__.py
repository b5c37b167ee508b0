"""Empirical privacy audits (the ``audit`` family): lower bounds on epsilon from canaries in one run.

``Canaries`` inserts canaries into a run and turns what an auditor observes
into a lower bound on epsilon (``bounds``), reported beside the accountant's
epsilon in ``Result.privacy``.
"""

from fedsim.audit.bounds import METHODS, Bound, audit, epsilon_fdp, epsilon_one_run
from fedsim.audit.canaries import AUDIT_TABLE, LEVELS, VIEWS, Canaries, PrivacyClaimWarning

__all__ = ["AUDIT_TABLE", "LEVELS", "METHODS", "VIEWS", "Bound", "Canaries", "PrivacyClaimWarning", "audit",
           "epsilon_fdp", "epsilon_one_run"]
