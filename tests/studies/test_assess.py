"""fedsim assess: candidates against a real battery of attacks and an audit, one cached decision table, a report
that states what was measured, recommends against stated constraints, and escapes what users named."""

import math

import numpy as np
import pandas as pd
import pytest
import yaml

import fedsim as fs
from fedsim.cli import load_config, main
from fedsim.governance.report.recommend import parse, recommend
from fedsim.studies.assess import COLUMNS, REFERENCE
from fedsim.studies.costs import message_bytes
from tests.browser import open_in_browser, widths

SCRIPT = "<script>alert(1)</script>"
TINY = {"federation": {"scenario": "icu_mortality", "n_hospitals": 4, "n_patients": 1200, "seed": 0},
        "model": "logreg", "rounds": 2, "learning_rate": 0.1, "seeds": [0],
        "candidates": {"DP-SGD z=1": {"privacy": [{"name": "dpsgd", "noise_multiplier": 1.0}]},
                       "SecAgg+": {"privacy": [{"name": "secagg"}]},
                       "Krum": {"strategy": "krum"}},
        "audit": {"name": "canaries", "n": 64}, "mia_shadows": 2, "require": "epsilon<=8, auroc>=0.70"}


@pytest.fixture(scope="module")
def assessed(tmp_path_factory):
    """``fedsim assess`` on a tiny config, then ``fedsim report`` on its folder (with the owner)."""
    folder = tmp_path_factory.mktemp("assess")
    (folder / "tiny.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    assert main(["assess", str(folder / "tiny.yaml"), "--out", str(folder / "out"), "--owner", "Dr A. Smith"]) == 0
    assert main(["report", str(folder / "out")]) == 0
    return folder / "out"


def test_the_decision_table_has_every_criterion_for_every_candidate(assessed):
    table = pd.read_csv(assessed / "decision.csv")
    assert list(table.columns) == COLUMNS
    assert list(table.candidate) == [REFERENCE, "DP-SGD z=1", "SecAgg+", "Krum"]
    rows = table.set_index("candidate")
    assert (rows.auroc_low < rows.auroc).all() and (rows.auroc < rows.auroc_high).all()
    assert 0.5 < rows.auroc[REFERENCE] < 1
    assert rows.compute_cost[REFERENCE] == rows.communication_cost[REFERENCE] == rows.wall_time_cost[REFERENCE] == 1
    # Training FLOPs: DP-SGD's per-example norms cost 8/6 of a plain step; SecAgg+ and Krum train as FedAvg does.
    assert rows.compute_cost["DP-SGD z=1"] == pytest.approx(8 / 6) and rows.compute_cost["Krum"] == 1
    # Epsilon per unit: without DP infinite at both; DP-SGD protects each record, not a hospital's whole data.
    assert math.isinf(rows.epsilon_record[REFERENCE]) and math.isinf(rows.epsilon_hospital[REFERENCE])
    assert 0 < rows.epsilon_record["DP-SGD z=1"] < math.inf and math.isinf(rows.epsilon_hospital["DP-SGD z=1"])
    assert rows.epsilon_audited_record["DP-SGD z=1"] < rows.audit_claim["DP-SGD z=1"] and not rows.audit_refuted.any()
    # Each audit in the column of its unit: DP-SGD's and SecAgg+'s (records), canary hospitals without DP.
    assert rows.epsilon_audited_record.notna().tolist() == [False, True, True, False]
    assert rows.epsilon_audited_hospital.notna().tolist() == [True, False, False, True]
    # SecAgg+'s four round trips (keys, shares, masked vectors) cost more bytes than FedAvg's one.
    assert rows.communication_cost["SecAgg+"] > 1.5 and rows.communication_cost["Krum"] == 1
    # Under SecAgg+ neither the backdoor probe nor a reply-rewriting adversary can act: not measured, not 0.
    assert rows.backdoor_success.isna().tolist() == rows.auroc_poisoned.isna().tolist() == [False, False, True,
                                                                                            False]
    for column in ("leakage_record_error", "mia_tpr@0.1%fpr", "mia_auc", "auroc_dropout"):
        assert rows[column].notna().all(), column
    assert rows.auroc_poisoned[REFERENCE] < rows.auroc[REFERENCE] - 0.1  # a sign flip wrecks plain FedAvg
    assert set(rows.pays_most.dropna()) <= {"H000", "H001", "H002", "H003"}
    assert (assessed / "decision.png").stat().st_size > 10_000 and (assessed / "hospitals.csv").exists()


def test_the_report_states_what_was_measured_and_recommends(assessed):
    text = (assessed / "report.md").read_text()
    assert text.startswith("# Decision report: assessment of 3 candidates")
    assert "**Prepared by**: Dr A. Smith" in text and "Sign-off: ____" in text
    assert "**Synthetic data, not real patients**: scenario `icu_mortality`" in text
    risk = text[text.index("## Residual risk per threat"):text.index("## Privacy: accountant and audit")]
    for line in risk.splitlines()[4:]:
        if line.startswith("|"):
            assert "not measured" not in line or "cannot host the attack" in line, line
    assert risk.count("cannot host the attack") == 2  # SecAgg+: the backdoor probe and the sign flip
    recommendation = text[text.index("## Recommendation"):text.index("## Residual risk")]
    # 'epsilon' is the one unit every DP candidate here protects (DP-SGD's: records).
    assert "Stated constraints: epsilon_record &lt;= 8; auroc &gt;= 0.7" in recommendation
    table = pd.read_csv(assessed / "decision.csv").set_index("candidate")
    meets = table[(table.epsilon_record <= 8) & (table.auroc_low >= 0.7)]  # AUROC on its interval's low end
    if len(meets):
        assert f"**Recommended: {meets.auroc.idxmax()}**" in recommendation
    else:
        assert "**No candidate meets every constraint.**" in recommendation
    assert "| epsilon_record &lt;= 8 (is ∞)" in recommendation  # no DP: it cannot meet an epsilon constraint
    assert "the low end of its 95% interval" in recommendation
    assert "test patients" in text and "AUROC &#91;95% DeLong&#93;" in text


def test_an_assessment_folders_config_reruns_to_the_same_decision_table(assessed):
    again = assessed.parent / "again"
    assert main(["assess", str(assessed / "config.yaml"), "--out", str(again)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(again / "decision.csv"), pd.read_csv(assessed / "decision.csv"))


def test_the_decision_report_reads_and_prints_at_1280_px(assessed):
    """Every table of report.html fits the page in a 1280 px browser window: no criterion off the page or off a
    printout; the decision table names each criterion with its unit and the better direction."""
    tables, page = widths(assessed / "report.html")
    assert tables and max(tables) <= page, (tables, page)
    shown = open_in_browser(assessed / "report.html", assessed / "report.png")
    assert "ε per patient record, accountant (lower is better)" in shown and "not run: cannot host the attack" in shown
    assert (assessed / "report.png").stat().st_size > 50_000


def test_an_assessment_is_cached_and_the_api_gives_the_same_table(assessed):
    config = load_config(str(assessed.parent / "tiny.yaml"), extra=("candidates", "seeds", "audit", "mia_shadows",
                                                                    "require"))
    fed = fs.synthetic_federation(**config["federation"])
    again = fs.studies.assess(config["candidates"], federation=fed, model="logreg", rounds=2, learning_rate=0.1,
                              audit=fs.audit.Canaries(n=64), mia_shadows=2, threats=["poisoning"])
    before = pd.read_csv(assessed / "decision.csv").set_index("candidate")
    now = again.table.set_index("candidate")
    np.testing.assert_allclose(now.auroc, before.auroc, rtol=1e-6)  # the clean runs came from the cache
    np.testing.assert_allclose(now.auroc_poisoned, before.auroc_poisoned, rtol=1e-6)
    assert now.mia_auc.isna().all() and now.backdoor_success.isna().all()  # threats not asked for
    found = again.recommend("auroc>=0.5")
    meets = found.set_index("candidate").meets
    assert all(meets[c] == (now.auroc_low[c] >= 0.5) for c in now.index)  # tested on each interval's low end
    assert list(found.meets) == sorted(found.meets, reverse=True)  # those that meet first


def test_hostile_site_names_are_escaped_in_a_real_browser(small_fed, tmp_path):
    frame = pd.DataFrame(small_fed.x_train, columns=[f"x{i}" for i in range(small_fed.n_features)])
    frame["y"] = small_fed.y_train.astype(int)
    frame["site"] = np.where(np.arange(len(frame)) % 2, SCRIPT, "[north](javascript:alert(2))")
    fed = fs.Federation.from_dataframe(frame, target="y", site="site")
    assessment = fs.studies.assess({f"Krum {SCRIPT}": {"strategy": "krum"}}, federation=fed, model="logreg",
                                   rounds=1, threats=["poisoning"], audit=None)
    assessment.write(tmp_path, owner=SCRIPT, require="auroc>=0.5")
    paths = fs.governance.report(tmp_path)
    html = paths["html"].read_text()
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    shown = open_in_browser(paths["html"], tmp_path / "report.png")
    assert f"Krum {SCRIPT}" in shown and SCRIPT in shown and "[north](javascript:alert(2))" in shown
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_bad_assessments_are_one_line_errors(small_fed):
    with pytest.raises(ValueError, match="^candidates: give a non-empty"):
        fs.studies.assess({}, federation=small_fed)
    with pytest.raises(ValueError, match="^candidates: 'plain FedAvg' names the reference run"):
        fs.studies.assess({REFERENCE: {}}, federation=small_fed)
    with pytest.raises(ValueError, match=r"^candidates\['x'\]: privacy: unknown name 'dp'"):
        fs.studies.assess({"x": {"privacy": "dp"}}, federation=small_fed)
    with pytest.raises(ValueError, match="^threats: "):
        fs.studies.assess({"x": {}}, federation=small_fed, threats=["meteor"])
    with pytest.raises(ValueError, match="^require: unknown column 'accuracy'"):
        parse("accuracy>=0.9", COLUMNS)
    with pytest.raises(ValueError, match="^require: cannot read 'auroc high'"):
        parse("auroc high", COLUMNS)


def test_a_recommendation_never_mixes_units_and_counts_uncertainty_and_gaps():
    rows = [{"candidate": "DP-SGD", "auroc": 0.81, "auroc_low": 0.76, "auroc_high": 0.85, "epsilon_record": 4.9,
             "epsilon_hospital": math.inf, "leakage_record_error": 0.4, "mia_auc": 0.5, "auroc_poisoned": 0.8,
             "backdoor_success": 0.1, "auroc_dropout": 0.8},
            {"candidate": "central DP", "auroc": 0.79, "auroc_low": 0.75, "auroc_high": 0.83, "epsilon_record": 16.5,
             "epsilon_hospital": 16.5, "leakage_record_error": 0.1, "mia_auc": 0.5, "auroc_poisoned": math.nan,
             "backdoor_success": math.nan, "auroc_dropout": 0.78}]
    table = pd.DataFrame(rows)
    with pytest.raises(ValueError, match=r"^require: 'epsilon' mixes units here \(record: DP-SGD; hospital: central "
                                         r"DP\)"):
        recommend(table, parse("epsilon<=20", COLUMNS))
    found = recommend(table, parse("epsilon_record<=8, auroc>=0.80", COLUMNS)).set_index("candidate")
    assert not found.meets.any()  # DP-SGD's 0.81 is a point estimate: its interval's low end is 0.76
    assert "auroc >= 0.8 (is 0.76, the low end of its 95% interval)" in found.missed["DP-SGD"]
    found = recommend(table, parse("epsilon_hospital<=20, auroc>=0.7", COLUMNS)).set_index("candidate")
    assert found.meets["central DP"] and not found.meets["DP-SGD"]  # DP-SGD: infinite at the hospital level
    assert found.not_measured["central DP"] == "poisoning, backdoor" and found.not_measured["DP-SGD"] == ""


def test_message_bytes_count_arrays_and_byte_payloads():
    from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
    content = RecordDict({"arrays": ArrayRecord([np.zeros((3, 4), np.float32)]),
                          "config": ConfigRecord({"keys": [b"abcd", b"ef"], "round": 1}),
                          "metrics": MetricRecord({"loss": 0.5})})
    assert message_bytes(content) == 48 + 6 + 8 + 8
