"""``fedsim demo|run|sweep|assess|export|data|audit|report ...``: the public API from the shell.

A config is YAML whose keys mirror ``fedsim.Experiment``; components are
given by their registry name and settings::

    privacy: [{name: dpsgd, noise_multiplier: 1.0}]
    adversaries: [{name: sign_flip, hospitals: 0.2}]
    defenses: [{name: norm_bound}]
    availability: [{name: dropout, rate: 0.1}]
    observers: [{name: gradient_inversion, hospital: 0, round: 1}]

``fedsim assess`` takes the same keys as the base experiment, plus
``candidates: {label: {<Experiment changes>}}``, ``threats``, ``seeds``,
``audit`` (a ``{name: canaries, ...}`` spec, or null), ``mia_shadows`` and
``require`` (e.g. ``"epsilon_record<=8, auroc>=0.80"``: epsilons per unit, AUROC on its interval's low end).

Bad input (config, arguments) prints one ``error: ...`` line and exits 2;
``fedsim run`` exits 1 when the run stopped early (too few hospitals eligible,
see participation.csv) and ``fedsim audit verify`` when the log was tampered with.
"""

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import yaml

import data_synthetic
import fedsim as fs
from fedsim import demo
from fedsim.experiment import SETTINGS
from fedsim.plain import plain
from fedsim.plots import plot_comparison
from fedsim.validation import Seq, Text, check

EXPERIMENT_KEYS = SETTINGS
BASELINES = {"centralized": fs.baselines.centralized, "local_only": fs.baselines.local_only}
CONFIG_HEADER = ("# The run's settings, defaults resolved: `fedsim run` reruns it (DP noise is fresh unless you give\n"
                 "# the same --noise-seed; the seed below repeats everything else). What the run resolved from them\n"
                 "# (each component as it describes itself, the training each hospital was asked for): audit.jsonl.\n")


def load_config(path: str, extra: tuple[str, ...] = ()) -> dict:
    """A YAML mapping with a ``federation:`` section and Experiment keys (and the command's ``extra`` keys)."""
    try:
        config = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"config: file {path!r} not found") from None
    except OSError as error:
        raise ValueError(f"config: cannot read {path!r} ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise ValueError(f"config: {path} is not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(config, dict) or "federation" not in config:
        raise ValueError("config: expected a mapping with a 'federation:' section")
    unknown = set(config) - {"federation", "baselines", *EXPERIMENT_KEYS, *extra}
    if unknown:
        raise ValueError(f"config: unknown keys {sorted(unknown)}; "
                         f"allowed: federation, baselines, {', '.join((*EXPERIMENT_KEYS, *extra))}")
    return config


def build_experiment(config: dict, **changes) -> fs.Experiment:
    """The Experiment of a loaded config (components from their ``{name: ..., <settings>}`` entries)."""
    fed = build_federation(config["federation"])
    try:
        return fs.Experiment(federation=fed, **{k: v for k, v in config.items() if k in EXPERIMENT_KEYS}, **changes)
    except TypeError as error:
        raise ValueError(f"config: {error}") from None


def build_federation(spec: dict) -> fs.Federation:
    """``{scenario: ..., n_hospitals: ..., <knobs>}`` or ``{path: table.csv|.parquet, target: ..., site: ...}``."""
    if not isinstance(spec, dict):
        raise ValueError("federation: expected a mapping")
    spec = dict(spec)
    if "path" in spec:
        path = Path(check("federation.path", spec.pop("path"), Text()))
        if not path.is_file():
            raise ValueError(f"federation.path: file {str(path)!r} not found"
                             + (" (it is a folder)" if path.is_dir() else ""))
        try:
            df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        except (OSError, ValueError) as error:  # unreadable, or not a table (pandas' and pyarrow's errors)
            reason = (str(error).strip() or type(error).__name__).splitlines()[0]
            raise ValueError(f"federation.path: cannot read {str(path)!r} as a table ({reason})") from None
        try:
            return fs.Federation.from_dataframe(df, **spec)
        except TypeError as error:
            raise ValueError(f"federation: {error}") from None
    try:
        return fs.synthetic_federation(**spec)
    except TypeError as error:
        raise ValueError(f"federation: {error}") from None


def out_folder(folder: Path) -> Path:
    """The ``--out`` folder, created (parents too); refused if it is a file or cannot be written."""
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out: {str(folder)!r} is a file, expected a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--out: cannot create folder {str(folder)!r} ({error.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"--out: folder {str(folder)!r} is not writable")
    return folder


def run(config_path: str, out: str | None, audit_key: str | None = None, noise_seed: int | None = None) -> int:
    """Run the configured experiment (and baselines); write metrics, config, a figure and the audit log.

    Returns the exit code: 0, or 1 when the run stopped early (too few hospitals eligible).
    """
    config = load_config(config_path)
    experiment = build_experiment(config)
    fed = experiment.federation
    baselines = list(check("baselines", config.get("baselines") or [], Seq(Text(), what="a list of baseline names")))
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ValueError(f"baselines: unknown {unknown}; allowed: {sorted(BASELINES)}")
    epochs = experiment.rounds * experiment.local_epochs
    folder = out_folder(Path(out or f"results/{Path(config_path).stem}-{datetime.now():%Y%m%d-%H%M%S}"))
    key = fs.governance.load_key(audit_key) if audit_key else None
    result = experiment.replace(out=folder, audit_key=key, noise_seed=noise_seed).run()  # writes folder/audit.jsonl
    runs = {experiment.label: result}
    for name in baselines:
        baseline = BASELINES[name](fed, model=experiment.model, epochs=epochs, batch_size=experiment.batch_size,
                                   learning_rate=experiment.learning_rate, seed=experiment.seed)
        runs[baseline.name] = baseline  # its display name: "local only"
    table = fs.compare(runs)

    table.to_csv(folder / "metrics.csv", index=False)
    for name in ("privacy", "privacy_audit", "participation", "adversaries", "attacks"):
        if not result.tables.get(name, pd.DataFrame()).empty:
            result.tables[name].drop(columns=[c for c in ("original", "reconstruction") if c in result.tables[name]]
                                     ).to_csv(folder / f"{name}.csv", index=False)
    if not result.privacy.empty:
        print(result.privacy.groupby(["mechanism", "unit"]).epsilon.agg(["min", "max"]).round(3).to_string())
    rerun = {"federation": config["federation"], "baselines": baselines, **experiment.settings()}
    (folder / "config.yaml").write_text(CONFIG_HEADER + yaml.safe_dump(rerun, sort_keys=False))
    plot_comparison(table).savefig(folder / "auroc.png", dpi=120)

    final = table[(table.scope == "global") & (table["round"] == table.groupby("run")["round"].transform("max"))]
    print(f"\n{fed!r}\n")
    print(final.pivot(index="run", columns="metric", values="value").round(3).to_string())
    tables = ("privacy", "privacy_audit", "participation", "adversaries", "attacks")
    written = ["metrics.csv", *(f"{n}.csv" for n in tables if (folder / f"{n}.csv").exists()), "config.yaml",
               "auroc.png", "audit.jsonl"]
    print(f"\nwrote {folder}/: {', '.join(written)}")
    stops = result.participation.query("event == 'stopped' and hospital == '*'")
    if stops.empty:
        return 0
    stop = stops.iloc[0]
    trained = "the untrained model" if stop["round"] <= 1 else f"the model after round {stop['round'] - 1}"
    print(f"warning: the run stopped before round {stop['round']} of {experiment.rounds} ({stop['reason']}); "
          f"the metrics are those of {trained}, see {folder}/participation.csv", file=sys.stderr)
    return 1


def export(config_path: str, out: str) -> Path:
    """Write the configured experiment as a self-contained Flower app folder (``flwr run APP CONNECTION``)."""
    config = load_config(config_path)
    experiment = build_experiment(config)
    table = config["federation"] if "path" in config["federation"] else None
    folder = experiment.to_flower_app(out_folder(Path(out)), federation=table)
    print(f"wrote the Flower app {folder}/ (pyproject.toml, fedsim_app/); run it with `flwr run {folder} CONNECTION`, "
          f"each SuperNode given --node-config \"partition-id=i num-partitions={experiment.federation.n_hospitals}\"")
    return folder


def parse_vary(items: list[str]) -> dict[str, list]:
    """``--vary FIELD=[v1, v2]`` (YAML values) as {field: values}."""
    vary = {}
    for item in items:
        field, sep, text = item.partition("=")
        if not sep or not field:
            raise ValueError(f"vary: expected FIELD=[VALUE, ...], got {item!r}")
        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"vary: {field}: not valid YAML ({str(error).splitlines()[0]})") from None
        if not isinstance(values, list) or not values:
            raise ValueError(f"vary: {field}: expected a non-empty list [VALUE, ...], got {text!r}")
        if field in ("privacy", "adversaries", "defenses", "availability", "observers"):
            values = [v if v is None or isinstance(v, list) else [v] for v in values]
        vary[field] = values
    return vary


def sweep(config_path: str, vary: list[str], seeds: list[int], out: str | None) -> Path:
    """Sweep the configured experiment over the varied fields and seeds; write the table (cached runs)."""
    config = load_config(config_path)
    experiment = build_experiment(config)
    varied = parse_vary(vary)
    folder = out_folder(Path(out or f"results/{Path(config_path).stem}-sweep-{datetime.now():%Y%m%d-%H%M%S}"))
    table = fs.sweep(experiment, seeds=seeds, **varied)
    table.to_csv(folder / "sweep.csv", index=False)
    final = table[(table.scope == "global") & (table.metric == "auroc")]
    keys = [c for c in final.columns if c not in ("scope", "metric", "value", "epsilon", "unit", "seconds", "seed")]
    print(final.groupby(keys, sort=False).agg(auroc=("value", "median"), epsilon=("epsilon", "max"),
                                              seeds=("seed", "nunique")).round(3).to_string())
    print(f"\nwrote {folder}/sweep.csv")
    return folder


def generate(args) -> None:
    """Write a synthetic cohort as parquet files."""
    knobs = {}
    for item in args.knob:
        name, _, value = item.partition("=")
        try:
            knobs[name] = float(value)
        except ValueError:
            raise ValueError(f"knob: expected NAME=NUMBER, got {item!r}") from None
    cohort = data_synthetic.generate(args.scenario, n_hospitals=args.hospitals, n_patients=args.patients,
                                     seed=args.seed, **knobs)
    folder = out_folder(Path(args.out))
    cohort.patients.to_parquet(folder / "patients.parquet", index=False)
    cohort.hospitals.to_parquet(folder / "hospitals.parquet", index=False)
    print(f"wrote {len(cohort.patients)} patients in {len(cohort.hospitals)} hospitals to {folder}/")


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="fedsim", description=__doc__.splitlines()[0])
    main.add_argument("--verbose", action="store_true",
                      help="show TensorFlow's own log lines (anywhere on the line; or set FEDSIM_TF_LOG=0)")
    commands = main.add_subparsers(dest="command", required=True)
    demo_cmd = commands.add_parser("demo", help="what fedsim is for in two minutes: privacy, leakage, poisoning")
    demo_cmd.add_argument("--out", default="results/demo", help="results folder (default: results/demo)")
    run_cmd = commands.add_parser("run", help="run an experiment from a YAML config")
    run_cmd.add_argument("config")
    run_cmd.add_argument("--out", help="results folder (default: results/<config>-<time>)")
    run_cmd.add_argument("--noise-seed", type=int, metavar="SECRET",
                         help="the DP noise secret, to repeat a DP run exactly (kept out of every file the run "
                              "writes; without it the noise is fresh)")
    export_cmd = commands.add_parser("export", help="write an experiment from a YAML config as a Flower app")
    export_cmd.add_argument("config")
    export_cmd.add_argument("--out", required=True, help="the app folder (created)")
    sweep_cmd = commands.add_parser("sweep", help="one experiment with fields varied, over seeds (cached runs)")
    sweep_cmd.add_argument("config")
    sweep_cmd.add_argument("--vary", action="append", default=[], metavar="FIELD=[VALUE, ...]",
                           help="an Experiment field and the YAML list of values to try, repeatable; e.g. "
                                "privacy=[null, {name: dpsgd, noise_multiplier: 1.0}]")
    sweep_cmd.add_argument("--seeds", type=int, nargs="+", default=[0])
    sweep_cmd.add_argument("--out", help="results folder (default: results/<config>-sweep-<time>)")
    data = commands.add_parser("data", help="synthetic cohorts").add_subparsers(dest="data_command", required=True)
    data.add_parser("list", help="list scenario cards")
    gen = data.add_parser("generate", help="write a synthetic cohort as parquet")
    gen.add_argument("scenario")
    gen.add_argument("--hospitals", type=int, default=20)
    gen.add_argument("--patients", type=int, default=None, help="total patients (default 800 per hospital)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                     help=f"heterogeneity knob, repeatable; one of {', '.join(data_synthetic.KNOBS)}")
    gen.add_argument("--out", default="data")
    run_cmd.add_argument("--audit-key", help="sign the audit log: a PEM Ed25519 private key or an HMAC secret file")
    audit = commands.add_parser("audit", help="audit logs").add_subparsers(dest="audit_command", required=True)
    check = audit.add_parser("verify", help="check an audit log's hash chain (and signatures, given the key)")
    check.add_argument("log", help="an audit.jsonl, or the results folder holding it")
    check.add_argument("--key", help="PEM Ed25519 key (public or private) or HMAC secret file")
    check.add_argument("--head", help="the hash the log must end at (detects a removed or extended tail)")
    rep = commands.add_parser("report", help="risk report of a results folder (Markdown + HTML)")
    rep.add_argument("results")
    rep.add_argument("--baseline", help="results folder of the same experiment without its attacks")
    rep.add_argument("--key", help="key to verify the audit log's signatures")
    rep.add_argument("--allow-tampered", action="store_true",
                     help="render a log that fails verification, under a warning banner (refused otherwise)")
    rep.add_argument("--owner", help="who prepares and signs the report (name, role)")
    rep.add_argument("--require", help="constraints for the recommendation, e.g. \"epsilon_record<=8, auroc>=0.80\"")
    assess_cmd = commands.add_parser("assess", help="candidate mitigation sets against real attacks: decision table")
    assess_cmd.add_argument("config")
    assess_cmd.add_argument("--out", help="results folder (default: results/<config>-assess-<time>)")
    assess_cmd.add_argument("--owner", help="who ran the assessment (name, role); recorded in its audit log")
    assess_cmd.add_argument("--require", help="constraints for the recommendation (overrides the config's)")
    return main


def audit_verify(args) -> int:
    path = Path(args.log)
    path = path / "audit.jsonl" if path.is_dir() else path
    key = fs.governance.load_key(args.key) if args.key else None
    verification = fs.governance.verify(path, key=key, expected_head=args.head)
    print(verification.summary())
    return 0 if verification.ok else 1


def report(args) -> None:
    key = fs.governance.load_key(args.key) if args.key else None
    paths = fs.governance.report(args.results, baseline=args.baseline, key=key, allow_tampered=args.allow_tampered,
                                 owner=args.owner, require=args.require)
    print(f"wrote {paths['markdown']} and {paths['html']}")


ASSESS_KEYS = ("candidates", "threats", "seeds", "audit", "mia_shadows", "require")


def assess(config_path: str, out: str | None, owner: str | None = None, require: str | None = None) -> Path:
    """Assess the config's candidates (cached runs); write decision.csv, decision.png, hospitals.csv, audit.jsonl
    and config.yaml (the settings resolved: ``fedsim assess`` reruns it)."""
    config = load_config(config_path, extra=ASSESS_KEYS)
    base = build_experiment({k: v for k, v in config.items() if k not in ASSESS_KEYS})
    candidates = config.get("candidates")
    if not isinstance(candidates, dict) or not candidates:
        raise ValueError("candidates: give a mapping {label: {Experiment changes}} of at least one candidate")
    audit = config.get("audit", {"name": "canaries"})
    audit = fs.components.from_settings(audit, "audit", "audit") if audit is not None else None
    settings = {k: config[k] for k in ("threats", "seeds", "mia_shadows") if k in config}
    require = require if require is not None else config.get("require")
    folder = out_folder(Path(out or f"results/{Path(config_path).stem}-assess-{datetime.now():%Y%m%d-%H%M%S}"))
    experiment = {k: v for k, v in base.settings().items() if k not in ("name", "audit")}
    assessment = fs.studies.assess(candidates, federation=base.federation, audit=audit, **settings, **experiment)
    paths = assessment.write(folder, owner=owner, require=require)
    rerun = {"federation": config["federation"], **experiment, "candidates": candidates, **settings,
             "audit": plain({"name": audit.name, **audit.settings()}) if audit is not None else None,
             "require": require}
    (folder / "config.yaml").write_text(CONFIG_HEADER.replace("fedsim run", "fedsim assess")
                                        + yaml.safe_dump(rerun, sort_keys=False))
    shown = assessment.table.set_index("candidate").T
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 30):
        print(shown.to_string())
        if require:
            print(f"\nrequire {require}:")
            print(assessment.recommend(require).to_string(index=False))
    print(f"\nwrote {folder}/: {', '.join(p.name for p in paths.values())}")
    return folder


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--verbose" in argv:  # read before TensorFlow loaded (fedsim._tf); accepted after the command too
        argv = ["--verbose", *(a for a in argv if a != "--verbose")]
    args = parser().parse_args(argv)
    try:
        if args.command == "demo":
            return demo.main(out_folder(Path(args.out)))
        elif args.command == "run":
            return run(args.config, args.out, args.audit_key, args.noise_seed)
        elif args.command == "export":
            export(args.config, args.out)
        elif args.command == "sweep":
            sweep(args.config, args.vary, args.seeds, args.out)
        elif args.command == "assess":
            assess(args.config, args.out, args.owner, args.require)
        elif args.command == "audit":
            return audit_verify(args)
        elif args.command == "report":
            report(args)
        elif args.data_command == "list":
            for name in data_synthetic.list_scenarios():
                print(f"{name}: {data_synthetic.load_card(name).title}")
            for name in data_synthetic.IMAGE_SCENARIOS:
                print(f"{name}: synthetic grayscale scans, lesion present or not (images; Python API only)")
        else:
            generate(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a file or folder the command needs (permission denied, is a directory, ...)
        print(f"error: {error.filename or type(error).__name__}: {error.strerror or error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
