"""What every canary audit shares: its levels and table, and one run's audit turning scores into a bound."""

import math
import warnings
from functools import cached_property

import numpy as np
import pandas as pd

from fedsim.audit.bounds import METHODS, Bound, audit
from fedsim.engine import Plan, RoundObserver
from fedsim.privacy.ledger import composed_epsilon, default_delta, installed_ledger
from fedsim.tables import Schema

LEVELS = ("auto", "record", "hospital", "update")
VIEWS = ("white-box", "black-box")
PER = {"step": "record", "release": "hospital", "reply": "update"}  # a privacy charge -> the level auditing it
AUDIT_TABLE = Schema("privacy_audit", (
    "hospital", "technique", "level", "view", "method", "canaries", "guesses", "correct", "epsilon_audited",
    "confidence", "epsilon_claimed", "delta", "epsilon_one_run", "epsilon_fdp", "exceeded"))


class PrivacyClaimWarning(UserWarning):
    """An audit's lower bound on epsilon exceeds the accountant's epsilon: the privacy claim is false."""



class AuditRun(RoundObserver):
    """One run's audit: the canaries, what the auditor saw, and (once the run has ended) the bound."""

    level: str
    hospital: str  # the hospital whose claim is audited ("*": every hospital's)

    def __init__(self, audit, plan: Plan, included: np.ndarray):
        self.audit, self.plan, self.included = audit, plan, included

    def scores(self) -> tuple[np.ndarray, np.ndarray]:
        """(scores, included) of the canaries the run released."""
        raise NotImplementedError

    def claim(self) -> tuple[str, float, float]:
        """(technique, epsilon claimed, delta) for the audited unit: the accountant's, or inf without DP."""
        ledger, per = installed_ledger(self.plan), {v: k for k, v in PER.items()}[self.level]
        for i, charge in enumerate(ledger.charges if ledger is not None else []):
            if charge.per != per:
                continue
            if self.level == "record":
                return charge.technique, ledger.epsilon(i, self.hospital), charge.delta[self.hospital]
            delta = max(charge.delta.values())
            if self.level == "hospital":
                return charge.technique, max(ledger.epsilon(i, h) for h in ledger.hospitals), delta
            return charge.technique, composed_epsilon(charge.accounted_noise, ((("gaussian",), 1),), delta,
                                                      charge.accountant, charge.relation), delta
        units = self.plan.federation.n_hospitals
        if self.level == "record":
            i = self.plan.federation.hospitals.index(self.hospital)
            units = int(self.plan.federation.n_train[i])
        return "", math.inf, default_delta(units)

    @cached_property
    def row(self) -> dict:
        """The audit's one row (``AUDIT_TABLE``), computed once, after the run; warns when the claim is refuted."""
        technique, claimed, delta = self.claim()
        scores, included = self.scores()
        a = self.audit
        if len(scores) < 2:
            bounds = {m: Bound(0.0, a.confidence, m, len(scores), 0, 0) for m in METHODS}
        else:
            bounds = {m: audit(scores, included, delta, a.confidence, m) for m in METHODS}
        chosen = bounds[a.method]
        exceeded = bool(chosen.epsilon > claimed)
        if exceeded:
            warnings.warn(f"audit: epsilon >= {chosen.epsilon:.3g} ({a.confidence:.0%} confidence, {self.level} "
                          f"level, {a.view}) exceeds the accountant's epsilon {claimed:.3g} for {technique}: the "
                          f"privacy claim is false", PrivacyClaimWarning, stacklevel=2)
        return {"hospital": self.hospital, "technique": technique, "level": self.level, "view": a.view,
                "method": a.method, "canaries": chosen.canaries, "guesses": chosen.guesses,
                "correct": chosen.correct, "epsilon_audited": chosen.epsilon, "confidence": a.confidence,
                "epsilon_claimed": claimed, "delta": delta, "epsilon_one_run": bounds["one-run"].epsilon,
                "epsilon_fdp": bounds["f-dp"].epsilon, "exceeded": exceeded}

    def table(self) -> pd.DataFrame:
        return AUDIT_TABLE.frame([self.row])

    def annotate(self, privacy: pd.DataFrame) -> pd.DataFrame:
        """The privacy table with this audit's bound on the rows of the technique and hospitals it audited."""
        row = self.row
        rows = privacy.technique == row["technique"]
        if self.hospital != "*":
            rows &= privacy.hospital == self.hospital
        privacy = privacy.copy()
        privacy.loc[rows, ["epsilon_audited", "audit_confidence", "audit_level", "audit_exceeded"]] = (
            row["epsilon_audited"], row["confidence"], row["level"], row["exceeded"])
        return privacy
