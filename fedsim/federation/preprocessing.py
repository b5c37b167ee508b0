"""The preprocessor every party shares: fit on pooled rows, or from each hospital's statistics."""

import numpy as np
import pandas as pd

from fedsim.federation.rows import check_numbers, too_large
from fedsim.validation import Options

PREPROCESSING = Options("pooled", "federated")  # Preprocessor fit on pooled rows, or from per-hospital statistics


class Preprocessor:
    """Column-wise preprocessing fitted on training rows only.

    Numeric columns are standardised with the training mean and standard
    deviation; a missing value becomes the training mean (0 after scaling) and,
    for columns with missing training values, a ``<column>_missing`` indicator is
    added. String/categorical columns are one-hot encoded with the categories
    seen in training; a missing or unseen category encodes as all zeros. No test
    row ever contributes. ``Preprocessor(train, features)`` fits on the pooled
    training rows (``fitting == "pooled"``); ``from_statistics`` fits the same
    parameters from each hospital's ``hospital_statistics``, as one federated
    statistics round of a deployment would (``fitting == "federated"``).
    """

    def __init__(self, train: pd.DataFrame, features: list[str]):
        numeric = [c for c in features if pd.api.types.is_numeric_dtype(train[c])]
        values = train[numeric].astype("float64")
        with np.errstate(over="ignore", invalid="ignore"):
            mean, std = values.mean(), values.std(ddof=0)
        check_numbers(values, values.isna().all() | (np.isfinite(mean) & np.isfinite(std)),
                       "the standard deviation overflows float64")
        self._fit("pooled", features, numeric, mean.fillna(0.0).to_numpy(),
                  std.fillna(1.0).replace(0.0, 1.0).to_numpy(),
                  [c for c in numeric if train[c].isna().any()],
                  {c: sorted(train[c].dropna().astype(str).unique()) for c in features if c not in numeric})

    @classmethod
    def from_statistics(cls, features: list[str], statistics: list[dict]) -> "Preprocessor":
        """The preprocessor fitted from ``hospital_statistics`` of each hospital's training rows (no row seen).

        Counts, means and centred sums of squares combine exactly (Chan, Golub &
        LeVeque's pairwise update), so the parameters equal the pooled fit's up
        to floating-point rounding.
        """
        if not statistics:
            raise ValueError("statistics: expected one hospital's statistics or more, got none")
        numeric = [c for c in features if c in statistics[0]["numeric"]]
        for stats in statistics:
            if set(stats["numeric"]) != set(numeric) or set(stats["categories"]) != set(features) - set(numeric):
                raise ValueError(f"statistics: hospitals disagree on the columns or on which are numeric (numeric "
                                 f"{numeric} at the first, {[c for c in features if c in stats['numeric']]} at one)")
        count, total, squares = (np.array([[s["numeric"][c][key] for c in numeric] for s in statistics], np.float64)
                                 for key in ("count", "sum", "squares"))
        n = count.sum(axis=0)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            mean = total.sum(axis=0) / n
            own = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
            shift = np.where(count > 0, count * (own - mean) ** 2, 0.0)
            std = np.sqrt((squares.sum(axis=0) + shift.sum(axis=0)) / n)
        for column, values, m, s in zip(numeric, n, mean, std):
            if values and not (np.isfinite(m) and np.isfinite(s)):
                raise too_large(column, "the standard deviation overflows float64")
        rows = sum(s["rows"] for s in statistics)
        pre = cls.__new__(cls)
        pre._fit("federated", features, numeric, np.where(n > 0, mean, 0.0), np.where((n > 0) & (std > 0), std, 1.0),
                 [c for c, k in zip(numeric, n) if k < rows],
                 {c: sorted(set().union(*(s["categories"][c] for s in statistics)))
                  for c in features if c not in numeric})
        return pre

    def _fit(self, fitting: str, features, numeric, mean, std, flagged, categories) -> None:
        """Set the fitted parameters and the model inputs' names."""
        self.fitting = fitting
        self.features = list(features)
        self.numeric = numeric
        self.categorical = [c for c in features if c not in numeric]
        self.mean, self.std, self.flagged, self.categories = mean, std, flagged, categories
        self.feature_names = (
            self.numeric
            + [f"{c}_missing" for c in self.flagged]
            + [f"{c}={v}" for c in self.categorical for v in self.categories[c]]
        )

    def settings(self) -> dict:
        """The fitted parameters as plain data (what a deployment's server sends every hospital)."""
        return {"fitting": self.fitting, "features": self.features, "numeric": self.numeric,
                "mean": [float(m) for m in self.mean], "std": [float(d) for d in self.std],
                "flagged": self.flagged, "categories": self.categories}

    @classmethod
    def from_settings(cls, settings: dict) -> "Preprocessor":
        """The preprocessor ``settings()`` describes."""
        pre = cls.__new__(cls)
        pre._fit(settings["fitting"], settings["features"], list(settings["numeric"]),
                 np.array(settings["mean"], np.float64), np.array(settings["std"], np.float64),
                 list(settings["flagged"]), {c: list(v) for c, v in settings["categories"].items()})
        return pre

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """The model's float32 input matrix for raw rows with the training columns."""
        missing = [c for c in self.features if c not in df.columns]
        if missing:
            raise ValueError(f"columns: missing {missing}; the model was trained on {self.features}")
        if df.columns.duplicated().any():
            raise ValueError(f"columns: duplicated names {df.columns[df.columns.duplicated()].unique().tolist()}")
        values = df[self.numeric].astype("float64")
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = ((values.to_numpy() - self.mean) / self.std).astype(np.float32)
        check_numbers(values, ~np.isinf(scaled).any(axis=0), "standardised values overflow float32")
        scaled = np.nan_to_num(scaled, nan=0.0)
        flags = df[self.flagged].isna().to_numpy(dtype=np.float64)
        onehots = [
            (df[c].astype(str).to_numpy()[:, None] == np.array(self.categories[c])[None, :])
            & df[c].notna().to_numpy()[:, None]
            for c in self.categorical
        ]
        return np.hstack([scaled, flags, *onehots]).astype(np.float32)


def hospital_statistics(train: pd.DataFrame, features: list[str]) -> dict:
    """What one hospital's training rows tell ``Preprocessor.from_statistics``, computed from those rows only.

    ``{"rows": n, "numeric": {column: {"count", "sum", "squares"}}, "categories":
    {column: [...]}}``: per numeric column the number of non-missing values,
    their sum and their sum of squared deviations from the hospital's own mean
    (the sum of squares, centred for numerical stability); per categorical
    column the categories the hospital has. This is what a server sees.
    """
    numeric = [c for c in features if pd.api.types.is_numeric_dtype(train[c])]
    values = train[numeric].astype("float64")
    array = values.to_numpy()
    count = (~np.isnan(array)).sum(axis=0)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        total = np.nansum(array, axis=0)
        squares = np.nansum((array - np.where(count > 0, total / count, 0.0)) ** 2, axis=0)
    check_numbers(values, np.isfinite(total) & np.isfinite(squares), "the standard deviation overflows float64")
    return {"rows": len(train),
            "numeric": {c: {"count": int(k), "sum": float(t), "squares": float(q)}
                        for c, k, t, q in zip(numeric, count, total, squares)},
            "categories": {c: sorted(train[c].dropna().astype(str).unique()) for c in features if c not in numeric}}
