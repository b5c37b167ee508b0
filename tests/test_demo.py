"""``fedsim demo`` (``make demo``): the mission in one run, its numbers as the summary states them."""

import pandas as pd

from fedsim import _tf, cli


def test_the_demo_shows_privacy_leakage_and_poisoning(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    if printed[0] == _tf.device_note():  # printed once per process: not again when an earlier test trained
        printed = printed[1:]
    assert printed[0].startswith("fedsim demo: 10 synthetic hospitals") and _tf.device_note() not in printed
    assert [line.split()[0] for line in printed[1:5]] == ["privacy", "leakage", "poisoning", "wrote"]
    assert (out / "summary.txt").read_text().splitlines() == printed
    for name in ("overview.png", "auroc.png", "poisoning.png", "reconstructions.png", "privacy.csv", "leakage.csv",
                 "poisoning.csv", "metrics.csv", "report/report.html", "report/report.md", "report/audit.jsonl"):
        assert (out / name).is_file(), name

    privacy = pd.read_csv(out / "privacy.csv")
    auroc = privacy.groupby("technique").auroc.first()
    assert auroc["FedAvg"] > 0.8 and abs(auroc["SecAgg+"] - auroc["FedAvg"]) < 0.01  # SecAgg+: quantization only
    assert auroc["FedAvg"] - 0.1 < auroc["DP-SGD"] < auroc["FedAvg"]
    spent = privacy.groupby("technique").epsilon.agg(["min", "max"])
    assert spent.loc["DP-SGD", "max"] > spent.loc["DP-SGD", "min"]  # smaller hospitals spend more
    assert set(privacy[privacy.technique == "DP-SGD"].unit) == {"patient record"}
    assert privacy[privacy.technique.isin(["FedAvg", "SecAgg+"])].epsilon.isna().all()

    leakage = pd.read_csv(out / "leakage.csv").pivot_table(index="mitigation", columns="metric", values="value")
    assert leakage.loc["no protection", "psnr"] > leakage.loc["no protection", "psnr_prior"] + 10
    assert leakage.loc["DP-SGD", "psnr"] < leakage.loc["DP-SGD", "psnr_prior"]

    curves = pd.read_csv(out / "poisoning.csv").query("scope == 'global' and metric == 'auroc'")
    final = curves[curves["round"] == curves["round"].max()].set_index("run").value
    assert final["FedAvg, 20% sign flip"] < final["FedAvg, no attack"] - 0.2
    assert final["median, 20% sign flip"] > final["FedAvg, no attack"] - 0.02
    assert "Threat model" in (out / "report" / "report.md").read_text()
