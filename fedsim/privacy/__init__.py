"""Privacy techniques for ``Experiment(privacy=...)`` and their accounting."""

from fedsim.privacy.accounting import ACCOUNTANTS, PrivacyLedger, default_delta, epsilon
from fedsim.privacy.secagg import SecAgg
from fedsim.privacy.sparsify import Sparsify
from fedsim.privacy.techniques import DPSGD, CentralDP, LocalDP

__all__ = ["ACCOUNTANTS", "DPSGD", "CentralDP", "LocalDP", "PrivacyLedger", "SecAgg", "Sparsify", "default_delta", "epsilon"]
