import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from fedsim import cli
from fedsim.cli import main
from fedsim.strategies import make_strategy

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
    assert set(table.run) == {"FedAvg", "centralized", "local only"}  # display names
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


@pytest.mark.parametrize(
    "options, message",
    [
        ({"strategy": "multikrum", "strategy_options": {"num_nodes_to_select": 0}},
         "strategy_options.num_nodes_to_select: must be an integer >= 1, got 0"),
        ({"strategy": "fedtrimmedavg", "strategy_options": {"beta": 0.5}},
         "strategy_options.beta: must be a finite number >= 0 and < 0.5, got 0.5"),
        ({"strategy_options": {"fraction_train": 0.5}},
         "strategy_options.fraction_train: set by fedsim, not an option; use Experiment(fraction_train=...) instead"),
        ({"strategy_options": {"fraction_evaluate": 1.0}}, "strategy_options.fraction_evaluate: set by fedsim"),
        ({"strategy_options": {"min_available_nodes": 0}}, "strategy_options.min_available_nodes: must be an integer"),
        ({"strategy_options": {"min_train_nodes": 1.5}}, "strategy_options.min_train_nodes: must be an integer >= 0"),
        ({"strategy_options": [1]}, "strategy_options: must be a mapping or None, got [1]"),
        ({"strategy_options": {"colour": 1}}, "strategy_options: "),
        ({"baselines": [{"a": 1}]}, "baselines: must be a list of baseline names, got [{'a': 1}]"),
        ({"baselines": "centralized"}, "baselines: must be a list of baseline names"),
    ],
)
def test_bad_strategy_options_and_baselines_name_the_field(tmp_path, capsys, options, message):
    assert main(["run", write(tmp_path, {**TINY, **options}), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_make_strategy_refuses_options_that_are_not_a_mapping():
    for options in ([1], "beta=0.1", 3):
        with pytest.raises(ValueError, match="^strategy_options: must be a mapping or None"):
            make_strategy("fedavg", 1.0, options)
    given = {"beta": np.float64(0.1)}
    assert make_strategy("fedtrimmedavg", 1.0, given).beta == 0.1 and given == {"beta": 0.1}


def one_line_error(capsys, message: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unreadable_inputs_and_outputs_are_one_line_errors(tmp_path, capsys):
    config = write(tmp_path, TINY)
    (tmp_path / "file").write_text("x")
    assert main(["run", str(tmp_path)]) == 2
    one_line_error(capsys, f"config: cannot read {str(tmp_path)!r} (Is a directory)")
    assert main(["run", str(tmp_path / "missing" / "c.yaml")]) == 2
    one_line_error(capsys, "config: file")
    if os.geteuid() != 0:  # root reads files whatever their mode
        locked = tmp_path / "locked.yaml"
        locked.write_text("federation: {}")
        locked.chmod(0)
        assert main(["run", str(locked)]) == 2
        one_line_error(capsys, "config: cannot read")
    assert main(["run", config, "--out", str(tmp_path / "file")]) == 2
    one_line_error(capsys, f"--out: {str(tmp_path / 'file')!r} is a file, expected a folder")
    assert main(["run", config, "--out", str(tmp_path / "file" / "results")]) == 2
    one_line_error(capsys, "--out: cannot create folder")
    (tmp_path / "table.parquet").write_text("not parquet")
    for path, message in ((tmp_path, f"federation.path: file {str(tmp_path)!r} not found (it is a folder)"),
                          (tmp_path / "table.parquet", "federation.path: cannot read")):
        table = {"federation": {"path": str(path), "target": "y", "site": "s"}}
        assert main(["run", write(tmp_path, table)]) == 2
        one_line_error(capsys, message)


def test_data_generate_refuses_bad_sizes_seeds_and_folders(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for args, message in ((["--out", str(tmp_path / "file")], "--out: "),
                          (["--hospitals", "100000000"], "n_hospitals: must be <= 100000, got 100000000"),
                          (["--patients", "100000000"], "n_patients: must be <= 5000000 (a memory cap)"),
                          (["--seed", str(2**32)], "seed: must be <= 4294967295"),
                          (["--seed", "-1"], "seed: must be >= 0")):
        assert main(["data", "generate", "icu_mortality", "--hospitals", "2", *args]) == 2
        one_line_error(capsys, message)


def test_a_run_where_no_hospital_may_train_warns_and_exits_1(tmp_path, capsys):
    config = {**TINY, "baselines": [], "policies": {"default": {"max_epsilon": 1.0}}}  # no DP: nobody takes part
    out = tmp_path / "out"
    assert main(["run", write(tmp_path, config), "--out", str(out)]) == 1
    err = capsys.readouterr().err.split("\r")[-1]  # after the progress bar
    assert err.startswith("warning: the run stopped before round 1 of 2 (round 1: 0 hospitals eligible")
    assert "the untrained model" in err and err.count("\n") == 1
    stops = pd.read_csv(out / "participation.csv").query("event == 'stopped'")
    assert list(stops.hospital) == ["*"]


def test_other_os_errors_are_one_line_errors(tmp_path, capsys, monkeypatch):
    def denied(*args):
        raise PermissionError(13, "Permission denied", "table.csv")

    monkeypatch.setattr(cli, "run", denied)
    assert main(["run", write(tmp_path, TINY)]) == 2
    one_line_error(capsys, "error: table.csv: Permission denied")


EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))
RUNNABLE = [p for p in EXAMPLES if "candidates" not in yaml.safe_load(p.read_text())]  # `fedsim assess`'s: its own


@pytest.mark.parametrize("example", RUNNABLE, ids=[p.name for p in RUNNABLE])
def test_a_results_folders_config_reruns_to_identical_metrics(tmp_path, example):
    """The example (2 rounds, to stay fast) run, then its folder's config.yaml run again: the same metrics."""
    config = {**yaml.safe_load(example.read_text()), "rounds": 2}
    assert main(["run", write(tmp_path, config), "--out", str(tmp_path / "first")]) == 0
    assert main(["run", str(tmp_path / "first" / "config.yaml"), "--out", str(tmp_path / "again")]) == 0
    first, again = (pd.read_csv(tmp_path / name / "metrics.csv") for name in ("first", "again"))
    pd.testing.assert_frame_equal(first, again)


def test_a_dp_runs_config_reruns_with_the_same_noise_secret_and_never_holds_it(tmp_path):
    config = {**TINY, "baselines": [], "privacy": [{"name": "dpsgd", "noise_multiplier": 1.0}],
              "adversaries": [{"name": "sign_flip", "hospitals": ["H001"]}], "defenses": [{"name": "trust_score"}]}
    runs = {}
    for name, path, secret in (("first", write(tmp_path, config), "987654321"),
                               ("again", str(tmp_path / "first" / "config.yaml"), "987654321"),
                               ("fresh", str(tmp_path / "first" / "config.yaml"), None)):
        assert main(["run", path, "--out", str(tmp_path / name), *(["--noise-seed", secret] if secret else [])]) == 0
        runs[name] = pd.read_csv(tmp_path / name / "metrics.csv")
    pd.testing.assert_frame_equal(runs["first"], runs["again"])
    assert not runs["first"].value.equals(runs["fresh"].value)
    for written in (tmp_path / "first").iterdir():
        assert written.suffix == ".png" or "987654321" not in written.read_text()
