"""Update sparsification: each hospital sends only the largest entries of its update.

Pruning the small entries of a gradient is the defense the DLG paper (Zhu et
al. 2019) found to stop its attack once most entries are gone; it also cuts
upload size. It gives no formal guarantee and spends no privacy budget: what
it buys is measured by rerunning the attacks (``fedsim.attacks``).
"""

from dataclasses import dataclass

import numpy as np
from flwr.app import Context, Message

from fedsim.components import Component
from fedsim.engine import Plan
from fedsim.engine.messages import replace_weights, weights_of
from fedsim.validation import Share, param


def sparsify(update: list[np.ndarray], keep: float) -> list[np.ndarray]:
    """``update`` with all but the ``keep`` share of its largest-magnitude entries (over all arrays) set to 0."""
    magnitudes = np.concatenate([np.abs(u).ravel() for u in update])
    k = max(1, int(round(keep * magnitudes.size)))
    threshold = np.partition(magnitudes, magnitudes.size - k)[magnitudes.size - k]
    return [np.where(np.abs(u) >= threshold, u, 0).astype(u.dtype) for u in update]


@dataclass(frozen=True)
class Sparsify(Component):
    """A ClientApp mod keeping the ``keep`` share (0-1] of update entries with the largest magnitude."""

    family = "privacy"
    name = "sparsify"
    title = "update sparsification"
    threats = ("update leakage",)
    trust_model = "none: an empirical defense (no formal guarantee); what it buys is measured by the attacks"

    keep: float = param(0.1, Share())

    def install(self, plan: Plan) -> None:
        keep = float(self.keep)

        def sparsify_mod(message: Message, context: Context, call_next) -> Message:
            reply = call_next(message, context)
            if message.metadata.message_type != "train" or not reply.has_content() or not reply.content.array_records:
                return reply
            sent = weights_of(message.content)
            update = [np.asarray(r) - s for r, s in zip(weights_of(reply.content), sent)]
            replace_weights(reply.content, [s + u for s, u in zip(sent, sparsify(update, keep))])
            return reply

        plan.add_mod("privacy", sparsify_mod)
