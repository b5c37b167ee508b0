"""Hospital and update canaries: random model directions sent as updates, scored by the releases' steps along them."""


import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict

from fedsim.audit.run import AuditRun
from fedsim.engine import Plan, StrategyWrapper
from fedsim.engine.messages import claimed_examples, copy_message, flat, unflat, weights_of


class UpdateAudit(AuditRun):
    """Canary hospitals (``hospital`` level) or canary updates (``update`` level) joining each round's aggregate."""

    hospital = "*"

    def __init__(self, audit, plan: Plan, level: str, included: np.ndarray, rng: np.random.Generator):
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
