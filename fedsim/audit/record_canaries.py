"""Record canaries: random records in one hospital's training rows, scored by the confidence training gives them."""


import numpy as np

from fedsim.audit.run import AuditRun
from fedsim.engine import Exchange, Plan
from fedsim.privacy.ledger import installed_ledger
from fedsim.training import trainer_for

RECORD_SCALE = 10.0  # a tabular canary record's features: independent normals of this standard deviation


def _confidence(trainer, weights, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each canary's logit-scaled confidence in its own label."""
    logits = trainer.logits(weights, x).astype(np.float64)
    return np.where(y > 0.5, logits, -logits)


class RecordAudit(AuditRun):
    """Canary records in one hospital's training rows; scored by the confidence training gives them."""

    level = "record"

    def __init__(self, audit, plan: Plan, included: np.ndarray, rng: np.random.Generator):
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
