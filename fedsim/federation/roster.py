"""The roster: what every party knows of each hospital (row counts, events, a digest of its rows)."""

import hashlib

import numpy as np
import pandas as pd

ROSTER = ("n_train", "n_test", "events_train", "sha256")  # what every party knows of each hospital


def roster_of(fed, indices) -> pd.DataFrame:
    """The roster rows of the held hospitals ``indices``: row counts, events and the SHA-256 of their rows.

    The digest covers the preprocessed train and test rows and labels (never
    the rows themselves): what an audit log can record to pin the data used.
    """
    rows = {}
    for i in indices:
        digest = hashlib.sha256()
        (x, y), (x_test, y_test) = fed.train_rows(i), fed.test_rows(i)
        for values in (x, y, x_test, y_test):
            digest.update(np.ascontiguousarray(values, dtype=np.float32).tobytes())
        rows[fed.hospitals[i]] = {"n_train": len(y), "n_test": len(y_test), "events_train": int(y.sum()),
                                  "sha256": digest.hexdigest()}
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(ROSTER)).rename_axis("hospital")
