"""Reading and rewriting Flower train messages (``arrays`` + ``metrics``) as numpy.

Shared by the engine, the strategy wrappers and the components that rework
replies (adversaries, defenses, privacy mods).
"""

import copy
from collections.abc import Sequence

import numpy as np
from flwr.app import Array, ArrayRecord, Message, RecordDict


def weights_of(content: RecordDict) -> list[np.ndarray]:
    """The arrays of a train message or reply (its one ArrayRecord)."""
    return next(iter(content.array_records.values())).to_numpy_ndarrays()


def replace_weights(content: RecordDict, weights: Sequence[np.ndarray]) -> None:
    """Put ``weights`` into the content's ArrayRecord in place, keeping its keys."""
    key, record = next(iter(content.array_records.items()))
    content[key] = ArrayRecord(dict(zip(record.keys(), (Array(np.asarray(w)) for w in weights), strict=True)))


def claimed_examples(content: RecordDict, key: str = "num-examples"):
    """The example count a reply claims (None when there is none)."""
    for record in content.metric_records.values():
        if key in record:
            return record[key]
    return None


def set_claim(content: RecordDict, value, key: str = "num-examples") -> None:
    """Overwrite the example count a reply claims."""
    for record in content.metric_records.values():
        if key in record:
            record[key] = value


def copy_message(message: Message) -> Message:
    """A message with its own copy of the content (the same metadata)."""
    return Message(content=copy.deepcopy(message.content), metadata=copy.copy(message.metadata))


def flat(weights: Sequence[np.ndarray]) -> np.ndarray:
    """All arrays as one float64 vector."""
    return np.concatenate([np.asarray(w, dtype=np.float64).ravel() for w in weights])


def unflat(vector: np.ndarray, like: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``vector`` cut back into arrays of the shapes and dtypes of ``like``."""
    out, start = [], 0
    for w in like:
        out.append(vector[start:start + w.size].reshape(w.shape).astype(w.dtype))
        start += w.size
    return out
