import pandas as pd
import pytest
import yaml

from fedsim.cli import main

TINY = {
    "federation": {"scenario": "icu_mortality", "n_hospitals": 3, "n_patients": 600, "seed": 0, "label_skew": 0.5},
    "rounds": 2,
    "model": "logreg",
    "baselines": ["centralized", "local_only"],
}


def write(tmp_path, config) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config) if isinstance(config, dict) else config)
    return str(path)


def test_run_writes_metrics_config_and_figure(tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["run", write(tmp_path, TINY), "--out", str(out)]) == 0
    table = pd.read_csv(out / "metrics.csv")
    assert set(table.run) == {"fedavg", "centralized", "local_only"}
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["rounds"] == 2 and resolved["strategy"] == "fedavg" and resolved["learning_rate"] == 0.05
    assert (out / "auroc.png").stat().st_size > 10_000
    assert "auroc" in capsys.readouterr().out


def test_run_with_privacy_writes_the_ledger(tmp_path):
    config = {**TINY, "baselines": [], "privacy": [{"technique": "dpsgd", "noise_multiplier": 1.0},
                                                    {"technique": "central_dp", "noise_multiplier": 0.5}],
              "privacy_budget": 50.0}
    out = tmp_path / "results"
    assert main(["run", write(tmp_path, config), "--out", str(out)]) == 0
    ledger = pd.read_csv(out / "privacy.csv")
    assert set(ledger.mechanism) == {"DP-SGD", "central DP (server-side fixed clipping)"}
    assert (ledger.epsilon <= 50).all()


def test_run_on_a_users_own_table(tmp_path, mixed_table):
    mixed_table.to_csv(tmp_path / "table.csv", index=False)
    config = {"federation": {"path": str(tmp_path / "table.csv"), "target": "outcome", "site": "site",
                             "positive": "died"}, "rounds": 1}
    assert main(["run", write(tmp_path, config), "--out", str(tmp_path / "out")]) == 0


@pytest.mark.parametrize(
    "config, message",
    [
        ({**TINY, "strategy": "fedmagic"}, "strategy: unknown 'fedmagic'"),
        ({**TINY, "rounds": 0}, "rounds: must be an integer >= 1"),
        ({**TINY, "fraction_train": 2}, "fraction_train: must be a finite number > 0 and <= 1, got 2"),
        ({**TINY, "colour": "red"}, "config: unknown keys ['colour']"),
        ({**TINY, "baselines": ["oracle"]}, "baselines: unknown ['oracle']"),
        ({**TINY, "federation": {"scenario": "sepsis"}}, "scenario"),
        ({**TINY, "federation": {"scenario": "icu_mortality", "flavour": 1}}, "flavour"),
        ({**TINY, "federation": {"path": "nowhere.csv", "target": "y", "site": "s"}}, "federation.path: file"),
        ({"rounds": 3}, "config: expected a mapping with a 'federation:' section"),
        ({**TINY, "privacy": [{"technique": "magic"}]}, "privacy: unknown name 'magic'; allowed: central_dp"),
        ({**TINY, "privacy": [{"technique": "dpsgd", "noise": 1}]}, "privacy: dpsgd: unknown 'noise'; allowed"),
        ({**TINY, "privacy": [{"technique": "dpsgd", "noise_multiplier": -1}]}, "noise_multiplier: must be"),
        ("federation: [unclosed", "config:"),
    ],
)
def test_bad_config_is_one_line_and_exit_code_2(tmp_path, capsys, config, message):
    assert main(["run", write(tmp_path, config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_data_generate_writes_parquet(tmp_path, capsys):
    assert main(["data", "generate", "readmission_30d", "--hospitals", "3", "--patients", "300",
                 "--knob", "label_skew=1", "--out", str(tmp_path)]) == 0
    patients = pd.read_parquet(tmp_path / "patients.parquet")
    assert len(patients) == 300 and patients.hospital.nunique() == 3
    assert len(pd.read_parquet(tmp_path / "hospitals.parquet")) == 3
    assert main(["data", "generate", "readmission_30d", "--knob", "spice=1"]) == 2
    assert main(["data", "list"]) == 0
    assert "icu_mortality" in capsys.readouterr().out


def test_sweep_varies_any_field_over_seeds(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", write(tmp_path, TINY), "--vary", "privacy=[null, {name: dpsgd, noise_multiplier: 1.0}]",
            "--vary", "learning_rate=[0.05, 0.2]", "--seeds", "0", "1", "--out", str(out)]
    assert main(args) == 0
    table = pd.read_csv(out / "sweep.csv")
    final = table[(table.scope == "global") & (table.metric == "auroc")]
    assert len(final) == 2 * 2 * 2
    assert set(final.technique) == {"none", "DPSGD"} and set(final.learning_rate) == {0.05, 0.2}
    assert set(final.seed) == {0, 1}
    assert (final[final.technique == "DPSGD"].epsilon < float("inf")).all()
    assert main(["sweep", write(tmp_path, TINY), "--vary", "privacy=dpsgd"]) == 2
    assert "error: vary: privacy: expected a non-empty list" in capsys.readouterr().err
