"""Secure aggregation as an Experiment component: Flower's SecAgg+.

``SecAgg()`` switches a run onto Flower's SecAgg+ protocol
(``SecAggPlusWorkflow`` + ``secaggplus_mod``, see ``fedsim.engine.secagg``):
each hospital quantizes its weighted update, adds pairwise and private masks,
and the server only ever holds masked vectors and their unmasked sum. What it
buys: observers (an honest-but-curious server, an attack) see no individual
update. What it costs: quantization error (step ``2 * clipping_range /
quantization_range`` per weight and hospital), four round trips per round,
and key agreement and secret sharing work that grows with ``num_shares``.
Hospitals that drop out after sharing keys are unmasked with their
neighbours' shares while at least ``reconstruction_threshold`` remain.

It adds no noise: combine it with ``DPSGD`` or client-side ``CentralDP`` for
differential privacy.
"""

from dataclasses import dataclass

import numpy as np
from flwr.client.mod import secaggplus_mod
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage

from fedsim.components import Component
from fedsim.engine import Exchange, Plan, SecAggSettings

STAGES = Stage.all()  # setup, share_keys, collect_masked_vectors, unmask: each one round trip


@dataclass(frozen=True)
class SecAgg(SecAggSettings, Component):
    """Flower's SecAgg+ secure aggregation of the hospitals' updates (FedAvg only).

    Arguments keep Flower's meaning (``SecAggPlusWorkflow``):
    ``num_shares`` (int >= 3, or a fraction of the sampled hospitals) and
    ``reconstruction_threshold`` (int >= 2, below ``num_shares``, or a fraction
    of the shares) set each hospital's neighbourhood and how many neighbours
    must stay to unmask; ``clipping_range``, ``quantization_range`` and
    ``modulus_range`` set the integer encoding; ``max_weight`` caps a
    hospital's example count (None: the largest hospital's); ``timeout`` is
    for Flower's own runtimes. Runs on every engine (on Flower's runtimes the
    hospitals' stochastic rounding is not seeded: runs agree up to
    quantization error).
    """

    family = "privacy"
    name = "secagg"
    title = "SecAgg+"
    threats = ("update leakage",)
    unit = None
    trust_model = ("secure aggregation: the server sees only masked updates and their sum, unless "
                   "reconstruction_threshold hospitals collude with it")
    spends_epsilon = False

    def install(self, plan: Plan) -> None:
        if plan.secagg is not None:
            raise ValueError("privacy: SecAgg is given twice")
        plan.secagg = self
        # The outermost stage: every other mod acts on the plaintext fit
        # message and update, before the update is masked.
        plan.add_mod("protocol", secaggplus_mod)


def masked_updates(exchange: Exchange) -> dict[str, list[np.ndarray]]:
    """What the server receives from each hospital in the collect-masked-vectors stage.

    Integer vectors modulo ``modulus_range``: the hospital's weight factor
    followed by one array per model weight, quantized and masked. Empty for
    any other exchange.
    """
    if exchange.secagg_stage != Stage.COLLECT_MASKED_VECTORS:
        return {}
    return {
        hospital: [bytes_to_ndarray(b) for b in content.config_records[RECORD_KEY_CONFIGS][Key.MASKED_PARAMETERS]]
        for hospital, content in exchange.updates().items()
    }
