"""Hospital federations: each hospital's rows, its train/test split, one preprocessor.

Hospitals are data, not objects: all training rows live in one float32 matrix,
hospital ``i`` owns rows ``train_offsets[i]:train_offsets[i + 1]`` (same for
test). The pooled per-hospital test splits form the global held-out test set.
An image federation's rows are flattened pixels (``image_shape`` gives them back).
"""

import dataclasses
from collections.abc import Hashable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from fedsim.federation.preprocessing import PREPROCESSING, Preprocessor, hospital_statistics
from fedsim.federation.roster import ROSTER, roster_of
from fedsim.federation.rows import TEST_SIZE, binary_target, check_column, check_table, one_type, split_rows
from fedsim.federation.summary import summarize
from fedsim.plots import plot_federation
from fedsim.validation import Instance, Integer, NoneValue, Positive, Seq, Text, check

SCHEMES = ("iid", "dirichlet", "quantity")
SEED = Integer(min=0, max=2**32 - 1)


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
        check_table(df)
        check_column("target", df, target)
        check_column("site", df, site)
        if site == target:
            raise ValueError(f"site: the site and target columns must differ, both are {site!r}")
        test_size, seed = check("test_size", test_size, TEST_SIZE), check("seed", seed, SEED)
        check("name", name, Text())
        check("preprocessing", preprocessing, PREPROCESSING)
        if df[site].isna().any():
            raise ValueError(f"site: {int(df[site].isna().sum())} rows have no site")
        one_type("site", df[site])
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
        one_type("sites", pd.Series(sites, name="sites"))
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
            y = binary_target(rows[target], positive, local=True)
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
        check_table(df)
        if "hospital" in df.columns:
            raise ValueError("df: has a 'hospital' column, where partition puts each row's hospital; rename or drop it")
        check_column("target", df, target)
        if len(df) < n_hospitals * min_rows:
            raise ValueError(f"n_hospitals: {len(df)} rows cannot give {n_hospitals} hospitals {min_rows} rows each")
        rng = np.random.default_rng(seed)
        labels = binary_target(df[target], None) if scheme == "dirichlet" else np.zeros(len(df))
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

    def index_of(self, hospital, field: str = "hospital", ids_only: bool = False, also: str = "") -> int:
        """The index of ``hospital``: an id, or (unless ``ids_only``) an index; a ValueError naming ``field``
        and what is allowed (``also``: another form the caller takes, e.g. "None (all)") otherwise."""
        is_index = isinstance(hospital, (int, np.integer)) and not isinstance(hospital, bool)
        if is_index and not ids_only and 0 <= hospital < self.n_hospitals:
            return int(hospital)
        if not is_index and isinstance(hospital, Hashable) and hospital in self.hospitals:
            return self.hospitals.index(hospital)
        shown = list(self.hospitals[:10]) + (["..."] if self.n_hospitals > 10 else [])
        forms = [also] if also else []
        forms += [] if ids_only else [f"an index 0..{self.n_hospitals - 1}"]
        raise ValueError(f"{field}: unknown {hospital!r}; allowed: {' or '.join([*forms, f'a hospital id {shown}'])}")

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
            i = self.index_of(hospital)
            x = x[offsets[i]:offsets[i + 1]]
        return x.reshape(-1, *self.image_shape)

    def summary(self) -> pd.DataFrame:
        """One row per hospital: sizes, outcome prevalence, then mean age (if any) and missingness for
        tables or the mean pixel intensity for images."""
        return summarize(self)

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
