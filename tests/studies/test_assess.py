"""fedsim assess: candidates against a real battery of attacks and an audit, one cached decision table, a report
that states what was measured, recommends against stated constraints, and escapes what users named."""

import math

import numpy as np
import pandas as pd
import pytest
import yaml

import fedsim as fs
from fedsim.cli import load_config, main
from fedsim.governance.report.recommend import parse
from fedsim.studies.assess import COLUMNS, REFERENCE, message_bytes
from tests.browser import open_in_browser

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
    assert 0.5 < rows.auroc[REFERENCE] < 1 and rows.compute_cost[REFERENCE] == rows.communication_cost[REFERENCE] == 1
    assert math.isinf(rows.epsilon[REFERENCE]) and 0 < rows.epsilon_record["DP-SGD z=1"] <= rows.epsilon["DP-SGD z=1"]
    assert rows.epsilon_audited["DP-SGD z=1"] < rows.audit_claim["DP-SGD z=1"] and not rows.audit_refuted.any()
    assert set(rows.audit_level) == {"record", "hospital"}  # DP-SGD's unit, canary hospitals without DP
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
    assert "Stated constraints: epsilon &lt;= 8; auroc &gt;= 0.7" in recommendation
    table = pd.read_csv(assessed / "decision.csv").set_index("candidate")
    meets = table[(table.epsilon <= 8) & (table.auroc >= 0.7)]
    if len(meets):
        assert f"**Recommended: {meets.auroc.idxmax()}**" in recommendation
    else:
        assert "**No candidate meets every constraint.**" in recommendation
    assert "| epsilon &lt;= 8 (is ∞)" in recommendation  # no DP: it cannot meet an epsilon constraint
    assert "test patients" in text and "AUROC &#91;95% DeLong&#93;" in text


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
    assert found.meets.all() and list(found.auroc) == sorted(found.auroc, reverse=True)


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


def test_message_bytes_count_arrays_and_byte_payloads():
    from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
    content = RecordDict({"arrays": ArrayRecord([np.zeros((3, 4), np.float32)]),
                          "config": ConfigRecord({"keys": [b"abcd", b"ef"], "round": 1}),
                          "metrics": MetricRecord({"loss": 0.5})})
    assert message_bytes(content) == 48 + 6 + 8 + 8
