"""A federation at a glance: one row per hospital (sizes, prevalence, case mix or image intensity)."""

import numpy as np
import pandas as pd


def per_hospital(fed, train: np.ndarray, test: np.ndarray) -> pd.Series:
    """Mean per hospital of one value per training row and one per test row."""
    return pd.Series(
        np.concatenate([train, test]),
        index=np.concatenate([np.repeat(fed.hospitals, np.diff(fed.train_offsets)),
                              np.repeat(fed.hospitals, np.diff(fed.test_offsets))]),
    ).groupby(level=0).mean()


def summarize(fed) -> pd.DataFrame:
    """One row per hospital: sizes, outcome prevalence, then mean age (if any) and missingness for
    tables or the mean pixel intensity for images."""
    grouped = fed.data.groupby(fed.site, sort=True)
    table = pd.DataFrame({
        "n": grouped.size(),
        "n_train": np.diff(fed.train_offsets),
        "n_test": np.diff(fed.test_offsets),
        "prevalence": per_hospital(fed, fed.y_train, fed.y_test),
    })
    if fed.image_shape is not None:
        table["intensity_mean"] = per_hospital(fed, fed.x_train.mean(axis=1), fed.x_test.mean(axis=1))
        return table.rename_axis("hospital").reset_index()
    features = fed.preprocessor.features
    if "age" in features:
        table["age_mean"] = grouped["age"].mean()
    table["missing_rate"] = fed.data[features].isna().groupby(fed.data[fed.site]).mean().mean(axis=1)
    return table.rename_axis("hospital").reset_index()
