"""Governance: a tamper-evident audit log, institution policies, and the risk report.

- ``audit``: hash-chained JSON Lines (optionally signed) and ``verify``;
- ``policies``: per-hospital ``Policy`` (``Experiment(policies=...)``);
- ``trail``: what every experiment writes to its ``audit.jsonl``;
- ``report``: ``report(results_dir)`` -> ``report.md`` + self-contained ``report.html``.
"""

from fedsim.governance.audit import AuditWriter, Verification, load_key, read, verify
from fedsim.governance.policies import Policies, Policy
from fedsim.governance.report import report
from fedsim.governance.trail import Governance, results_folder

__all__ = ["AuditWriter", "Governance", "Policies", "Policy", "Verification", "load_key", "read", "report",
           "results_folder", "verify"]
