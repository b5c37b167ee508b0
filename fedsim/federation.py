"""Hospital federations: each hospital's rows, its train/test split, one preprocessor.

Hospitals are data, not objects: all training rows live in one float32 matrix,
hospital ``i`` owns rows ``train_offsets[i]:train_offsets[i + 1]`` (same for
test). The pooled per-hospital test splits form the global held-out test set.
An image federation's rows are flattened pixels (``image_shape`` gives them back).
"""

import dataclasses
import hashlib
import numbers
import zlib
from collections.abc import Hashable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

import data_synthetic
from fedsim.plots import plot_federation
from fedsim.validation import Instance, Integer, NoneValue, Options, Positive, Real, Seq, Text, check

SCHEMES = ("iid", "dirichlet", "quantity")
TEST_SIZE = Real(min=0, max=1, min_open=True, max_open=True)
SEED = Integer(min=0, max=2**32 - 1)
ROSTER = ("n_train", "n_test", "events_train", "sha256")  # what every party knows of each hospital
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
        _check_numbers(values, values.isna().all() | (np.isfinite(mean) & np.isfinite(std)),
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
                raise _too_large(column, "the standard deviation overflows float64")
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
        _check_numbers(values, ~np.isinf(scaled).any(axis=0), "standardised values overflow float32")
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
    _check_numbers(values, np.isfinite(total) & np.isfinite(squares), "the standard deviation overflows float64")
    return {"rows": len(train),
            "numeric": {c: {"count": int(k), "sum": float(t), "squares": float(q)}
                        for c, k, t, q in zip(numeric, count, total, squares)},
            "categories": {c: sorted(train[c].dropna().astype(str).unique()) for c in features if c not in numeric}}


def roster_of(fed: "Federation", indices) -> pd.DataFrame:
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


def _too_large(column, detail: str) -> ValueError:
    return ValueError(f"features: column {column!r} holds values too large to standardise ({detail}); rescale it")


def _check_numbers(values: pd.DataFrame, fine, overflow: str) -> None:
    """Refuse the first numeric column holding an infinity, or one not ``fine`` (values so large that ``overflow``)."""
    infinite = np.isinf(values.to_numpy()).any(axis=0)
    for column, inf, ok in zip(values.columns, infinite, np.asarray(fine)):
        if inf:
            found = ", ".join(sorted({str(v) for v in values[column] if np.isinf(v)}))
            raise ValueError(f"features: column {column!r} holds non-finite values ({found}); "
                             f"use NaN for a missing value")
        if not ok:
            raise _too_large(column, f"magnitude up to {np.nanmax(np.abs(values[column])):g}: {overflow}")


def _kind(value) -> str:
    if isinstance(value, str):
        return "string"
    return "number" if isinstance(value, (numbers.Number, np.bool_)) else type(value).__name__


def _one_type(field: str, values: pd.Series) -> None:
    """Refuse a column mixing value types: 1 and "1" would be two values (or one, written as text)."""
    if not (pd.api.types.is_object_dtype(values) or isinstance(values.dtype, pd.CategoricalDtype)):
        return
    examples = {}
    for value in pd.unique(values.dropna()):
        examples.setdefault(_kind(value), value)
    if len(examples) > 1:
        raise ValueError(f"{field}: column {values.name!r} mixes value types ({', '.join(sorted(examples))}: "
                         f"{', '.join(repr(examples[k]) for k in sorted(examples))}); convert it to one type")


def _table(df) -> None:
    """Refuse what is not a DataFrame with distinct column names, or one with the ``split`` column fedsim adds."""
    check("df", df, Instance(pd.DataFrame, what="a pandas DataFrame"))
    duplicated = df.columns[df.columns.duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"df: duplicated column names {duplicated}; rename them")
    if "split" in df.columns:
        raise ValueError("df: has a 'split' column, where fedsim marks each row train or test; rename it")


def _column(field: str, df: pd.DataFrame, name) -> None:
    if not isinstance(name, Hashable) or name not in df.columns:
        raise ValueError(f"{field}: column {name!r} not found; columns are {list(df.columns)}")


def _binary_target(values: pd.Series, positive, local: bool = False) -> np.ndarray:
    """0/1 labels from a two-valued column; ``positive`` names the class coded 1.

    ``local``: the rows of one hospital, which may have seen one class only
    (then ``positive`` must be given unless the labels are 0/1 or booleans).
    """
    if values.isna().any():
        raise ValueError(f"target: {int(values.isna().sum())} rows have no outcome; drop or label them")
    _one_type("target", values)
    classes = sorted(values.unique(), key=str)
    if local and len(classes) == 1:
        if positive is None and not (set(classes) <= {0, 1} or set(classes) <= {False, True}):
            raise ValueError(f"positive: these rows hold one outcome ({classes[0]!r}); name the positive class")
        return (values == (1 if positive is None else positive)).to_numpy(dtype=np.float32)
    if len(classes) != 2:
        raise ValueError(f"target: must be binary (two distinct values), found {len(classes)}: {classes[:5]}")
    if positive is None:
        positive = 1 if set(classes) <= {0, 1} or set(classes) == {False, True} else classes[1]
    if positive not in classes:
        raise ValueError(f"positive: {positive!r} is not a target value; allowed: {classes}")
    return (values == positive).to_numpy(dtype=np.float32)


def _split_mask(sites: np.ndarray, y: np.ndarray, test_size: float, seed: int) -> np.ndarray:
    """Stratified per-hospital test mask: a ``test_size`` share of each hospital's cases and controls.

    Each hospital's split is drawn from its own stream (the seed and its id), so
    a hospital splitting its own rows alone gets the split the federation gives it.
    """
    key, order = np.empty(len(y)), np.argsort(sites, kind="stable")
    names, starts, counts = np.unique(sites[order], return_index=True, return_counts=True)
    for site, start, n in zip(names, starts, counts):
        key[order[start:start + n]] = np.random.default_rng([seed, zlib.crc32(str(site).encode())]).random(n)
    frame = pd.DataFrame({"site": sites, "y": y, "key": key})
    rank = frame.sort_values("key", kind="stable").groupby(["site", "y"]).cumcount().sort_index()
    size = frame.groupby(["site", "y"])["y"].transform("size")
    is_test = (rank < np.round(test_size * size)).to_numpy()
    for rows, what, advice in ((~is_test, "training", "lower"), (is_test, "test", "raise")):
        empty = sorted(map(str, set(sites) - set(sites[rows])))
        if empty:
            raise ValueError(f"test_size: {test_size} leaves {len(empty)} hospital(s) without {what} rows, e.g. "
                             f"{empty[0]!r} ({int((sites == empty[0]).sum())} rows); {advice} test_size or give "
                             f"those hospitals more rows")
    return is_test


def split_rows(df: pd.DataFrame, target: str, site: str, test_size: float, seed: int, positive=None,
               local: bool = False) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """``df`` in hospital-major order with a ``split`` column ("train"/"test"), its 0/1 labels, and the order.

    Each hospital's rows keep their order and are split by ``_split_mask``
    (stratified, each hospital's own stream): a hospital splitting its own
    rows alone (``local``: it may have seen one outcome only) gets the split
    the whole table gives it. ``order``: the row of ``df`` each returned row
    comes from (to reorder arrays kept beside the table, such as images).
    """
    y = _binary_target(df[target], positive, local=local)
    sites = df[site].astype(str).to_numpy()
    is_test = _split_mask(sites, y, test_size, seed)
    order = np.lexsort((np.arange(len(df)), sites))  # hospital-major: each hospital is one contiguous slice
    data = df.iloc[order].assign(split=np.where(is_test[order], "test", "train")).reset_index(drop=True)
    return data, y[order], order


@dataclass(frozen=True, eq=False)
class Federation:
    """Hospitals' preprocessed train/test rows (or flattened images) plus what is needed to explain them.

    A federation is what one party holds. In a simulation that is every
    hospital's rows. In a deployment, a hospital holds its own rows only and
    the server holds none (``Federation.held_by``). Every party knows the
    ``roster``: every hospital's name, row counts, event count and the SHA-256
    of its rows. A hospital whose rows are not held spans no rows of the
    arrays, and ``train_rows`` / ``test_rows`` refuse it.
    """

    hospitals: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    train_offsets: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    test_offsets: np.ndarray
    preprocessor: Preprocessor | None  # None for images: pixels are model inputs as they are
    data: pd.DataFrame
    target: str
    site: str
    seed: int
    name: str = "custom"
    sites: pd.DataFrame | None = None  # per-hospital profile of a synthetic scenario (kind, protocol, ...)
    image_shape: tuple[int, int] | None = None  # (height, width) of an image federation's rows; None for tables
    provenance: dict | None = None  # where the data came from: a synthetic scenario's settings (None: the user's)
    reported: pd.DataFrame | None = None  # the roster as each hospital told it, where this party lacks its rows

    @classmethod
    def from_dataframe(
        cls,
        df: pd.DataFrame,
        target: str,
        site: str,
        test_size: float = 0.2,
        seed: int = 0,
        features: list[str] | None = None,
        positive=None,
        name: str = "custom",
        preprocessing: str = "federated",
    ) -> "Federation":
        """One hospital per distinct value of ``site``; every other column is a feature.

        ``target`` must be binary (0/1, bool, or two values with ``positive``
        naming the class coded 1, the later one in sort order by default).
        Numeric and string columns are accepted, missing values are imputed (see
        ``Preprocessor``). Each hospital's rows are split into train and test,
        stratified by outcome, before any statistic is computed.
        ``preprocessing="federated"`` (default) fits the preprocessor from each
        hospital's summary statistics of its own training rows
        (``hospital_statistics``), as a deployment must; ``"pooled"`` on the
        pooled training rows (equal up to floating-point rounding).
        """
        _table(df)
        _column("target", df, target)
        _column("site", df, site)
        if site == target:
            raise ValueError(f"site: the site and target columns must differ, both are {site!r}")
        test_size, seed = check("test_size", test_size, TEST_SIZE), check("seed", seed, SEED)
        check("name", name, Text())
        check("preprocessing", preprocessing, PREPROCESSING)
        if df[site].isna().any():
            raise ValueError(f"site: {int(df[site].isna().sum())} rows have no site")
        _one_type("site", df[site])
        if df[site].nunique() < 2:
            raise ValueError(f"site: a federation needs at least 2 sites, column {site!r} has {df[site].nunique()}")
        features = check("features", features, NoneValue(), Seq(Instance(Hashable), what="a list of column names"))
        features = [c for c in df.columns if c not in (target, site)] if features is None else list(features)
        unknown = [c for c in features if c not in df.columns or c in (target, site)]
        if unknown or not features:
            raise ValueError(f"features: {unknown or 'none'} not usable; allowed: columns other than target and site")
        odd = [c for c in features if not (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_object_dtype(df[c])
                                          or isinstance(df[c].dtype, (pd.CategoricalDtype, pd.StringDtype)))]
        if odd:
            raise ValueError(f"features: columns {odd} are neither numeric nor categorical; drop or convert them")

        data, y, _ = split_rows(df, target, site, test_size, seed, positive)
        sites, is_test = data[site].astype(str).to_numpy(), (data["split"] == "test").to_numpy()
        train = data[~is_test]
        pre = (Preprocessor(train, features) if preprocessing == "pooled" else Preprocessor.from_statistics(
            features, [hospital_statistics(rows, features) for _, rows in train.groupby(sites[~is_test])]))
        return cls._split(pre.transform(data), y, sites, is_test, preprocessor=pre, data=data, target=target,
                          site=site, seed=seed, name=name)

    @classmethod
    def from_images(
        cls,
        images: np.ndarray,
        labels,
        sites,
        test_size: float = 0.2,
        seed: int = 0,
        name: str = "images",
        data: pd.DataFrame | None = None,
        target: str = "label",
        site: str = "hospital",
    ) -> "Federation":
        """One hospital per distinct value of ``sites``; each image's pixels are one row of model inputs.

        ``images`` is (n, height, width) with values in [0, 1], ``labels`` is 0/1
        and ``sites`` the hospital of each image. Pixels are kept as they are
        (flattened to float32, no standardisation); ``images()`` reshapes rows
        back. The split is ``from_dataframe``'s: stratified per hospital.
        ``data`` (optional, one row per image) holds attributes kept beside the
        ``site``, ``target`` and ``split`` columns of ``Federation.data``.
        """
        images = np.asarray(images)
        if images.ndim != 3 or 0 in images.shape:
            raise ValueError(f"images: expected a non-empty array (n, height, width), got shape {images.shape}")
        if images.dtype == bool or not np.issubdtype(images.dtype, np.number):
            raise ValueError(f"images: expected numeric pixel values, got dtype {images.dtype}")
        if not (np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1):
            raise ValueError("images: pixel values must be finite and in [0, 1]")
        n = len(images)
        labels, sites = np.asarray(labels), np.asarray(sites, dtype=object)  # objects: 1 and "1" stay apart
        for field, values in (("labels", labels), ("sites", sites)):
            if values.shape != (n,):
                raise ValueError(f"{field}: expected one value per image, shape ({n},), got shape {values.shape}")
        classes = sorted(pd.unique(labels).tolist(), key=str)
        if set(classes) != {0, 1}:
            raise ValueError(f"labels: must be binary 0/1 with both classes present, found {classes[:5]}")
        if pd.isna(sites).any():
            raise ValueError(f"sites: {int(pd.isna(sites).sum())} images have no site")
        _one_type("sites", pd.Series(sites, name="sites"))
        sites = sites.astype(str)
        if len(set(sites)) < 2:
            raise ValueError(f"sites: a federation needs at least 2 sites, got {len(set(sites))}")
        if data is not None and (not isinstance(data, pd.DataFrame) or len(data) != n or "split" in data.columns):
            raise ValueError(f"data: expected a pandas DataFrame with one row per image ({n}) and no 'split' column")
        test_size, seed = check("test_size", test_size, TEST_SIZE), check("seed", seed, SEED)
        check("name", name, Text())
        if site == target:
            raise ValueError(f"site: the site and target columns need different names, both are {site!r}")

        frame = pd.DataFrame(index=range(n)) if data is None else data.reset_index(drop=True)
        frame, y, order = split_rows(frame.assign(**{site: sites, target: labels}), target, site, test_size, seed)
        x = images.reshape(n, -1)[order].astype(np.float32, copy=False)
        return cls._split(x, y, frame[site].to_numpy(), (frame["split"] == "test").to_numpy(), preprocessor=None,
                          data=frame, target=target, site=site, seed=seed, name=name, image_shape=images.shape[1:])

    @classmethod
    def held_by(cls, roster: pd.DataFrame, rows: pd.DataFrame | None, preprocessor: Preprocessor | None,
                target: str, site: str, seed: int = 0, positive=None, images: np.ndarray | None = None,
                **fields) -> "Federation":
        """The federation as one party of a deployment holds it: the ``rows`` it has, the ``roster`` of all.

        ``rows``: raw rows (a table's columns, or an image federation's
        attributes beside ``images``, one per image) of the hospitals this
        party holds, as ``split_rows`` returns them; ``None`` for a server,
        which holds none. ``preprocessor``: the one fitted from
        every hospital's statistics (``Preprocessor.from_statistics``; None for
        images). ``fields``: ``name``, ``provenance``, ``sites``, ``image_shape``.
        """
        hospitals = tuple(roster.index)
        if rows is None or not len(rows):
            width = len(preprocessor.feature_names) if preprocessor is not None else int(np.prod(fields["image_shape"]))
            rows = pd.DataFrame(columns=[site, target, "split"])
            x, y, sites, is_test = (np.zeros((0, width), np.float32), np.zeros(0, np.float32), np.array([], str),
                                    np.zeros(0, bool))
        else:
            y = _binary_target(rows[target], positive, local=True)
            sites, is_test = rows[site].astype(str).to_numpy(), (rows["split"] == "test").to_numpy()
            unknown = sorted(set(sites) - set(hospitals))
            if unknown:
                raise ValueError(f"site: {unknown[:3]} are not hospitals of the federation {list(hospitals)[:5]}")
            x = preprocessor.transform(rows) if images is None else images.reshape(len(images), -1).astype(np.float32)
        held = cls._split(x, y, sites, is_test, preprocessor=preprocessor, data=rows, target=target, site=site,
                          seed=seed, hospitals=hospitals, **fields)
        mine = roster_of(held, [hospitals.index(h) for h in sorted(set(sites))])
        told = roster.loc[mine.index, ["n_train", "n_test"]]
        if not np.array_equal(told.to_numpy(np.int64), mine[["n_train", "n_test"]].to_numpy(np.int64)):
            raise ValueError(f"roster: the rows held here ({mine[['n_train', 'n_test']].to_dict('index')}) are not "
                             f"those the roster names ({told.to_dict('index')})")
        reported = roster.copy()
        reported.loc[mine.index, list(ROSTER)] = mine  # what this party computes of its own rows
        return dataclasses.replace(held, reported=reported)

    @classmethod
    def _split(cls, x, y, site_of, is_test, hospitals=None, **fields) -> "Federation":
        """The federation of hospital-major rows ``x``, ``y`` (hospital ``site_of``) split by ``is_test``."""
        hospitals = tuple(sorted(set(site_of))) if hospitals is None else hospitals

        def offsets(mask):
            counts = pd.Series(site_of[mask]).value_counts().reindex(hospitals, fill_value=0)
            return np.concatenate([[0], np.cumsum(counts.to_numpy())])

        return cls(
            hospitals=hospitals,
            x_train=np.ascontiguousarray(x[~is_test]),
            y_train=y[~is_test],
            train_offsets=offsets(~is_test),
            x_test=np.ascontiguousarray(x[is_test]),
            y_test=y[is_test],
            test_offsets=offsets(is_test),
            **fields,
        )

    @classmethod
    def partition(
        cls,
        df: pd.DataFrame,
        target: str,
        n_hospitals: int,
        scheme: str = "iid",
        alpha: float = 0.5,
        seed: int = 0,
        test_size: float = 0.2,
        min_rows: int = 10,
    ) -> "Federation":
        """Split one table into ``n_hospitals`` virtual hospitals.

        ``iid``: uniform random assignment. ``dirichlet``: each outcome class is
        spread over hospitals with Dirichlet(alpha) proportions (label skew;
        smaller alpha = more skew). ``quantity``: hospital sizes follow
        Dirichlet(alpha) proportions. Every hospital gets at least ``min_rows``.
        """
        if not isinstance(scheme, str) or scheme not in SCHEMES:
            raise ValueError(f"scheme: unknown {scheme!r}; allowed: {list(SCHEMES)}")
        n_hospitals = check("n_hospitals", n_hospitals, Integer(min=2))
        alpha, min_rows = check("alpha", alpha, Positive()), check("min_rows", min_rows, Integer(min=1))
        seed = check("seed", seed, SEED)
        _table(df)
        if "hospital" in df.columns:
            raise ValueError("df: has a 'hospital' column, where partition puts each row's hospital; rename or drop it")
        _column("target", df, target)
        if len(df) < n_hospitals * min_rows:
            raise ValueError(f"n_hospitals: {len(df)} rows cannot give {n_hospitals} hospitals {min_rows} rows each")
        rng = np.random.default_rng(seed)
        labels = _binary_target(df[target], None) if scheme == "dirichlet" else np.zeros(len(df))
        for _ in range(100):
            site = np.empty(len(df), dtype=np.int64)
            for label in np.unique(labels):
                rows = rng.permutation(np.flatnonzero(labels == label))
                share = (np.full(n_hospitals, 1.0 / n_hospitals) if scheme == "iid"
                         else rng.dirichlet([alpha] * n_hospitals))
                cuts = np.round(np.cumsum(share)[:-1] * len(rows)).astype(int)
                for h, part in enumerate(np.split(rows, cuts)):
                    site[part] = h
            if np.bincount(site, minlength=n_hospitals).min() >= min_rows:
                break
        else:
            raise ValueError(f"alpha: {alpha} is too skewed to give every hospital {min_rows} rows; raise alpha")
        width = max(3, len(str(n_hospitals - 1)))
        sites = pd.Series([f"H{h:0{width}d}" for h in site], index=df.index)
        return cls.from_dataframe(df.assign(hospital=sites), target=target, site="hospital",
                                  test_size=test_size, seed=seed, name=f"{scheme} partition")

    # --- views -------------------------------------------------------------------

    @property
    def n_hospitals(self) -> int:
        return len(self.hospitals)

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def feature_names(self) -> list[str]:
        """Names of the model inputs: encoded columns of a table, ``pixel[row,col]`` of images."""
        if self.image_shape is None:
            return list(self.preprocessor.feature_names)
        height, width = self.image_shape
        return [f"pixel[{r},{c}]" for r in range(height) for c in range(width)]

    @cached_property
    def roster(self) -> pd.DataFrame:
        """One row per hospital: ``n_train``, ``n_test``, ``events_train`` and the ``sha256`` of its rows.

        What every party of a deployment knows: the hospitals tell it in the
        first round (``reported``); computed from the rows where all are held.
        """
        if self.reported is not None:
            return self.reported
        return roster_of(self, range(self.n_hospitals))

    @property
    def holds_all(self) -> bool:
        """Whether this party holds every hospital's rows (a simulation), not some (a hospital) or none (a server)."""
        return self.reported is None

    @property
    def n_train(self) -> np.ndarray:
        """Training rows per hospital, held here or not."""
        return np.diff(self.train_offsets) if self.reported is None else self.reported["n_train"].to_numpy()

    @property
    def n_test(self) -> np.ndarray:
        """Test rows per hospital, held here or not."""
        return np.diff(self.test_offsets) if self.reported is None else self.reported["n_test"].to_numpy()

    def holds(self, i: int) -> bool:
        """Whether this party holds hospital ``i``'s rows."""
        return self.reported is None or self.train_offsets[i + 1] > self.train_offsets[i]

    def _held(self, i: int) -> None:
        if not self.holds(i):
            hospital = self.hospitals[i]
            raise ValueError(f"hospital: {hospital}'s rows are held by {hospital} only, not by this party")

    def train_rows(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Hospital ``i``'s training features and labels (views, no copy)."""
        self._held(i)
        lo, hi = self.train_offsets[i], self.train_offsets[i + 1]
        return self.x_train[lo:hi], self.y_train[lo:hi]

    def test_rows(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Hospital ``i``'s test features and labels (views, no copy)."""
        self._held(i)
        lo, hi = self.test_offsets[i], self.test_offsets[i + 1]
        return self.x_test[lo:hi], self.y_test[lo:hi]

    def images(self, split: str = "train", hospital: int | str | None = None) -> np.ndarray:
        """Images (n, height, width) of one split, of every hospital or of one (index or id); a view, no copy."""
        if self.image_shape is None:
            raise ValueError(f"images: federation {self.name!r} holds table rows, not images")
        if split not in ("train", "test"):
            raise ValueError(f"split: must be 'train' or 'test', got {split!r}")
        x, offsets = (self.x_train, self.train_offsets) if split == "train" else (self.x_test, self.test_offsets)
        if hospital is not None:
            index = isinstance(hospital, (int, np.integer)) and not isinstance(hospital, bool)
            if not (index and 0 <= hospital < self.n_hospitals or not index and hospital in self.hospitals):
                raise ValueError(f"hospital: expected an index 0 .. {self.n_hospitals - 1} or an id such as "
                                 f"{self.hospitals[0]!r}, got {hospital!r}")
            i = int(hospital) if index else self.hospitals.index(hospital)
            x = x[offsets[i]:offsets[i + 1]]
        return x.reshape(-1, *self.image_shape)

    def _per_hospital(self, train: np.ndarray, test: np.ndarray) -> pd.Series:
        """Mean per hospital of one value per training row and one per test row."""
        return pd.Series(
            np.concatenate([train, test]),
            index=np.concatenate([np.repeat(self.hospitals, np.diff(self.train_offsets)),
                                  np.repeat(self.hospitals, np.diff(self.test_offsets))]),
        ).groupby(level=0).mean()

    def summary(self) -> pd.DataFrame:
        """One row per hospital: sizes, outcome prevalence, then mean age (if any) and missingness for
        tables or the mean pixel intensity for images."""
        grouped = self.data.groupby(self.site, sort=True)
        table = pd.DataFrame({
            "n": grouped.size(),
            "n_train": np.diff(self.train_offsets),
            "n_test": np.diff(self.test_offsets),
            "prevalence": self._per_hospital(self.y_train, self.y_test),
        })
        if self.image_shape is not None:
            table["intensity_mean"] = self._per_hospital(self.x_train.mean(axis=1), self.x_test.mean(axis=1))
            return table.rename_axis("hospital").reset_index()
        features = self.preprocessor.features
        if "age" in features:
            table["age_mean"] = grouped["age"].mean()
        table["missing_rate"] = self.data[features].isna().groupby(self.data[self.site]).mean().mean(axis=1)
        return table.rename_axis("hospital").reset_index()

    def plot(self):
        """Seaborn panels of hospital heterogeneity; returns the matplotlib Figure."""
        return plot_federation(self)

    def __repr__(self) -> str:
        rows = f"{int(self.n_train.sum())} train / {int(self.n_test.sum())} test"
        if self.image_shape is not None:
            height, width = self.image_shape
            return f"Federation({self.name!r}, {self.n_hospitals} hospitals, {rows} images of {height}x{width} pixels)"
        pooled = ", preprocessing fit on pooled rows" if self.preprocessor.fitting == "pooled" else ""
        return (f"Federation({self.name!r}, {self.n_hospitals} hospitals, {rows} rows, {self.n_features} model inputs"
                f"{pooled})")  # in the config hash: a pooled fit is another configuration


def synthetic_federation(
    scenario: str = "icu_mortality",
    n_hospitals: int = 20,
    n_patients: int | None = None,
    seed: int = 0,
    test_size: float = 0.2,
    image_size: int | None = None,
    preprocessing: str = "federated",
    **knobs: float,
) -> Federation:
    """A federation of synthetic hospitals from a ``data_synthetic`` scenario.

    Scenario cards (tables) take the knobs of ``data_synthetic.KNOBS`` (0 = IID)
    and ``preprocessing`` (``Federation.from_dataframe``'s). Image scenarios
    (``data_synthetic.IMAGE_SCENARIOS``: ``lesion_scans``) take ``image_size``
    (32 by default, or 64) and the knobs of ``data_synthetic.SCAN_KNOBS``.
    """
    check("n_hospitals", n_hospitals, Integer(min=2))
    check("preprocessing", preprocessing, PREPROCESSING)
    if scenario in data_synthetic.IMAGE_SCENARIOS:
        if preprocessing != "federated":
            raise ValueError(f"preprocessing: {scenario!r} keeps pixels as they are, nothing is fitted or pooled; "
                             f"{preprocessing!r} is for table scenarios")
        unknown = sorted(set(knobs) - set(data_synthetic.SCAN_KNOBS))
        if unknown:
            raise ValueError(f"knobs: unknown {unknown} for {scenario!r}; allowed: {list(data_synthetic.SCAN_KNOBS)}")
        scans = data_synthetic.generate_scans(n_hospitals=n_hospitals, n_patients=n_patients, seed=seed,
                                              image_size=32 if image_size is None else image_size, **knobs)
        fed = Federation.from_images(scans.images, scans.patients["lesion"], scans.patients["hospital"],
                                     test_size=test_size, seed=seed, name=scenario, data=scans.patients,
                                     target="lesion", site="hospital")
        return dataclasses.replace(fed, sites=scans.hospitals, provenance=synthetic_provenance(
            scenario, n_hospitals, n_patients, seed, test_size, {"image_size": fed.image_shape[0], **knobs}))
    if image_size is not None:
        raise ValueError(f"image_size: only for image scenarios {list(data_synthetic.IMAGE_SCENARIOS)}, "
                         f"not {scenario!r}")
    allowed = data_synthetic.list_scenarios() + list(data_synthetic.IMAGE_SCENARIOS)
    if isinstance(scenario, str) and scenario not in allowed:
        raise ValueError(f"scenario: must be one of {allowed}, got {scenario!r}")
    cohort = data_synthetic.generate(scenario, n_hospitals=n_hospitals, n_patients=n_patients, seed=seed, **knobs)
    fed = Federation.from_dataframe(cohort.patients, target=cohort.card.target, site="hospital",
                                    test_size=test_size, seed=seed, name=scenario, preprocessing=preprocessing)
    provenance = synthetic_provenance(scenario, n_hospitals, n_patients, seed, test_size, knobs)
    return dataclasses.replace(fed, sites=cohort.hospitals, provenance={**provenance, "preprocessing": preprocessing})


def synthetic_provenance(scenario, n_hospitals, n_patients, seed, test_size, knobs) -> dict:
    """A synthetic federation's provenance: the generator's settings, as plain data."""
    return {"source": "synthetic", "scenario": scenario, "n_hospitals": n_hospitals, "n_patients": n_patients,
            "seed": seed, "test_size": test_size,
            "knobs": {k: int(v) if k == "image_size" else float(v) for k, v in knobs.items()}}
