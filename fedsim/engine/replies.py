"""The engine's own check of every train reply: nothing malformed reaches a screen, observer or strategy.

A hostile or broken hospital can send anything. Before any component sees a
round's replies, ``ReplyCheck`` rejects (and the participation log records,
with the reason) every reply that is not what an honest fedsim ClientApp
sends:

- Message API (plain, central DP, local DP, DP-SGD): one ArrayRecord with
  the keys of the global model, each array readable, of its shape, floating
  point and finite; one MetricRecord of finite numbers, with the keys the
  round's other replies have and a ``num-examples`` above 0;
- SecAgg+ (the collect-masked-vectors stage, the only one a hospital's own
  mods can touch): the masked vectors Flower's workflow sums, one per model
  array plus the weight factor, integers of the right shapes inside the
  modulus, and the FitRes fields the workflow reads. A rejected reply is,
  for the protocol, a hospital that dropped out: its neighbours' shares
  unmask the sum without it.
"""

from collections import Counter

import numpy as np
from flwr.app import Message
from flwr.common import bytes_to_ndarray, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.compat.common import recorddict_compat as compat

from fedsim.engine.messages import DecodedArray, arrays, decoded, holding, metrics
from fedsim.engine.observers import Exchange, ReplyScreen

WEIGHT_KEY = "num-examples"


def _arrays(record) -> tuple[list[np.ndarray] | None, str | None]:
    """The arrays of a record (decoded once), or why they cannot be read."""
    out = []
    for key in record.keys():
        try:
            out.append(decoded(record[key]))
        except Exception as error:  # noqa: BLE001  (undecodable bytes: whatever numpy raises)
            return None, f"array {key!r} cannot be read ({type(error).__name__})"
    return out, None


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


class ReplyCheck(ReplyScreen):
    """Rejects every malformed train reply, on every path (see the module docstring).

    ``modulus``: SecAgg+'s modulus range, where the run uses it.
    """

    def __init__(self, modulus: int | None = None):
        self.modulus = modulus

    def screen(self, exchange: Exchange) -> dict[str, str]:
        if exchange.message_type != "train":
            return {}
        stage = exchange.secagg_stage
        if stage is None:
            return self._message_api(exchange)
        if stage == Stage.COLLECT_MASKED_VECTORS:
            return self._masked_vectors(exchange)
        return {}  # SecAgg+'s key exchanges: written by Flower's own mod, which no hospital mod wraps

    # --- the Message API -----------------------------------------------------------------------
    def _message_api(self, exchange: Exchange) -> dict[str, str]:
        rejected, metric_keys = {}, {}
        for hospital, reply in exchange.replies.items():
            sent = exchange.sent.get(hospital)
            if not reply.has_content() or sent is None:
                continue
            problem = self._message_problem(sent, reply)
            if problem:
                rejected[hospital] = f"reply check: {problem}"
            else:
                metric_keys[hospital] = tuple(sorted(next(iter(metrics(reply.content).values())).keys()))
        usual = Counter(metric_keys.values()).most_common(1)
        for hospital, keys in metric_keys.items():
            if keys != usual[0][0]:
                rejected[hospital] = (f"reply check: metrics {list(keys)} differ from the round's usual "
                                      f"{list(usual[0][0])}")
        return rejected

    @staticmethod
    def _message_problem(sent: Message, reply: Message) -> str | None:
        content = reply.content
        received = arrays(content)
        if len(received) != 1:
            return f"expected one ArrayRecord of model weights, got {len(received)}"
        (name, record), (sent_name, expected) = next(iter(received.items())), next(iter(arrays(sent.content).items()))
        if name != sent_name or list(record.keys()) != list(expected.keys()):
            return f"array keys {list(record.keys())[:5]} are not the model's {list(expected.keys())[:5]}"
        values, problem = _arrays(record)
        if problem:
            return problem
        for key, array, want in zip(record.keys(), values, expected.values()):
            if tuple(array.shape) != tuple(want.shape):
                return f"array {key!r} has shape {tuple(array.shape)}, the model's is {tuple(want.shape)}"
            if not np.issubdtype(array.dtype, np.floating):
                return f"array {key!r} has dtype {array.dtype}, expected floating point"
            if not np.all(np.isfinite(array)):
                return f"array {key!r} holds NaN or Inf"
        measured = metrics(content)
        if len(measured) != 1:
            return f"expected one MetricRecord, got {len(measured)}"
        values_of = next(iter(measured.values()))
        odd = [k for k in values_of.keys() if not _finite_number(values_of[k])]
        if odd:
            return f"metric {odd[0]!r} is not a finite number ({values_of[odd[0]]!r})"
        if WEIGHT_KEY not in values_of:
            return f"no {WEIGHT_KEY!r} in its metrics"
        if not values_of[WEIGHT_KEY] > 0:
            return f"{WEIGHT_KEY} {values_of[WEIGHT_KEY]!r} is not above 0"
        # Checked: every later reader (validator, audit trail, aggregation) gets these arrays decoded.
        content[name] = holding({key: a if isinstance(a, DecodedArray) else DecodedArray(array, a.data)
                                 for (key, a), array in zip(record.items(), values)})
        return None

    # --- SecAgg+ ----------------------------------------------------------------------------------
    def _masked_vectors(self, exchange: Exchange) -> dict[str, str]:
        rejected = {}
        for hospital, reply in exchange.replies.items():
            sent = exchange.sent.get(hospital)
            if not reply.has_content() or sent is None:
                continue
            problem = self._masked_problem(sent, reply)
            if problem:
                rejected[hospital] = f"reply check (SecAgg+ masked vectors): {problem}"
        return rejected

    def _masked_problem(self, sent: Message, reply: Message) -> str | None:
        if "fitins.parameters" not in sent.content:
            return None  # not a train message of the SecAgg+ workflow
        shapes = [a.shape for a in parameters_to_ndarrays(
            compat.recorddict_to_fitins(sent.content, keep_input=True).parameters)]
        modulus = self.modulus
        config = reply.content.get(RECORD_KEY_CONFIGS)
        vectors = None if config is None else config.get(Key.MASKED_PARAMETERS)
        if not isinstance(vectors, list) or not all(isinstance(v, bytes) for v in vectors):
            return "no masked vectors"
        if len(vectors) != len(shapes) + 1:
            return f"{len(vectors)} masked vectors, expected {len(shapes) + 1} (weight factor and model arrays)"
        for i, (data, shape) in enumerate(zip(vectors, [(1,), *shapes])):
            try:
                vector = bytes_to_ndarray(data)
            except Exception as error:  # noqa: BLE001
                return f"masked vector {i} cannot be read ({type(error).__name__})"
            if tuple(vector.shape) != shape:
                return f"masked vector {i} has shape {tuple(vector.shape)}, expected {shape}"
            if not np.issubdtype(vector.dtype, np.integer):
                return f"masked vector {i} has dtype {vector.dtype}, expected integers"
            if vector.size and (vector.min() < 0 or (modulus is not None and vector.max() >= modulus)):
                return f"masked vector {i} leaves the modulus range"
        try:
            compat.recorddict_to_fitres(reply.content, keep_input=True)
        except Exception as error:  # noqa: BLE001
            return f"its FitRes fields cannot be read ({type(error).__name__})"
        return None
