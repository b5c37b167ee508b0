"""An empirical privacy audit in one run: canaries in, a lower bound on epsilon out (``Experiment(audit=...)``).

Each of ``n`` canaries is included in the run with probability 1/2; after
the run the auditor scores them from what it saw and ``fedsim.audit.bounds``
turns its guesses into a lower bound on epsilon that holds with probability
``confidence``. A bound above the accountant's epsilon means the claim is
false (a bug in the mechanism or its accounting): the run warns
(``PrivacyClaimWarning``), ``Result.privacy`` flags the row
(``audit_exceeded``), the audit log and the report say so.

The unit of privacy decides what a canary is (``level``; ``"auto"`` reads it
from the privacy charges the run's techniques made):

- ``record`` (DP-SGD): canary records, each a random input with a random
  label, join one hospital's training rows. White-box: the server sees that
  hospital's update every round; the score is how much each round's local
  training raised the canary's logit-scaled confidence in its label (under
  SecAgg+ the server sees only the global models, so the white-box score is
  the black-box one). Black-box: the final model's confidence minus the
  initial model's. The claim audited is that hospital's epsilon. The
  hospital sets ``n`` of its own rows aside (it never holds more rows than
  it has, so no plausibility check rejects it) and is charged at the highest
  sampling rate its batches can then have (batch / the rows left): the
  claim can only be too high, never too low.
- ``hospital`` (central DP): canary hospitals, each sending an update of
  the clipping norm along its own random direction, take part in each round
  at the rate real hospitals are sampled and go through the DP mechanism
  with them. White-box: the sum, over the rounds a canary was scheduled, of
  each released aggregate's step along the canary's direction. Black-box:
  the final model's change along it. The claim audited is the largest
  hospital epsilon.
- ``update`` (local DP): each canary is one update of one canary hospital in
  one round (the clipping norm along its direction if included, no change if
  not), sent through the client-side privacy mods the hospitals run and
  aggregated. White-box: the released update's step along the direction;
  black-box: the final model's. The claim audited is the epsilon of one
  released update.

A lower bound is only as strong as the attack behind it: hospital and update
canaries are random directions in weight space, which overlap when there are
more canaries than a small model has parameters (logreg on ~30 inputs), so
there a bound near 0 says little; on the MLP the same audit of non-private
training exceeds 5.

An audited run trains on its canaries: its model is not the one to release.
Canary hospitals and updates need the plain train messages (not SecAgg+).
"""

from dataclasses import dataclass

import numpy as np

from fedsim.audit.bounds import METHODS
from fedsim.audit.record_canaries import RecordAudit
from fedsim.audit.run import AUDIT_TABLE, LEVELS, PER, VIEWS, PrivacyClaimWarning
from fedsim.audit.update_canaries import UpdateAudit
from fedsim.components import Component
from fedsim.engine import Plan
from fedsim.privacy.ledger import installed_ledger
from fedsim.validation import Integer, NoneValue, Options, Positive, Real, Text, param

__all__ = ["AUDIT_TABLE", "LEVELS", "PER", "VIEWS", "Canaries", "PrivacyClaimWarning"]


@dataclass(frozen=True)
class Canaries(Component):
    """Audit the run's epsilon with ``n`` canaries (see the module docstring for each ``level``).

    ``view``: ``"white-box"`` (the server's view: every round's updates or
    aggregates) or ``"black-box"`` (the final model only). ``confidence``:
    the probability that the lower bound holds. ``method``: which bound fills
    ``epsilon_audited`` and decides the flag: ``"f-dp"`` (Mahloujifar et al.,
    the default: it refutes "as private as the Gaussian mechanism with the
    accountant's epsilon and delta", the curve DP-SGD and central DP are
    close to) or ``"one-run"`` (Steinke et al.: it refutes the (epsilon,
    delta) claim itself, whatever the mechanism, but it cannot exceed about
    log(canaries), below what few hospitals' central DP claims); the audit
    table has both. ``hospital``: where record canaries go (an id or index;
    at most half its rows). ``update_norm``: the canary updates' L2 norm
    (None: the mechanism's clipping norm, or 1.0 without one).

    How strong an audit can be depends on what a canary can stand out in:
    canary updates are random directions of the whole model (thousands of
    parameters), canary records are points in the data's few features, which
    a small model cannot tell apart one by one (expect a weak record-level
    bound on tabular data, however broken the mechanism).
    """

    family = "audit"
    name = "canaries"
    title = "canary audit (one run)"
    threats = ("membership inference",)
    role = "audit"

    n: int = param(256, Integer(min=4))
    view: str = param("white-box", Options(*VIEWS))
    confidence: float = param(0.95, Real(min=0.5, max=1, max_open=True))
    level: str = param("auto", Options(*LEVELS))
    method: str = param("f-dp", Options(*METHODS))
    hospital: str | int = param(0, Integer(min=0), Text())
    update_norm: float | None = param(None, Positive(), NoneValue())
    seed: int = param(0, Integer(min=0))

    def install(self, plan: Plan) -> None:
        ledger = installed_ledger(plan)
        charges = ledger.charges if ledger is not None else []
        level = self.level if self.level != "auto" else (PER[charges[0].per] if charges else "record")
        if level != "record" and plan.secagg is not None:
            raise ValueError(f"level: {level} canaries join the aggregate, which SecAgg+ masks; audit the record "
                             "level, or the run without SecAgg")
        rng = np.random.default_rng([plan.seed, 0xA0D17, self.seed])
        included = rng.random(self.n) < 0.5
        run = (RecordAudit(self, plan, included, rng) if level == "record"
               else UpdateAudit(self, plan, level, included, rng))
        if ledger is not None:
            ledger.annotations.append(run.annotate)
        plan.add_report(AUDIT_TABLE, run.table, name=type(self).__name__)
