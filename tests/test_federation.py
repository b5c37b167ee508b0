import numpy as np
import pandas as pd
import pytest

import fedsim as fs
from fedsim.federation import Preprocessor


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
