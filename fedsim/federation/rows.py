"""Checks of a user's table (one type per column, finite numbers, a binary target) and the train/test split."""

import numbers
import zlib
from collections.abc import Hashable

import numpy as np
import pandas as pd

from fedsim.validation import Instance, Real, check

TEST_SIZE = Real(min=0, max=1, min_open=True, max_open=True)


def too_large(column, detail: str) -> ValueError:
    return ValueError(f"features: column {column!r} holds values too large to standardise ({detail}); rescale it")


def check_numbers(values: pd.DataFrame, fine, overflow: str) -> None:
    """Refuse the first numeric column holding an infinity, or one not ``fine`` (values so large that ``overflow``)."""
    infinite = np.isinf(values.to_numpy()).any(axis=0)
    for column, inf, ok in zip(values.columns, infinite, np.asarray(fine)):
        if inf:
            found = ", ".join(sorted({str(v) for v in values[column] if np.isinf(v)}))
            raise ValueError(f"features: column {column!r} holds non-finite values ({found}); "
                             f"use NaN for a missing value")
        if not ok:
            raise too_large(column, f"magnitude up to {np.nanmax(np.abs(values[column])):g}: {overflow}")


def kind_of(value) -> str:
    if isinstance(value, str):
        return "string"
    return "number" if isinstance(value, (numbers.Number, np.bool_)) else type(value).__name__


def one_type(field: str, values: pd.Series) -> None:
    """Refuse a column mixing value types: 1 and "1" would be two values (or one, written as text)."""
    if not (pd.api.types.is_object_dtype(values) or isinstance(values.dtype, pd.CategoricalDtype)):
        return
    examples = {}
    for value in pd.unique(values.dropna()):
        examples.setdefault(kind_of(value), value)
    if len(examples) > 1:
        raise ValueError(f"{field}: column {values.name!r} mixes value types ({', '.join(sorted(examples))}: "
                         f"{', '.join(repr(examples[k]) for k in sorted(examples))}); convert it to one type")


def check_table(df) -> None:
    """Refuse what is not a DataFrame with distinct column names, or one with the ``split`` column fedsim adds."""
    check("df", df, Instance(pd.DataFrame, what="a pandas DataFrame"))
    duplicated = df.columns[df.columns.duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"df: duplicated column names {duplicated}; rename them")
    if "split" in df.columns:
        raise ValueError("df: has a 'split' column, where fedsim marks each row train or test; rename it")


def check_column(field: str, df: pd.DataFrame, name) -> None:
    if not isinstance(name, Hashable) or name not in df.columns:
        raise ValueError(f"{field}: column {name!r} not found; columns are {list(df.columns)}")


def binary_target(values: pd.Series, positive, local: bool = False) -> np.ndarray:
    """0/1 labels from a two-valued column; ``positive`` names the class coded 1.

    ``local``: the rows of one hospital, which may have seen one class only
    (then ``positive`` must be given unless the labels are 0/1 or booleans).
    """
    if values.isna().any():
        raise ValueError(f"target: {int(values.isna().sum())} rows have no outcome; drop or label them")
    one_type("target", values)
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


def split_mask(sites: np.ndarray, y: np.ndarray, test_size: float, seed: int) -> np.ndarray:
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

    Each hospital's rows keep their order and are split by ``split_mask``
    (stratified, each hospital's own stream): a hospital splitting its own
    rows alone (``local``: it may have seen one outcome only) gets the split
    the whole table gives it. ``order``: the row of ``df`` each returned row
    comes from (to reorder arrays kept beside the table, such as images).
    """
    y = binary_target(df[target], positive, local=local)
    sites = df[site].astype(str).to_numpy()
    is_test = split_mask(sites, y, test_size, seed)
    order = np.lexsort((np.arange(len(df)), sites))  # hospital-major: each hospital is one contiguous slice
    data = df.iloc[order].assign(split=np.where(is_test[order], "test", "train")).reset_index(drop=True)
    return data, y[order], order
