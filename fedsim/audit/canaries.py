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

import math
import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict

from fedsim.audit.bounds import METHODS, Bound, audit
from fedsim.components import Component
from fedsim.engine import Exchange, Plan, RoundObserver, StrategyWrapper
from fedsim.engine.messages import claimed_examples, copy_message, flat, unflat, weights_of
from fedsim.privacy.ledger import composed_epsilon, default_delta, installed_ledger
from fedsim.tables import Schema
from fedsim.training import trainer_for
from fedsim.validation import Integer, NoneValue, Options, Positive, Real, Text, param

LEVELS = ("auto", "record", "hospital", "update")
VIEWS = ("white-box", "black-box")
RECORD_SCALE = 10.0  # a tabular canary record's features: independent normals of this standard deviation
PER = {"step": "record", "release": "hospital", "reply": "update"}  # a privacy charge -> the level auditing it
AUDIT_TABLE = Schema("privacy_audit", (
    "hospital", "technique", "level", "view", "method", "canaries", "guesses", "correct", "epsilon_audited",
    "confidence", "epsilon_claimed", "delta", "epsilon_one_run", "epsilon_fdp", "exceeded"))


class PrivacyClaimWarning(UserWarning):
    """An audit's lower bound on epsilon exceeds the accountant's epsilon: the privacy claim is false."""


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


class AuditRun(RoundObserver):
    """One run's audit: the canaries, what the auditor saw, and (once the run has ended) the bound."""

    level: str
    hospital: str  # the hospital whose claim is audited ("*": every hospital's)

    def __init__(self, audit: Canaries, plan: Plan, included: np.ndarray):
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


def _confidence(trainer, weights, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each canary's logit-scaled confidence in its own label."""
    logits = trainer.logits(weights, x).astype(np.float64)
    return np.where(y > 0.5, logits, -logits)


class RecordAudit(AuditRun):
    """Canary records in one hospital's training rows; scored by the confidence training gives them."""

    level = "record"

    def __init__(self, audit: Canaries, plan: Plan, included: np.ndarray, rng: np.random.Generator):
        super().__init__(audit, plan, included)
        fed = plan.federation
        self.index = plan.federation.index_of(audit.hospital)
        self.hospital = fed.hospitals[self.index]
        rows = int(fed.n_train[self.index])
        if audit.n > rows // 2:
            raise ValueError(f"n: {self.hospital} has {rows} training rows: at most {rows // 2} record canaries "
                             f"fit there, got {audit.n}")
        # The auditor sets n of the hospital's rows aside, so that with its canaries it never holds more rows
        # than it has (the update validator's bound on example counts stays true); DP-SGD is then charged at
        # the highest rate its batches can have there (batch / the rows left), never below the real one.
        self.kept = np.sort(rng.permutation(rows)[audit.n:])
        for charge in installed_ledger(plan).charges if installed_ledger(plan) is not None else []:
            if charge.per == "step":
                charge.sampling_rate[self.hospital] = min(1.0, plan.recipe.batch_size / len(self.kept))
        shape = (audit.n, fed.n_features)
        self.x = (rng.random(shape) if fed.image_shape is not None else RECORD_SCALE * rng.normal(size=shape)
                  ).astype(np.float32)
        self.y = (rng.random(audit.n) < 0.5).astype(np.float32)
        plan.committed[self.hospital] = len(self.kept) + int(included.sum())  # the rows it trains on
        self.trainer = trainer_for(plan.model_fn, fed.n_features)
        self.initial: np.ndarray | None = None
        self.local_gain = np.zeros(audit.n)
        self.seen_updates = 0
        plan.local_data.append(self.add_canaries)
        plan.observers.append(self)

    def add_canaries(self, hospital: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if hospital != self.index:
            return x, y
        return (np.concatenate([x[self.kept], self.x[self.included]]),
                np.concatenate([y[self.kept], self.y[self.included]]))

    def on_exchange(self, exchange: Exchange) -> None:
        if exchange.message_type != "train":
            return
        sent = self._weights(m.content for m in exchange.sent.values())
        if sent is None:
            return
        before = _confidence(self.trainer, sent, self.x, self.y)
        if self.initial is None:
            self.initial = before
        reply = exchange.replies.get(self.hospital)
        returned = self._weights([reply.content]) if reply is not None and reply.has_content() else None
        if returned is not None:
            self.local_gain += _confidence(self.trainer, returned, self.x, self.y) - before
            self.seen_updates += 1

    def _weights(self, contents) -> list[np.ndarray] | None:
        """The first plain set of model weights among message contents (not masked vectors)."""
        shapes = [tuple(v.shape) for v in self.trainer.model.weights]
        for content in contents:
            for record in content.array_records.values():
                try:
                    arrays = record.to_numpy_ndarrays()
                except ValueError:
                    continue
                if [a.shape for a in arrays] == shapes and all(a.dtype.kind == "f" for a in arrays):
                    return arrays
        return None

    def scores(self):
        if self.audit.view == "white-box" and self.seen_updates:
            return self.local_gain, self.included
        final = self.plan.final_weights
        if final is None or self.initial is None:
            return np.zeros(0), np.zeros(0, bool)
        return _confidence(self.trainer, final, self.x, self.y) - self.initial, self.included


class UpdateAudit(AuditRun):
    """Canary hospitals (``hospital`` level) or canary updates (``update`` level) joining each round's aggregate."""

    hospital = "*"

    def __init__(self, audit: Canaries, plan: Plan, level: str, included: np.ndarray, rng: np.random.Generator):
        super().__init__(audit, plan, included)
        self.level = level
        self.rng = rng
        self.mods = plan.mods_at("privacy")  # the client-side privacy a canary hospital runs, outermost first
        self.directions: np.ndarray | None = None
        self.scheduled = np.zeros(audit.n, bool)  # update level: canaries whose round came
        self.taking_part = np.zeros(audit.n, bool)  # this round's
        self.gain = np.zeros(audit.n)
        self.initial: np.ndarray | None = None
        plan.wrap("privacy", lambda inner: CanaryInjection(inner, self))  # outside the DP mechanism: noised with it

    def canary_updates(self, server_round: int, weights: list[np.ndarray], eligible: int, sampled: int):
        """The canaries sending a reply this round: their indices and their updates (unit vectors, scaled)."""
        n = self.audit.n
        if self.directions is None:
            self.initial = flat(weights)
            directions = self.rng.normal(size=(n, self.initial.size))
            self.directions = directions / np.linalg.norm(directions, axis=1, keepdims=True)
        if self.level == "update":  # each canary is one update, of round 1 + (its index mod the rounds)
            self.taking_part = np.arange(n) % self.plan.rounds == server_round - 1
            self.scheduled |= self.taking_part
            sending = np.flatnonzero(self.taking_part)
            # An excluded canary changes next to nothing (a zero update would stop Flower's clipping; float32).
            scale = np.where(self.included[sending], 1.0, 1e-3)
        else:  # canary hospitals, each drawn at the real hospitals' sampling rate; the excluded ones never send
            rate = min(1.0, sampled / max(eligible, 1))
            draw = np.random.default_rng([self.plan.seed, 0xA0D17, self.audit.seed, server_round])
            self.taking_part = draw.random(n) < rate
            sending = np.flatnonzero(self.taking_part & self.included)
            scale = np.ones(len(sending))
        return sending, scale[:, None] * self.directions[sending]

    def released(self, before: list[np.ndarray], after: list[np.ndarray] | None,
                 canaries: dict[int, np.ndarray]) -> None:
        """Score what the auditor saw this round: each canary's released update, or the released aggregate."""
        if self.level == "update":
            for i, update in canaries.items():
                self.gain[i] = float(update @ self.directions[i])
        elif after is not None:
            self.gain += np.where(self.taking_part, self.directions @ (flat(after) - flat(before)), 0.0)

    def scores(self):
        if self.directions is None:
            return np.zeros(0), np.zeros(0, bool)
        released = self.scheduled if self.level == "update" else np.ones(self.audit.n, bool)
        if self.audit.view == "white-box":
            scores = self.gain
        else:
            final = self.plan.final_weights
            scores = self.directions @ (flat(final) - self.initial) if final is not None else np.zeros(self.audit.n)
        return scores[released], self.included[released]

    def norm(self, strategy) -> float:
        """The canary updates' norm: ``update_norm``, else the mechanism's clipping norm, else 1."""
        if self.audit.update_norm is not None:
            return self.audit.update_norm
        while strategy is not None:
            if isinstance(getattr(strategy, "clipping_norm", None), (int, float)):
                return float(strategy.clipping_norm)
            strategy = getattr(strategy, "strategy", None)
        for mod in self.mods:
            if isinstance(getattr(mod, "clipping_norm", None), (int, float)):
                return float(mod.clipping_norm)
        return 1.0


class CanaryInjection(StrategyWrapper):
    """Adds the round's canary replies to the real ones before the wrapped strategy (and its DP) aggregates."""

    def __init__(self, strategy, run: UpdateAudit):
        super().__init__(strategy)
        self.run = run
        self.template: Message | None = None
        self.sampled = 0

    def configure_train(self, server_round, arrays, config, grid):
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self.template, self.sampled = (messages[0] if messages else None), len(messages)
        return messages

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        real = [r for r in replies if r.has_content()]
        if self.template is None or not real:
            return super().aggregate_train(server_round, replies)
        run, before = self.run, self.current_weights
        eligible = len(run.plan.state.eligible.get(server_round, run.plan.federation.hospitals))
        indices, updates = run.canary_updates(server_round, before, eligible, self.sampled)
        norm = run.norm(self.strategy)
        claims = [c for c in (claimed_examples(r.content) for r in real) if c is not None]
        examples = float(np.median(claims)) if claims else 1.0
        metrics = dict(next(iter(real[0].content.metric_records.values())))
        canary_replies, seen = [], {}
        for i, update in zip(indices, updates):
            reply = self._release(before, norm * update, {**dict.fromkeys(metrics, 0.0), "num-examples": examples})
            if reply.has_content():
                canary_replies.append(reply)
                seen[int(i)] = flat(weights_of(reply.content)) - flat(before)
        arrays, aggregated = super().aggregate_train(server_round, replies + canary_replies)
        run.released(before, arrays.to_numpy_ndarrays() if arrays is not None else None, seen)
        return arrays, aggregated

    def _release(self, before: list[np.ndarray], update: np.ndarray, metrics: dict) -> Message:
        """A canary hospital's reply: its update through the client-side privacy mods the hospitals run."""
        def train(message: Message, context: Context) -> Message:
            weights = unflat(flat(before) + update, before)
            return Message(RecordDict({"arrays": ArrayRecord(weights), "metrics": MetricRecord(metrics)}),
                           reply_to=message)

        def through(k: int):
            if k == len(self.run.mods):
                return train
            return lambda message, context: self.run.mods[k](message, context, through(k + 1))

        context = Context(run_id=0, node_id=0, node_config={"partition-id": -1}, state=RecordDict(), run_config={})
        return through(0)(copy_message(self.template), context)
