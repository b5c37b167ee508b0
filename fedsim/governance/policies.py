"""Institution policies: what each hospital allows, enforced by the engine and logged.

``Experiment(policies={"h03": Policy(max_epsilon=2.0, min_records=300), "default": Policy(...)})``

A hospital's own Policy replaces the ``"default"`` one as a whole (fields
are not merged); hospitals with neither have no policy.

- ``max_epsilon``: the hospital takes part in a round only while that round
  keeps every DP mechanism's epsilon for it at or below the cap; without any
  DP technique in the run its epsilon is unbounded, so it never takes part.
- ``min_records``: below this many records (train + test), no metric about the
  hospital is released: its rows leave ``Result.metrics`` and the report.
- ``evaluate=False``: its test split is never used (neither for its own
  metrics nor in the pooled global test set).
- ``share_metrics=False``: its per-hospital metrics are computed for no one
  and suppressed from outputs; its test rows still count in the global metric.

Each enforcement becomes a row of ``Result.tables["policy"]`` and an entry of
the audit log. The audit log itself is an internal governance record and
keeps per-hospital facts (update norms, epsilons) for the auditor.
"""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedsim.engine import Plan
from fedsim.federation import Federation
from fedsim.privacy.ledger import installed_ledger
from fedsim.tables import Schema
from fedsim.validation import Boolean, Integer, NoneValue, Positive, check_fields, param

POLICY = Schema("policy", ("round", "hospital", "policy", "action", "detail"))


@dataclass(frozen=True)
class Policy:
    """One institution's conditions for taking part (see the module docstring)."""

    max_epsilon: float | None = param(None, Positive(), NoneValue())
    min_records: int = param(0, Integer(min=0))
    evaluate: bool = param(True, Boolean())
    share_metrics: bool = param(True, Boolean())

    def __post_init__(self):
        check_fields(self)


def resolve_policies(policies, federation: Federation) -> dict[str, Policy]:
    """``policies`` (hospital or "default" -> Policy or a mapping of its fields) as one Policy per hospital."""
    if policies is None:
        return {}
    if not isinstance(policies, dict):
        raise ValueError(f"policies: expected a mapping of hospital id (or 'default') to a Policy, "
                         f"got {type(policies).__name__}")
    allowed = {"default", *federation.hospitals}
    checked = {}
    for key, policy in policies.items():
        if key not in allowed:
            raise ValueError(f"policies: unknown hospital {key!r}; allowed: 'default' or a hospital id")
        if isinstance(policy, dict):
            fields = {f.name for f in dataclasses.fields(Policy)}
            unknown = set(policy) - fields
            if unknown:
                raise ValueError(f"policies[{key!r}]: unknown keys {sorted(unknown)}; allowed: {sorted(fields)}")
            policy = Policy(**policy)
        if not isinstance(policy, Policy):
            raise ValueError(f"policies[{key!r}]: expected a Policy or a mapping, got {type(policy).__name__}")
        checked[key] = policy
    default = checked.get("default")
    return {h: checked.get(h, default) for h in federation.hospitals if checked.get(h, default) is not None}


def without_test_rows(fed: Federation, hospitals: set[str]) -> Federation:
    """The federation with the test splits of ``hospitals`` removed (their train rows stay)."""
    keep = np.ones(len(fed.y_test), dtype=bool)
    sizes = np.diff(fed.test_offsets).copy()
    for i, hospital in enumerate(fed.hospitals):
        if hospital in hospitals:
            keep[fed.test_offsets[i]:fed.test_offsets[i + 1]] = False
            sizes[i] = 0
    reported = fed.reported
    if reported is not None:  # a party without every hospital's rows: the roster says who is evaluated
        reported = reported.assign(n_test=np.where(reported.index.isin(list(hospitals)), 0, reported["n_test"]))
    return dataclasses.replace(fed, x_test=fed.x_test[keep], y_test=fed.y_test[keep],
                               test_offsets=np.concatenate([[0], np.cumsum(sizes)]), reported=reported)


class PolicyEnforcer:
    """The per-run state of ``Policies``: eligibility, evaluation split, releases, enforcement log."""

    def __init__(self, policies: dict[str, Policy], plan: Plan):
        self.policies = policies
        self.plan = plan
        fed = plan.federation
        self.records = {h: int(fed.n_train[i] + fed.n_test[i]) for i, h in enumerate(fed.hospitals)}
        self.enforcements: list[dict] = []
        self._seen: set[tuple] = set()
        self._drained = 0

    def _enforce(self, server_round: int, hospital: str, policy: str, action: str, detail: str) -> None:
        key = (server_round, hospital, policy, action)
        if key not in self._seen:
            self._seen.add(key)
            self.enforcements.append({"round": server_round, "hospital": hospital, "policy": policy,
                                      "action": action, "detail": detail})

    def eligible(self, hospital: str) -> str | None:
        """Why ``hospital`` may not take part: a max_epsilon in a run without DP (its epsilon is unbounded)."""
        policy = self.policies.get(hospital)
        if policy is None or policy.max_epsilon is None or installed_ledger(self.plan) is not None:
            return None
        reason = f"policy: max_epsilon {policy.max_epsilon:g}, but the run has no DP (epsilon unbounded)"
        self._enforce(self.plan.state.upcoming, hospital, "max_epsilon", "excluded from round", reason)
        return reason

    def _sync(self) -> None:
        """The ledger's exclusions made for a policy's max_epsilon, as enforcements."""
        ledger = installed_ledger(self.plan)
        for (server_round, hospital), (source, reason) in (ledger.exclusions_made.items() if ledger else ()):
            if source == "policy":
                self._enforce(server_round, hospital, "max_epsilon", "excluded from round", reason)

    def install(self) -> None:
        plan = self.plan
        no_eval = {h for h, p in self.policies.items() if not p.evaluate}
        if no_eval:
            fed = plan.federation
            for i, hospital in enumerate(fed.hospitals):
                if hospital in no_eval:
                    n = int(fed.n_test[i])
                    self._enforce(0, hospital, "evaluate", "test split left out of evaluation",
                                  f"policy: evaluate=false; its {n} test rows are not used")
            plan.federation = without_test_rows(fed, no_eval)
        if any(p.max_epsilon is not None for p in self.policies.values()):
            ledger = installed_ledger(plan)
            if ledger is None:
                plan.eligibility.append(self.eligible)
            else:  # the ledger keeps it at or below its cap, on the cohort as a whole
                for hospital, policy in self.policies.items():
                    if policy.max_epsilon is not None:
                        ledger.cap(hospital, policy.max_epsilon, "policy")
        plan.add_report(POLICY, self.table, name="Policies")

    def suppressed(self) -> dict[str, str]:
        """Hospitals whose metrics may not be released, with the policy that says so."""
        out = {}
        for hospital, policy in self.policies.items():
            if not policy.evaluate:
                out[hospital] = "policy: evaluate=false (not evaluated)"
            elif not policy.share_metrics:
                out[hospital] = "policy: share_metrics=false"
            elif self.records[hospital] < policy.min_records:
                out[hospital] = f"policy: {self.records[hospital]} records < min_records {policy.min_records}"
        return out

    def release(self, metrics: pd.DataFrame) -> pd.DataFrame:
        """``metrics`` without the rows about hospitals whose policy forbids releasing them."""
        suppressed = self.suppressed()
        for hospital, reason in suppressed.items():
            rows = int((metrics.scope == hospital).sum())
            policy = "evaluate" if "evaluate" in reason else "share_metrics" if "share" in reason else "min_records"
            self._enforce(self.plan.state.completed_rounds, hospital, policy, "metrics suppressed",
                          f"{reason}; {rows} metric rows withheld")
        return metrics[~metrics.scope.isin(suppressed)].reset_index(drop=True)

    def drain(self) -> list[dict]:
        """Enforcements not yet handed out (the audit log writes each once)."""
        self._sync()
        new = self.enforcements[self._drained:]
        self._drained = len(self.enforcements)
        return new

    def table(self) -> pd.DataFrame:
        self._sync()
        return POLICY.frame(self.enforcements)


class Policies:
    """Every hospital's ``Policy``, installed into a run (``Experiment(policies=...)`` does this)."""

    def __init__(self, policies: dict, federation: Federation):
        self.policies = resolve_policies(policies, federation)

    def install(self, plan: Plan) -> PolicyEnforcer:
        enforcer = PolicyEnforcer(self.policies, plan)
        enforcer.install()
        return enforcer

    def __repr__(self) -> str:
        return f"Policies({self.policies!r})"


def policy_table(policies: dict[str, Policy]) -> list[dict]:
    return [{"hospital": h, **dataclasses.asdict(p),
             "max_epsilon": p.max_epsilon if p.max_epsilon is not None else math.inf}
            for h, p in policies.items()]
