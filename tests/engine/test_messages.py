"""Arrays decoded once, records built without Flower's per-item checks: the same objects Flower builds."""

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

from fedsim.engine.messages import DecodedArray, arrays, decoded, encoded, holding, metrics, own_copy

VALUES = (np.random.default_rng(0).random((3, 4)).astype(np.float32), np.arange(5), np.array(2.5), np.zeros((0, 3)))


@pytest.mark.parametrize("value", VALUES, ids=["float32 matrix", "int vector", "0-d", "empty"])
def test_a_decoded_array_is_the_array_flower_builds(value):
    flower, ours = Array(value), DecodedArray(value)
    assert {k: v for k, v in ours.__dict__.items() if k != "_decoded"} == flower.__dict__
    assert ours.data == flower.data and np.array_equal(ours.numpy(), value) and np.array_equal(decoded(flower), value)
    assert ours.object_id == flower.object_id  # what Flower's message store and transport key on
    assert not decoded(ours).flags.writeable and ours.numpy().flags.writeable  # a reader gets its own copy
    with pytest.raises(AttributeError, match="immutable"):
        ours.data = b""


def test_odd_bytes_go_through_flowers_own_reader():
    odd = Array(dtype="float32", shape=(2,), stype="numpy.ndarray", data=b"not npy bytes")
    with pytest.raises(ValueError):
        decoded(odd)


def test_holding_builds_the_record_flower_builds_around_the_same_arrays():
    parts = {"0": DecodedArray(VALUES[0]), "1": Array(VALUES[1])}
    flower = ArrayRecord()
    for key, array in parts.items():
        flower[key] = array
    ours = holding(parts)
    assert ours.__dict__.keys() == flower.__dict__.keys() and ours.is_dirty
    assert list(ours.items()) == list(flower.items()) and ours["0"] is parts["0"]
    assert ours.object_id == flower.object_id
    for bad in ({1: parts["0"]}, {"0": VALUES[0]}):
        with pytest.raises(TypeError, match="maps str to Array"):
            holding(bad)


def test_records_of_a_kind_and_own_copies():
    record = encoded([np.ones((2, 2), np.float32)])
    content = RecordDict({"arrays": record, "metrics": MetricRecord({"num-examples": 3})})
    assert arrays(content) == {"arrays": record} and list(metrics(content)) == ["metrics"]
    copy = own_copy(content)
    assert copy["arrays"] is not record and copy["arrays"]["0"] is record["0"]  # own records, shared arrays
    copy["metrics"]["num-examples"] = 4
    assert content["metrics"]["num-examples"] == 3


def test_a_decoded_array_travels_as_a_flower_array():
    """What leaves the process (the Deployment Engine) is what Flower's transport deflates and inflates."""
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
    from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents

    content = RecordDict({"arrays": encoded([VALUES[0], VALUES[1]])})
    assert content.object_id == RecordDict({"arrays": ArrayRecord([VALUES[0], VALUES[1]])}).object_id
    contents = {oid: obj.deflate() for oid, obj in get_all_nested_objects(content).items()}
    back = inflate_object_from_contents(content.object_id, contents)
    assert all(type(a) is Array for a in back["arrays"].values())
    assert all(np.array_equal(a.numpy(), v) for a, v in zip(back["arrays"].values(), VALUES[:2]))
