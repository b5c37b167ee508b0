"""The cohort engine: a round's hospitals trained at once, Flower's message contract kept.

When the in-process Grid is handed a round's train messages, ``CohortRound``
reads the weights and config each one carries, trains all those hospitals
in one compiled program (``fedsim.cohort.CohortTrainer``, on each hospital's
own rows, batch plan and generator) and keeps each result. Then every message is
delivered as before: mods, adversaries and availability faults run, and the
ClientApp's train handler takes its hospital's result when what reaches it
(the weights, the config, the hospital) is what the cohort trained on; when a
mod changed it (an attacker training longer, a poisoned config), the
hospital trains alone. So every mod, wrapper and observer sees exactly what
it would see one hospital at a time.

Cohorts larger than ``max_cohort`` are split into chunks of even size; a model without a
cohort form, and DP-SGD on one whose layers tensorflow-privacy cannot clip
quickly (convolutions), train one hospital after another (a one-line notice
says so once).
"""

import logging
from collections.abc import Callable, Sequence

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType

from fedsim.cohort import CohortTrainer, Task, cohort_form
from fedsim.engine.messages import decoded
from fedsim.federation import Federation
from fedsim.models import ModelFn
from fedsim.recipe import TrainingRecipe, round_and_seed
from fedsim.training import DPTraining, expected_batch, noise_draws

logger = logging.getLogger("fedsim")
_TRAINERS: dict[tuple, CohortTrainer] = {}
_NOTICES: set[str] = set()


def train_inputs(content) -> tuple[ArrayRecord, object] | None:
    """The weights record and config a train message carries (Message API or SecAgg+'s legacy fit), or None."""
    for weights, config in (("arrays", "config"), ("fitins.parameters", "fitins.config")):
        if isinstance(content.get(weights), ArrayRecord) and isinstance(content.get(config), ConfigRecord):
            return content[weights], content[config]
    return None


def _signature(record: ArrayRecord, config) -> tuple:
    """What a hospital is asked to train: the weights, the recipe, the round and the seed."""
    return tuple(record.values()), (TrainingRecipe.decode(config), round_and_seed(config))


def _same(signature: tuple, record: ArrayRecord, config) -> bool:
    arrays, settings = signature
    values = list(record.values())
    return settings == _signature(record, config)[1] and len(values) == len(arrays) and all(
        a is b or (a.dtype == b.dtype and a.shape == b.shape and a.data == b.data) for a, b in zip(values, arrays))


def batch_slot(batch: int, largest: int) -> int:
    """How many rows a cohort step holds per hospital: the batch size, or, for DP-SGD's Poisson batches (which
    vary around it), room for batch + 6 standard deviations (one trace almost always), more when one is larger."""
    slot = max(batch, -(-int(batch + 6 * batch**0.5) // 8) * 8) if largest > batch else batch
    return slot if largest <= slot else -(-largest // 8) * 8


def hospital_rows(fed: Federation, local_data: Sequence[Callable], hospital: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows a hospital trains on: its training split with the plan's data changes (poisoning) applied."""
    x, y = fed.train_rows(hospital)
    for change in local_data:
        x, y = change(hospital, x, y)
    return x, y


def notice(message: str) -> None:
    """Say once per process why hospitals train one after another."""
    if message not in _NOTICES:
        _NOTICES.add(message)
        logger.warning("fedsim: %s", message)


class CohortRound:
    """Trains the hospitals of a round's train messages at once; ``take`` hands each its result.

    ``hospital_of(node_id)`` is the hospital index a node serves;
    ``local_data`` are the plan's data changes (poisoning), applied as the
    ClientApp applies them; ``secret`` is the hospitals' (``make_client_app``'s).
    """

    def __init__(self, fed: Federation, model_fn: ModelFn, local_data: Sequence[Callable],
                 hospital_of: Callable[[int], int], secret: int, max_cohort: int = 256):
        self.fed, self.model_fn, self.local_data, self.hospital_of = fed, model_fn, list(local_data), hospital_of
        self.secret = secret
        self.max_cohort = max_cohort
        self.why_not = cohort_form(model_fn, fed.n_features)
        if self.why_not:
            notice(f"hospitals train one after another: the model's {self.why_not}")
        self.ready: dict[int, tuple[tuple, tuple]] = {}

    def prepare(self, messages: Sequence[Message]) -> None:
        """Train every hospital a train message goes to, at once; keep each result for ``take``."""
        self.ready = {}
        if self.why_not:
            return
        groups: dict[tuple, list] = {}
        weights_of: dict[int, list[np.ndarray]] = {}
        for message in messages:
            if message.metadata.message_type != MessageType.TRAIN or (inputs := train_inputs(message.content)) is None:
                continue
            record, config = inputs
            if id(record) not in weights_of:  # strategies send one shared record: decoded once
                weights_of[id(record)] = [decoded(a) for a in record.values()]
            hospital = self.hospital_of(message.metadata.dst_node_id)
            recipe = TrainingRecipe.decode(config)
            groups.setdefault((recipe.batch_size, recipe.dp), []).append(
                (hospital, record, config, recipe, weights_of[id(record)]))
        for (batch, dp), members in groups.items():
            size = -(-len(members) // -(-len(members) // self.max_cohort))  # chunks of even size, none over the cap
            for start in range(0, len(members), size):
                self._train(members[start:start + size], batch, dp)

    def _train(self, members: list, batch: int, dp: DPTraining | None) -> None:
        size = min(self.max_cohort, -(-len(members) // 8) * 8)  # padded to a multiple of 8: few traces
        tasks = []
        for hospital, _, config, recipe, weights in members:
            x, y = hospital_rows(self.fed, self.local_data, hospital)
            rng = recipe.rng(*round_and_seed(config), hospital, self.secret)
            order, bounds = recipe.batches(len(x), rng)
            noise = noise_draws(rng, len(bounds) - 1, sum(int(np.prod(w.shape)) for w in weights)) if dp else None
            tasks.append(Task(weights, x, y, order, bounds, recipe.learning_rate, recipe.proximal_mu,
                              noise, expected_batch(len(x), batch) if dp else None))
        slot = batch_slot(batch, max(int(np.diff(t.bounds).max(initial=0)) for t in tasks))
        trainer = _TRAINERS.get((self.model_fn, self.fed.n_features, size, slot))
        if trainer is None:
            trainer = _TRAINERS[self.model_fn, self.fed.n_features, size, slot] = CohortTrainer(
                self.model_fn, self.fed.n_features, size, slot)
        if dp is not None and not trainer.fast_clipping:
            notice("DP-SGD trains hospitals one after another for this model: tensorflow-privacy has no fast "
                   "per-example clipping for its layers (convolutions)")
            return
        for member, (weights, loss, steps), task in zip(members, trainer.fit(tasks, dp), tasks):
            hospital, record, config = member[:3]
            self.ready[hospital] = (_signature(record, config), (weights, loss, steps, len(task.y)))

    def take(self, hospital: int, record: ArrayRecord, config) -> tuple | None:
        """The prepared (weights, loss, steps, examples) of ``hospital`` if it trains on what the cohort did."""
        entry = self.ready.get(hospital)
        if entry is None or not _same(entry[0], record, config):
            return None
        return entry[1]
