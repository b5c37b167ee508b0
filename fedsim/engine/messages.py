"""Reading and rewriting Flower train messages (``arrays`` + ``metrics``) as numpy.

Shared by the engine, the strategy wrappers and the components that rework
replies (adversaries, defenses, privacy mods).
"""

import copy
import io
from collections.abc import Sequence

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.constant import SType


def records(content: RecordDict, kind: type) -> dict:
    """A content's records of one kind (ArrayRecord, MetricRecord, ConfigRecord), by key.

    Flower's ``content.array_records`` (and the others) build a new checked
    dict at every call: too slow for thousands of replies a round.
    """
    return {key: record for key, record in content.items() if isinstance(record, kind)}


def arrays(content: RecordDict) -> dict[str, ArrayRecord]:
    return records(content, ArrayRecord)


def metrics(content: RecordDict) -> dict[str, MetricRecord]:
    return records(content, MetricRecord)


def configs(content: RecordDict) -> dict[str, ConfigRecord]:
    return records(content, ConfigRecord)


def weights_of(content: RecordDict) -> list[np.ndarray]:
    """The arrays of a train message or reply (its one ArrayRecord)."""
    return next(iter(arrays(content).values())).to_numpy_ndarrays()


def replace_weights(content: RecordDict, weights: Sequence[np.ndarray]) -> None:
    """Put ``weights`` into the content's ArrayRecord in place, keeping its keys."""
    key, record = next(iter(arrays(content).items()))
    content[key] = holding(dict(zip(record.keys(), (DecodedArray(np.asarray(w)) for w in weights), strict=True)))


def claimed_examples(content: RecordDict, key: str = "num-examples"):
    """The example count a reply claims (None when there is none)."""
    for record in metrics(content).values():
        if key in record:
            return record[key]
    return None


def set_claim(content: RecordDict, value, key: str = "num-examples") -> None:
    """Overwrite the example count a reply claims."""
    for record in metrics(content).values():
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


# --- arrays decoded once -----------------------------------------------------------------------------
#
# A Flower ``Array`` holds np.save bytes; ``Array.numpy()`` parses them again at every call (~70 us an
# array). In one process fedsim decodes each array once: a ``DecodedArray`` is a Flower Array (the same
# bytes, the same metadata) that keeps the ndarray it encodes, so every reader (the reply check, the
# validator, the audit trail, Flower's own aggregation) gets it for the price of a copy.

_HEADERS: dict[tuple[str, tuple[int, ...]], bytes] = {}


def _header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """The bytes np.save writes before the data of a C-ordered array of this dtype and shape."""
    key = (dtype.str, shape)
    if key not in _HEADERS:
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                      "fortran_order": False, "shape": shape})
        _HEADERS[key] = buffer.getvalue()
    return _HEADERS[key]


class DecodedArray(Array):
    """A Flower ``Array`` that keeps its decoded ndarray: ``numpy()`` returns a copy without parsing bytes."""

    def __init__(self, ndarray: np.ndarray, data: bytes | None = None):
        ndarray = np.array(ndarray, order="C", copy=None)  # (ascontiguousarray would turn a 0-d array 1-d)
        if data is None:
            data = _header(ndarray.dtype, ndarray.shape) + ndarray.tobytes()
        ndarray.flags.writeable = False
        # What Flower's Array(dtype=, shape=, stype=, data=) sets (four fields, marked dirty), set directly:
        # its argument parsing costs more than the rest of a reply's handling (tests/engine/test_messages.py
        # checks the two agree).
        self.__dict__.update(dtype=str(ndarray.dtype), shape=tuple(ndarray.shape), stype=SType.NUMPY, data=data,
                             _is_dirty=True, _decoded=ndarray)

    def numpy(self) -> np.ndarray:
        return self.__dict__["_decoded"].copy()

    def deflate(self) -> bytes:
        """Serialized as the plain Flower ``Array`` it is (Flower names the class in the bytes it sends)."""
        return Array(dtype=self.dtype, shape=self.shape, stype=self.stype, data=self.data).deflate()

    def __setattr__(self, name, value):
        if name in ("dtype", "shape", "stype", "data") and "_decoded" in self.__dict__:
            raise AttributeError(f"a DecodedArray is immutable: build a new Array instead of setting {name!r}")
        super().__setattr__(name, value)


def decoded(array: Array) -> np.ndarray:
    """The ndarray ``array`` encodes, read-only: cached for a DecodedArray, parsed once otherwise.

    Bytes laid out exactly as np.save writes them for the array's declared
    dtype and shape are read in place; anything else goes through Flower's
    own ``Array.numpy()`` (and may raise, as it would there).
    """
    cached = array.__dict__.get("_decoded")
    if cached is not None:
        return cached
    if array.stype == SType.NUMPY:
        try:
            dtype, shape = np.dtype(array.dtype), tuple(int(n) for n in array.shape)
            header = _header(dtype, shape)
        except (TypeError, ValueError):
            header = None
        if header is not None and dtype.kind in "biuf" and array.data.startswith(header) \
                and len(array.data) == len(header) + dtype.itemsize * int(np.prod(shape)):
            out = np.frombuffer(array.data, dtype, offset=len(header)).reshape(shape)
            return out
    out = array.numpy()
    out.flags.writeable = False
    return out


def holding(arrays: dict[str, Array]) -> ArrayRecord:
    """An ArrayRecord holding these very Array objects (``ArrayRecord(dict)`` would copy each into a new Array).

    The keys and values are checked as ``ArrayRecord.__setitem__`` checks
    them, then stored at once (tests/engine/test_messages.py checks the
    result equals Flower's).
    """
    for key, array in arrays.items():
        if not isinstance(key, str) or not isinstance(array, Array):
            raise TypeError(f"an ArrayRecord maps str to Array, got {type(key).__name__} -> {type(array).__name__}")
    record = ArrayRecord()
    record.__dict__["_data"].update(arrays)
    record.__dict__["_is_dirty"] = True
    return record


def decoded_record(record: ArrayRecord) -> ArrayRecord:
    """``record`` with every array a DecodedArray (the same keys and bytes), decoding each once."""
    return holding({key: array if isinstance(array, DecodedArray) else DecodedArray(decoded(array), array.data)
                    for key, array in record.items()})


def encoded(weights: Sequence[np.ndarray]) -> ArrayRecord:
    """An ArrayRecord of ``weights`` (keys "0", "1", ... as Flower's list form gives), each a DecodedArray."""
    return holding({str(i): DecodedArray(np.asarray(w)) for i, w in enumerate(weights)})


def own_copy(content: RecordDict) -> RecordDict:
    """A node's own copy of a message content: new records (mods may change or pop what they receive),
    sharing the immutable arrays inside."""
    out = RecordDict()
    for key, record in content.items():
        out[key] = holding(dict(record.items())) if isinstance(record, ArrayRecord) else copy.deepcopy(record)
    return out
