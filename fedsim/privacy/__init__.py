"""Privacy techniques for ``Experiment(privacy=...)`` (the ``privacy`` registry) and their accounting.

One technique per file; each registers itself under its name (``dpsgd``,
``central_dp``, ``local_dp``, ``secagg``, ``sparsify``). ``ledger``: the
run's privacy ledger (``ledger_of(plan).add(Charge(...))`` for a technique
of your own) and its accountants.
"""

from fedsim.components import REGISTRY
from fedsim.privacy.central_dp import CentralDP
from fedsim.privacy.dpsgd import DPSGD
from fedsim.privacy.ledger import (
           ACCOUNTANTS,
           Charge,
           PrivacyLedger,
           default_delta,
           epsilon,
           installed_ledger,
           ledger_of,
)
from fedsim.privacy.local_dp import LocalDP
from fedsim.privacy.secagg import SecAgg
from fedsim.privacy.sparsify import Sparsify

TECHNIQUES = REGISTRY["privacy"]

__all__ = ["ACCOUNTANTS", "DPSGD", "TECHNIQUES", "CentralDP", "Charge", "LocalDP", "PrivacyLedger", "SecAgg",
           "Sparsify", "default_delta", "epsilon", "installed_ledger", "ledger_of"]
