import numpy as np
import pandas as pd
import pytest

import fedsim as fs
from fedsim.federation import Preprocessor
from fedsim.models import logreg
from fedsim.training import initial_weights


def test_from_dataframe_splits_each_site_and_encodes_columns(mixed_table):
    fed = fs.Federation.from_dataframe(mixed_table, target="outcome", site="site", positive="died", seed=0)
    assert fed.hospitals == ("east", "north", "south")
    assert len(fed.y_train) + len(fed.y_test) == len(mixed_table)
    assert fed.y_train.mean() == pytest.approx((mixed_table.outcome == "died").mean(), abs=0.03)
    assert fed.preprocessor.feature_names == ["age", "lactate", "lactate_missing",
                                              "ward=icu", "ward=medicine", "ward=surgery"]
    assert np.isfinite(fed.x_train).all() and np.isfinite(fed.x_test).all()
    summary = fed.summary()
    assert list(summary.hospital) == list(fed.hospitals)
    assert (summary.n == summary.n_train + summary.n_test).all()
    # About 20% of every hospital is held out, stratified by outcome.
    assert np.allclose(summary.n_test / summary.n, 0.2, atol=0.02)
    for i in range(fed.n_hospitals):
        x, y = fed.test_rows(i)
        rows = fed.data[(fed.data.site == fed.hospitals[i]) & (fed.data.split == "test")]
        assert len(y) == len(rows)


def test_preprocessing_uses_training_rows_only(mixed_table):
    fed = fs.Federation.from_dataframe(mixed_table, target="outcome", site="site", positive="died", seed=0)
    train = fed.data[fed.data.split == "train"]
    assert fed.preprocessor.mean[0] == pytest.approx(train.age.mean())
    assert fed.preprocessor.mean[0] != pytest.approx(fed.data.age.mean(), abs=1e-9)
    # Standardised training columns: mean 0, sd 1.
    assert np.allclose(fed.x_train[:, 0].mean(), 0, atol=1e-5)
    assert np.allclose(fed.x_train[:, 0].std(), 1, atol=1e-4)


def test_missing_and_unseen_values_encode_safely():
    train = pd.DataFrame({"x": [1.0, np.nan, 3.0], "c": ["a", "b", None]})
    pre = Preprocessor(train, ["x", "c"])
    out = pre.transform(pd.DataFrame({"x": [np.nan, 2.0], "c": ["zzz", "a"]}))
    # x missing -> mean (0 after scaling) with its flag; unseen category -> all zeros.
    assert out.tolist() == [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]
    with pytest.raises(ValueError, match="columns: missing"):
        pre.transform(pd.DataFrame({"x": [1.0]}))


@pytest.mark.parametrize(
    "change, kwargs, field",
    [
        (lambda df: df, {"target": "nope"}, "target"),
        (lambda df: df, {"site": "nope"}, "site"),
        (lambda df: df.assign(site="one"), {}, "site"),
        (lambda df: df.assign(outcome=np.arange(len(df)) % 3), {}, "target"),
        (lambda df: df.assign(outcome=df.outcome.where(df.index > 5)), {}, "target"),
        (lambda df: df, {"test_size": 1.5}, "test_size"),
        (lambda df: df, {"positive": "maybe"}, "positive"),
        (lambda df: df.assign(when=pd.Timestamp("2024-01-01")), {}, "features"),
    ],
)
def test_bad_tables_raise_naming_the_field(mixed_table, change, kwargs, field):
    args = {"target": "outcome", "site": "site", **kwargs}
    with pytest.raises(ValueError, match=f"^{field}:"):
        fs.Federation.from_dataframe(change(mixed_table), **args)


def test_binary_targets_in_any_coding(mixed_table):
    as_bool = mixed_table.assign(outcome=mixed_table.outcome == "died")
    as_int = mixed_table.assign(outcome=(mixed_table.outcome == "died").astype(int))
    a = fs.Federation.from_dataframe(as_bool, target="outcome", site="site")
    b = fs.Federation.from_dataframe(as_int, target="outcome", site="site")
    assert np.array_equal(a.y_train, b.y_train) and a.y_train.sum() > 0


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "quantity"])
def test_partition_schemes(mixed_table, scheme):
    fed = fs.Federation.partition(mixed_table.drop(columns="site"), target="outcome", n_hospitals=5,
                                  scheme=scheme, alpha=0.3, seed=0)
    sizes = fed.summary().n
    assert fed.n_hospitals == 5 and sizes.sum() == len(mixed_table) and sizes.min() >= 10
    if scheme == "iid":
        assert sizes.max() - sizes.min() <= 1
    if scheme == "quantity":
        assert sizes.max() > 2 * sizes.min()
    if scheme == "dirichlet":
        assert fed.summary().prevalence.std() > 0.1


def test_partition_rejects_bad_arguments(mixed_table):
    with pytest.raises(ValueError, match="^scheme:"):
        fs.Federation.partition(mixed_table, target="outcome", n_hospitals=3, scheme="random")
    with pytest.raises(ValueError, match="^n_hospitals:"):
        fs.Federation.partition(mixed_table, target="outcome", n_hospitals=1)


def test_synthetic_federation_is_deterministic_and_summarised(small_fed):
    again = fs.synthetic_federation("icu_mortality", n_hospitals=4, n_patients=1200, seed=1)
    assert np.array_equal(small_fed.x_train, again.x_train)
    assert np.array_equal(small_fed.y_test, again.y_test)
    summary = small_fed.summary()
    assert {"hospital", "n", "n_train", "n_test", "prevalence", "age_mean", "missing_rate"} <= set(summary)
    assert summary.n_train.sum() == len(small_fed.y_train)
    assert list(small_fed.sites.hospital) == list(small_fed.hospitals)
    assert (small_fed.sites.n_patients.to_numpy() == summary.n.to_numpy()).all()
    with pytest.raises(ValueError, match="scenario"):
        fs.synthetic_federation("no_such_scenario")


def test_federation_plot_has_four_panels(small_fed):
    fig = small_fed.plot()
    assert len(fig.axes) >= 4


@pytest.mark.parametrize(
    "change, kwargs, message",
    [
        (lambda df: df.assign(outcome=[1 if i % 3 else "1" for i in df.index]), {},  # two "classes": 1 and "1"
         r"^target: column 'outcome' mixes value types \(number, string: 1, '1'\); convert it to one type"),
        (lambda df: df.assign(outcome=[int(d) if i % 2 else str(int(d)) for i, d in enumerate(df.outcome == "died")]),
         {}, "^target: .*mixes value types"),
        (lambda df: df.assign(site=[1 if i % 2 else "1" for i in df.index]), {}, r"^site: .*mixes value types \("),
        (lambda df: df.assign(lactate=np.full(len(df), np.inf)), {}, r"^features: column 'lactate' holds non-finite "
                                                                     r"values \(inf\)"),
        (lambda df: df.assign(age=np.where(df.index % 2, -np.inf, df.age)), {}, r"^features: column 'age' .*\(-inf\)"),
        (lambda df: df.assign(age=np.where(df.index == 0, 1e308, df.age)), {},
         "^features: column 'age' holds values too large to standardise"),
        (lambda df: df.assign(age=np.where(df.index % 2, 1e200, -1e200)), {}, "^features: column 'age' .* too large"),
        (lambda df: df, {"test_size": 0.999}, r"^test_size: 0.999 leaves 3 hospital\(s\) without training rows"),
        (lambda df: df, {"test_size": 0.001}, r"^test_size: 0.001 leaves 3 hospital\(s\) without test rows"),
        (lambda df: pd.concat([df, df.head(2).assign(site="west")]), {},
         "^test_size: 0.2 leaves 1 hospital.* without test rows, e.g. 'west' \\(2 rows\\)"),
        (lambda df: df, {"test_size": "0.2"}, "^test_size: must be a finite number > 0 and < 1, got '0.2'"),
        (lambda df: df, {"seed": 2**32}, "^seed: must be an integer >= 0 and <= "),
        (lambda df: pd.concat([df, df[["age"]]], axis=1), {}, r"^df: duplicated column names \['age'\]"),
        (lambda df: df.assign(split="x"), {}, "^df: has a 'split' column"),
        (lambda df: df, {"features": "age"}, "^features: must be None or a list of column names"),
        (lambda df: df, {"target": ["outcome"]}, r"^target: column \['outcome'\] not found"),
        (lambda df: df, {"site": "outcome"}, "^site: the site and target columns must differ"),
        (lambda df: df.to_dict(), {}, "^df: must be a pandas DataFrame"),
    ],
)
def test_tables_fedsim_would_misread_are_refused(mixed_table, change, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fs.Federation.from_dataframe(change(mixed_table), **{"target": "outcome", "site": "site", **kwargs})


def test_one_type_per_column_is_fine(mixed_table):
    numbered = mixed_table.assign(site=mixed_table.site.map({"north": 1, "south": 2, "east": 3}),
                                  outcome=(mixed_table.outcome == "died").astype(object))
    fed = fs.Federation.from_dataframe(numbered, target="outcome", site="site")
    assert fed.hospitals == ("1", "2", "3")
    assert fed.y_train.sum() + fed.y_test.sum() == (mixed_table.outcome == "died").sum()


def test_preprocessor_refuses_values_it_cannot_standardise():
    for values, message in (([1.0, np.inf, 3.0], r"non-finite values \(inf\)"),
                            ([1.0, 2.0, 1e308], "the standard deviation overflows float64"),
                            ([1e154, -1e154, 0.0], "the standard deviation overflows float64")):
        with pytest.raises(ValueError, match=f"^features: column 'x' .*{message}"):
            Preprocessor(pd.DataFrame({"x": values}), ["x"])
    pre = Preprocessor(pd.DataFrame({"x": [1.0, 2.0, np.nan]}), ["x"])
    with pytest.raises(ValueError, match="^features: column 'x' .*standardised values overflow float32"):
        pre.transform(pd.DataFrame({"x": [1e45]}))
    with pytest.raises(ValueError, match=r"^features: column 'x' holds non-finite values \(-inf\)"):
        pre.transform(pd.DataFrame({"x": [-np.inf]}))
    with pytest.raises(ValueError, match=r"^columns: duplicated names \['x'\]"):
        pre.transform(pd.DataFrame([[1.0, 2.0]], columns=["x", "x"]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": "0.5"}, "^alpha: must be a finite number > 0, got '0.5'"),
        ({"n_hospitals": 2.0}, "^n_hospitals: must be an integer >= 2"),
        ({"min_rows": 0}, "^min_rows: must be an integer >= 1"),
        ({"scheme": ["iid"]}, "^scheme: unknown"),
        ({"test_size": 0.999}, "^test_size: 0.999 leaves"),
        ({"df": "table.csv"}, "^df: must be a pandas DataFrame"),
        ({"df": "hospital"}, "^df: has a 'hospital' column, where partition puts each row's hospital"),
        ({"df": "duplicated"}, r"^df: duplicated column names \['age'\]"),
    ],
)
def test_partition_refuses_bad_arguments_naming_them(mixed_table, kwargs, message):
    tables = {"hospital": mixed_table.rename(columns={"site": "hospital"}),
              "duplicated": pd.concat([mixed_table, mixed_table[["age"]]], axis=1)}
    args = {"df": mixed_table, "target": "outcome", "n_hospitals": 3, **kwargs}
    args["df"] = tables.get(args["df"], args["df"]) if isinstance(args["df"], str) else args["df"]
    with pytest.raises(ValueError, match=message):
        fs.Federation.partition(**args)


def test_partition_takes_numpy_integers(mixed_table):
    fed = fs.Federation.partition(mixed_table, target="outcome", n_hospitals=np.int64(3), seed=np.int64(1))
    assert fed.n_hospitals == 3 and fed.seed == 1 and type(fed.seed) is int


@pytest.mark.parametrize("scenario", ["icu_mortality", "lesion_scans"])
def test_a_federation_needs_two_hospitals(scenario):
    with pytest.raises(ValueError, match="^n_hospitals: must be an integer >= 2, got 1"):
        fs.synthetic_federation(scenario, n_hospitals=1)


def test_from_images_refuses_mixed_sites_and_empty_splits():
    rng = np.random.default_rng(0)
    images, labels = rng.random((40, 8, 8)), np.tile([0, 1], 20)
    with pytest.raises(ValueError, match=r"^sites: .*mixes value types \(number, string: 1, '1'\)"):
        fs.Federation.from_images(images, labels, [1, "1"] * 10 + [2] * 20)
    with pytest.raises(ValueError, match=r"^test_size: 0.01 leaves 2 hospital\(s\) without test rows, e.g. 'a' \(20"):
        fs.Federation.from_images(images, labels, np.repeat(["a", "b"], 20), test_size=0.01)
    assert fs.Federation.from_images(images, labels, np.repeat([1, 2], 20)).hospitals == ("1", "2")


def test_predict_names_data_when_given_something_else(small_fed):
    result = fs.Result("r", pd.DataFrame(), initial_weights("logreg", small_fed.n_features), small_fed, logreg)
    rows = small_fed.data[small_fed.preprocessor.features].head(5)
    assert result.predict(rows).shape == (5,)
    for data in (rows.to_numpy(), rows.to_dict(), rows.iloc[0], None):
        with pytest.raises(ValueError, match="^data: must be a pandas DataFrame with the training columns"):
            result.predict(data)
    rng = np.random.default_rng(0)
    images = fs.Federation.from_images(rng.random((40, 8, 8)), np.tile([0, 1], 20), np.repeat(["a", "b"], 20))
    scans = fs.Result("s", pd.DataFrame(), initial_weights("logreg", 64), images, logreg)
    assert scans.predict(rng.random((3, 8, 8))).shape == (3,)
    for data, got in ((rng.random((3, 4, 4)), r"ndarray of shape \(3, 4, 4\)"), ({"a": 1}, "dict$"),
                      (None, r"NoneType of shape \(\)"), ([[1, 2], [3]], "list$")):
        with pytest.raises(ValueError, match=rf"^data: expected images of shape \(n, 8, 8\), got {got}"):
            scans.predict(data)


def test_one_index_of_for_ids_and_indices():
    fed = fs.synthetic_federation("icu_mortality", n_hospitals=4, n_patients=400, seed=0)
    assert fed.index_of("H002") == 2 == fed.index_of(np.int64(2))
    with pytest.raises(ValueError, match=r"^hospital: unknown 7; allowed: an index 0..3 or a hospital id \['H000'"):
        fed.index_of(7)
    with pytest.raises(ValueError, match=r"^hospitals: unknown 2; allowed: a hospital id"):
        fed.index_of(2, "hospitals", ids_only=True)
    with pytest.raises(ValueError, match=r"^hospital: unknown True"):
        fed.index_of(True)
    with pytest.raises(ValueError, match=r"^hospital: unknown \['H000'\]"):
        fed.index_of(["H000"])
