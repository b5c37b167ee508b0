"""A Result written by an exported app's ServerApp reads back the same in another process."""

import numpy as np
import pandas as pd

import fedsim as fs
from fedsim.deploy.outputs import read_result, write_result
from fedsim.models import resolve_model


def test_a_written_result_reads_back_the_same(tmp_path):
    fed = fs.synthetic_federation("icu_mortality", n_hospitals=3, n_patients=600, seed=2)
    experiment = fs.Experiment(federation=fed, model="logreg", rounds=2, seed=1, out=tmp_path,
                               privacy=[{"name": "dpsgd", "noise_multiplier": 1.0}],
                               adversaries=[{"name": "sign_flip", "hospitals": [fed.hospitals[0]]}],
                               defenses=[{"name": "norm_bound"}])
    result = experiment.run()
    again = read_result(write_result(result, tmp_path), experiment, resolve_model("logreg"))
    pd.testing.assert_frame_equal(again.metrics, result.metrics, check_dtype=False, check_exact=True)
    assert again.tables.keys() == result.tables.keys()
    for name, table in result.tables.items():
        pd.testing.assert_frame_equal(again.tables[name], table, check_dtype=False, check_exact=True,
                                      check_index_type=False)
    for a, b in zip(again.weights, result.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert again.audit_path == result.audit_path and again.config == result.config
