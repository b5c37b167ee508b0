"""The risk report, read by the hospital data team that must sign it: who, when, what data, what is active, what
was measured, per-hospital results with test sizes and intervals, calibration, caveats that match the run."""

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

import fedsim as fs
from fedsim.governance import read, report
from fedsim.governance.evaluation import average_precision, bootstrap_auroc, delong, evaluation, wilson
from tests.browser import open_in_browser


@pytest.fixture(scope="module")
def fed():
    return fs.synthetic_federation("icu_mortality", n_hospitals=4, n_patients=1600, seed=0, label_skew=1.0)


def run_report(fed, folder, owner=None, require=None, **changes):
    res = fs.Experiment(federation=fed, model="logreg", rounds=2, learning_rate=0.1, out=folder, **changes).run()
    return res, report(folder, owner=owner, require=require)["markdown"].read_text()


@pytest.fixture(scope="module")
def clean(fed, tmp_path_factory):
    return run_report(fed, tmp_path_factory.mktemp("clean"), owner="Dr A. Smith, data protection officer")


def test_it_says_who_when_with_what_software_and_configuration(clean):
    res, text = clean
    start = read(res.audit_path)[0]
    assert f"started {start['time'][:10]} {start['time'][11:19]} UTC; completed" in text
    assert "**Prepared by**: Dr A. Smith, data protection officer" in text and "Sign-off: ______" in text
    versions = start["data"]["versions"]
    assert f"**Software**: fedsim {versions['fedsim']}, Flower {versions['flwr']}" in text
    assert f"**Configuration hash**: `{start['data']['config_hash'][:16]}`" in text


def test_the_data_is_described_in_words_not_as_a_repr(clean):
    _, text = clean
    data = text[text.index("## Data"):text.index("## Audit log")]
    assert "**Synthetic data, not real patients**: scenario `icu_mortality` (In-hospital mortality" in data
    assert "**Heterogeneity between hospitals**: label_skew 1" in data
    assert "4 hospitals, 1280 training and 320 test records" in data and "Federation(" not in data
    assert "**Data**: synthetic scenario icu_mortality (see Data); 4 hospitals" in text


def test_per_hospital_results_carry_test_size_events_and_intervals(fed, clean):
    res, text = clean
    scopes = [e for e in read(res.audit_path) if e["kind"] == "result"][0]["data"]["evaluation"]["scopes"]
    p = res.model(fed.x_test).numpy()[:, 0]
    for i, hospital in enumerate(fed.hospitals):
        lo, hi = fed.test_offsets[i], fed.test_offsets[i + 1]
        s, y = scopes[hospital], fed.y_test[lo:hi]
        assert s["n_test"] == hi - lo and s["events"] == int(y.sum())
        assert s["auroc"] == pytest.approx(roc_auc_score(y, p[lo:hi]), abs=1e-6)
        assert s["auroc_low"] < s["auroc"] < s["auroc_high"] and s["base_rate"] == pytest.approx(y.mean())
        assert (s["event_rate_low"], s["event_rate_high"]) == pytest.approx(wilson(int(y.sum()), len(y)))
        row = next(line for line in text.splitlines() if line.startswith(f"| {hospital} | {hi - lo} |"))
        assert f"{s['auroc']:.3f} &#91;{s['auroc_low']:.2f}, {s['auroc_high']:.2f}&#93;" in row
        assert f"{s['auprc']:.3f} ({s['base_rate']:.3f})" in row  # AUPRC beside its base rate
    assert "DeLong 95% over the split's patients" in text and "Wilson 95%" in text


def test_the_bootstrap_interval_matches_resampling_one_set_at_a_time():
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.2).astype(float)
    p = np.round(rng.random(300) * 0.5 + 0.3 * y, 2)  # ties included
    fast = bootstrap_auroc(y, [p], np.random.default_rng(1), resamples=2000)  # in chunks of 6,666 resamples
    draws = np.random.default_rng(2)
    slow = [roc_auc_score(y[i], p[i]) for i in (draws.integers(0, 300, 300) for _ in range(2000))]
    assert fast == pytest.approx(tuple(np.percentile(slow, [2.5, 97.5])), abs=0.01)
    assert math.isnan(bootstrap_auroc(np.zeros(5), [p[:5]], rng)[0])  # one class: no interval


def test_the_delong_interval_equals_its_definition_from_all_pairs():
    rng = np.random.default_rng(3)
    y = (rng.random(150) < 0.3).astype(float)
    p = np.round(rng.random(150) * 0.6 + 0.3 * y, 2)  # ties included
    pos, neg = p[y == 1], p[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])  # every positive-negative pair
    auc = psi.mean()
    variance = psi.mean(1).var(ddof=1) / len(pos) + psi.mean(0).var(ddof=1) / len(neg)
    assert delong(y, p) == pytest.approx((auc, auc - 1.959964 * variance**0.5, auc + 1.959964 * variance**0.5))
    assert delong(y, p)[0] == pytest.approx(roc_auc_score(y, p))
    assert average_precision(y, p) == pytest.approx(average_precision_score(y, p))
    assert math.isnan(delong(np.r_[1.0, 0, 0], np.r_[0.9, 0.1, 0.2])[1])  # one positive: no variance


def test_large_federations_are_evaluated_pooled_with_a_statement(fed):
    hospitals = [f"H{i:03d}" for i in range(300)]  # the federation's test split, seen as 300 hospitals
    found = evaluation(fed.y_test, np.full(len(fed.y_test), 0.3), None, hospitals, {"global", "H000"})
    assert found["pooled_only"] and list(found["scopes"]) == ["global"]
    assert found["scopes"]["global"]["n_test"] == len(fed.y_test)


def test_calibration_is_stated_with_its_numbers(clean):
    res, text = clean
    g = [e for e in read(res.audit_path) if e["kind"] == "result"][0]["data"]["evaluation"]["scopes"]["global"]
    assert (f"mean predicted risk is {g['mean_risk']:.3f} against an observed event rate of {g['base_rate']:.3f}; "
            f"calibration slope {g['calibration_slope']:.2f}") in text
    assert (res.audit_path.parent / "figures" / "calibration.png").exists()


def test_mitigations_are_listed_only_when_active_and_caveats_match_the_run(fed, clean, tmp_path):
    _, text = clean
    poisoning = next(line for line in text.splitlines() if line.startswith("| integrity | poisoning |"))
    assert "defense: update validator" in poisoning  # its default plausibility bounds act
    _, off = run_report(fed, tmp_path / "off", defenses=fs.defenses.UpdateValidator.off())
    assert next(line for line in off.splitlines() if line.startswith("| integrity | poisoning |")).startswith(
        "| integrity | poisoning | none |")
    caveats = text[text.index("## Caveats"):]
    assert "DP noise" not in caveats and "attacks shaped" not in caveats and "canaries" not in caveats
    assert "the audit log is unsigned" in caveats and "not measured in this run: update leakage" in caveats
    _, dp = run_report(fed, tmp_path / "dp", privacy=fs.privacy.DPSGD(noise_multiplier=1.0),
                       adversaries=fs.adversaries.SignFlip(hospitals=["H001"]))
    caveats = dp[dp.index("## Caveats"):]
    assert "DP noise shaped this model" in caveats and "attacks shaped this model (sign flip)" in caveats
    assert "not measured in this run: update leakage, membership inference, backdoor" in caveats  # poisoning ran


def test_a_stated_constraint_gets_a_recommendation(fed, clean, tmp_path):
    res, _ = clean
    text = report(res.audit_path.parent, require="auroc>=0.5, epsilon<=8")["markdown"].read_text()
    assert "## Recommendation" in text and "epsilon_record &lt;= 8 (is ∞)" in text and "**does not meet them**" in text
    with pytest.raises(ValueError, match="^require: unknown column 'speed'"):
        report(res.audit_path.parent, require="speed>=1")


def test_the_page_renders_in_a_real_browser_with_nothing_executable(clean):
    res, _ = clean
    page = res.audit_path.parent / "report.html"
    shown = open_in_browser(page, page.with_suffix(".png"))
    assert "Risk report: FedAvg" in shown and "Calibration" in shown
    assert page.with_suffix(".png").stat().st_size > 10_000
