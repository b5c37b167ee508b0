"""``fedsim export`` and ``Experiment.to_flower_app``: a Flower app that rebuilds the same experiment."""

import json
import tomllib
import zipfile
from io import BytesIO

from flwr.cli.build import build_fab_from_disk

import fedsim as fs
from fedsim.cli import build_experiment, load_config, main
from fedsim.deploy import experiment_fields


def app_config(folder):
    return tomllib.loads((folder / "pyproject.toml").read_text())["tool"]["flwr"]["app"]


def test_export_writes_a_flower_app_of_the_configured_experiment(tmp_path, capsys):
    assert main(["export", "examples/demo.yaml", "--out", str(tmp_path / "app")]) == 0
    assert "flwr run" in capsys.readouterr().out
    app = app_config(tmp_path / "app")
    assert app["components"] == {"serverapp": "fedsim_app.server_app:app", "clientapp": "fedsim_app.client_app:app"}
    assert app["config"]["out-dir"] == ""
    expected = build_experiment(load_config("examples/demo.yaml"))
    rebuilt = fs.Experiment(**experiment_fields(app["config"]["spec"]))
    assert rebuilt.config() == expected.config()
    fab = zipfile.ZipFile(BytesIO(build_fab_from_disk(tmp_path / "app")))  # Flower's own checks of an app
    assert {"fedsim_app/server_app.py", "fedsim_app/client_app.py", "pyproject.toml"} <= set(fab.namelist())


def test_a_table_federation_is_exported_as_its_path(tmp_path):
    fed = fs.synthetic_federation("icu_mortality", n_hospitals=2, n_patients=300, seed=2)
    table = tmp_path / "hospitals.csv"
    fed.data.drop(columns="split").to_csv(table, index=False)
    (tmp_path / "config.yaml").write_text(f"federation: {{path: {table}, target: {fed.target}, site: {fed.site}}}\n"
                                          f"model: logreg\nrounds: 1\n")
    assert main(["export", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "app")]) == 0
    spec = json.loads(app_config(tmp_path / "app")["config"]["spec"])
    assert spec["federation"] == {"table": {"path": str(table), "target": fed.target, "site": fed.site,
                                            "preprocessing": "federated", "hospitals": ["H000", "H001"]}}
