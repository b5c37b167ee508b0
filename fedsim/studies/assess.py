"""Mitigations as a measured decision: candidate set-ups against a battery of real attacks, one decision table.

``assess(candidates, federation=...)`` runs each candidate (a dict of
Experiment changes: ``{"privacy": [DPSGD(1.0), SecAgg()]}``, ``{"strategy":
"krum", "defenses": NormBound()}``...) and plain FedAvg (the reference) over
``seeds``, through the one cached runner (``fedsim.studies.run_grid``):

- the candidate as it is (its final model then attacked by membership
  inference, ``"membership inference"``: RMIA from federated shadows, runs of
  the same candidate on shadow federations, cached too), and with a gradient
  inversion of one hospital's round-1 update watching (``"update leakage"``;
  under SecAgg+ it inverts the round's aggregate, all that server sees);
- the candidate with a poisoning hospital (``"poisoning"``: a sign flip), a
  backdoor (``"backdoor"``: model replacement) and dropouts (``"dropout"``);
- the candidate with an empirical privacy audit (``fedsim.audit.Canaries``,
  first seed only: one audit is one run), which inserts canaries. SecAgg+
  masks what canary hospitals would join, so a central-DP candidate's audit
  run leaves SecAgg+ out (it adds no noise: the epsilon audited is the same);
  record canaries are capped at half the audited hospital's rows.

A battery run a candidate cannot host (a server-side backdoor probe under
SecAgg+, which hides the updates it needs; an adversary that rewrites its
reply, which fedsim cannot simulate inside SecAgg+'s legacy messages) is left
out and listed in ``Assessment.skipped``, with the reason; its columns stay
NaN ("not measured"), never a number from an attack that did not act.

The decision table has one row per candidate (``COLUMNS``). Epsilons carry
their unit: ``epsilon_record`` (one patient record; a hospital-level
guarantee bounds it too, since a record is part of its hospital's
contribution) and ``epsilon_hospital`` (a hospital's whole contribution),
each the largest over hospitals and infinite without DP at that unit; the
audit's lower bound sits in the column of the unit it audited
(``epsilon_audited_record`` / ``epsilon_audited_hospital``; an update-level
audit bounds the hospital level from below). How costs are measured, in
stable units relative to plain FedAvg: ``compute_cost`` is the training work
of a clean run (each local step of each reply the server received: 6 x
parameters x batch FLOPs, 8 x under DP-SGD for its per-example norms);
``communication_cost`` is the bytes of every message of one round (model
arrays, SecAgg+'s masked vectors, keys and shares, metrics and configs;
counted on a one-round run of the candidate) times the rounds;
``wall_time_cost`` is the median wall time of a clean run on the assessing
machine, an extra that depends on it (``Trial.seconds``, as measured when it
first ran, after a one-round warm-up of every candidate). AUROC is the mean
over seeds of the final global AUROC, its interval a 95% percentile
bootstrap of that mean over test patients.
"""

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fedsim import adversaries, attacks, availability
from fedsim.attacks.membership import attack_result
from fedsim.audit import Canaries
from fedsim.audit.canaries import PER
from fedsim.components import Component
from fedsim.engine import SecAggSettings
from fedsim.experiment import Experiment
from fedsim.federation import Federation
from fedsim.governance.audit import AuditKey, AuditWriter, digest, verify
from fedsim.governance.evaluation import bootstrap_auroc, evaluation, provenance
from fedsim.governance.report.recommend import parse, recommend
from fedsim.governance.trail import fingerprints, versions
from fedsim.plain import plain
from fedsim.plots import plot_decision
from fedsim.privacy.ledger import installed_ledger
from fedsim.results import Result
from fedsim.studies import costs
from fedsim.studies.grid import check_seeds, run_grid
from fedsim.training import trainer_for
from fedsim.validation import Integer, Options, Seq, check

THREATS = ("update leakage", "membership inference", "poisoning", "backdoor", "dropout")
REFERENCE = "plain FedAvg"
DEFAULT_AUDIT = Canaries(n=256)
REFERENCE_CHANGES = {"strategy": "fedavg", "strategy_options": None, "privacy": None, "defenses": None,
                     "adversaries": None, "availability": None, "audit": None}
COLUMNS = ["candidate", "auroc", "auroc_low", "auroc_high", "epsilon_record", "epsilon_hospital",
           "epsilon_audited_record", "epsilon_audited_hospital", "audit_claim", "audit_refuted", "leakage_psnr",
           "leakage_record_error", "mia_tpr@0.1%fpr", "mia_auc", "auroc_poisoned", "backdoor_success", "auroc_dropout",
           "compute_cost", "communication_cost", "wall_time_cost", "pays_most", "pays_most_change"]
AUDITED = {"record": "record", "hospital": "hospital", "update": "hospital"}  # audit level -> the unit it bounds



@dataclass(frozen=True)
class Assessment:
    """The decision table and what it rests on; ``plot``, ``recommend`` and ``write`` it."""

    table: pd.DataFrame
    hospitals: pd.DataFrame  # candidate, hospital, auroc, reference_auroc, change (means over seeds)
    privacy: pd.DataFrame  # the clean runs' privacy ledgers, with candidate and seed
    audits: pd.DataFrame  # the audit runs' privacy_audit rows, with candidate
    attacks: pd.DataFrame  # every attack's rows: candidate, seed, attack, hospital, round, metric, value
    experiments: dict[str, Experiment]  # each candidate as it was run clean (reference included)
    results: dict[tuple[str, str, int], Result] = field(repr=False)  # (candidate, battery, seed) -> Result
    threats: tuple[str, ...] = THREATS
    seeds: tuple[int, ...] = (0,)
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["candidate", "battery", "reason"]))

    def plot(self):
        """The candidates side by side, one panel per criterion (``fedsim.plots.plot_decision``)."""
        return plot_decision(self.table)

    def recommend(self, require: str | None) -> pd.DataFrame:
        """Which candidates meet ``require`` (e.g. ``"epsilon_record<=8, auroc>=0.80"``), the best first
        (``fedsim.governance.report.recommend``)."""
        return recommend(self.table, parse(require, COLUMNS))

    def write(self, folder, owner: str | None = None, require: str | None = None,
              key: AuditKey | None = None) -> dict[str, Path]:
        """Write ``decision.csv``, ``hospitals.csv``, ``decision.png`` and the assessment's ``audit.jsonl``.

        The log (what ``fedsim report`` renders) holds the decision table, each
        candidate's components, per-hospital evaluation and privacy, and the
        path and head hash of every run's own audit log.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        parse(require, COLUMNS)
        paths = {"decision": folder / "decision.csv", "hospitals": folder / "hospitals.csv",
                 "figure": folder / "decision.png", "log": folder / "audit.jsonl"}
        self.table.to_csv(paths["decision"], index=False)
        self.hospitals.to_csv(paths["hospitals"], index=False)
        self.plot().savefig(paths["figure"], dpi=120, bbox_inches="tight")
        _write_log(self, paths["log"], owner, require, key)
        return paths


def _runs(label: str, experiment: Experiment, threats, poisoning, backdoor, dropout, inversion):
    """The battery of one candidate: ({label | battery: Experiment}, {battery: why it cannot run})."""
    secagg = experiment.build_plan().secagg is not None
    runs, skipped = {"clean": lambda: experiment}, {}
    if "update leakage" in threats:
        aggregate = secagg and "aggregate" in getattr(inversion, "targets", ())
        watcher = dataclasses.replace(inversion, target="aggregate") if aggregate else inversion
        runs["leakage"] = lambda: experiment.replace(
            observers=[*experiment.observers, watcher],
            rounds=max(experiment.rounds, watcher.round + 1) if aggregate else experiment.rounds)
    for threat, adversary in (("poisoning", poisoning), ("backdoor", backdoor)):
        if threat in threats:
            runs[threat] = lambda a=adversary: experiment.replace(adversaries=[*(experiment.adversaries or ()), a])
    if "dropout" in threats:
        runs["dropout"] = lambda: experiment.replace(availability=[*(experiment.availability or ()), dropout])
    built = {}
    for battery, make in runs.items():
        try:
            run = make().replace(name=f"{label} | {battery}")
        except ValueError as error:  # an attack this set-up cannot host (e.g. a server-side probe under SecAgg+)
            skipped[battery] = str(error)
            continue
        plan = run.build_plan()
        if battery in ("poisoning", "backdoor") and plan.secagg is not None and plan.mods_at("adversary"):
            # Adversaries that rewrite a hospital's reply leave SecAgg+'s legacy messages alone: the run would
            # show an attack that never happened.
            skipped[battery] = ("the attacking hospital rewrites its reply in a ClientApp mod, and fedsim's "
                                "adversaries leave SecAgg+'s legacy messages alone: under SecAgg+ it would not act")
            continue
        built[f"{label} | {battery}"] = run
    return built, skipped


def _audit_run(label: str, experiment: Experiment, audit: Canaries) -> Experiment:
    """The candidate with the audit; SecAgg+ left out when the canaries must join the aggregate."""
    plan = experiment.build_plan()
    ledger = installed_ledger(plan)
    charges = ledger.charges if ledger is not None else []
    level = audit.level if audit.level != "auto" else PER[charges[0].per] if charges else (
        "record" if plan.secagg is not None else "hospital")  # without DP, canary hospitals show what leaks
    audit = dataclasses.replace(audit, level=level)
    privacy = experiment.privacy or ()
    if level != "record" and plan.secagg is not None:
        privacy = tuple(p for p in privacy if not isinstance(p, SecAggSettings)) or None
    if level == "record":  # at most half of the hospital's rows
        i = plan.federation.index_of(audit.hospital)
        audit = dataclasses.replace(audit, n=min(audit.n, int(plan.federation.n_train[i]) // 2))
    return experiment.replace(privacy=privacy, audit=audit, name=f"{label} | audit")


def _final(res: Result, metric: str = "auroc") -> float:
    try:
        return res.final(metric)
    except ValueError:
        return math.nan


def _candidates(candidates: dict[str, dict], base: Experiment) -> dict[str, Experiment]:
    """The reference and every candidate as Experiments (each a change of ``base``), by label."""
    experiments = {}
    for label, changes in {REFERENCE: REFERENCE_CHANGES, **candidates}.items():
        if not isinstance(changes, dict):
            raise ValueError(f"candidates[{label!r}]: expected a dict of Experiment changes, got "
                             f"{type(changes).__name__}")
        try:
            experiments[str(label)] = base.replace(name=str(label), **changes)
        except (TypeError, ValueError) as error:
            raise ValueError(f"candidates[{label!r}]: {error}") from None
    return experiments


def _attack_table(results: dict, runs: dict, threats, mia_shadows: int, cache) -> pd.DataFrame:
    """Every attack's metrics: the inversion watching each leakage run, membership inference on each clean model."""
    def run_shadow(shadow: Experiment) -> Result:
        return run_grid({shadow.name: shadow}, cache=cache)[0].result

    attack_rows = []
    for (label, battery, seed), res in results.items():
        if battery == "leakage":
            attack_rows.append(res.attacks.assign(candidate=label, seed=seed))
        if battery == "clean" and "membership inference" in threats:
            found = attack_result(res, method="rmia", n_shadows=mia_shadows, seed=seed, progress=False,
                                  experiment=runs[f"{label} | clean"].replace(seed=seed), run_shadow=run_shadow)
            attack_rows.append(found.metrics().assign(candidate=label, seed=seed, details="final model"))
    columns = ["candidate", "seed", "attack", "hospital", "round", "metric", "value"]
    return pd.concat([f[columns] for f in attack_rows], ignore_index=True) if attack_rows else pd.DataFrame(
        columns=columns)


def assess(candidates: dict[str, dict], federation: Federation, threats: Sequence[str] | None = None,
           seeds: Sequence[int] = (0,), audit: Canaries | None = DEFAULT_AUDIT, poisoning: Component | None = None,
           backdoor: Component | None = None, dropout: Component | None = None, inversion: Component | None = None,
           mia_shadows: int = 4, cache="default", **experiment) -> Assessment:
    """Run every candidate against the battery of ``threats`` (default: all of ``THREATS``); the decision table.

    ``candidates``: {label: Experiment changes} (components as instances or
    ``{name: ..., <settings>}``, as in YAML). Other keyword arguments make
    the base Experiment every candidate changes (``model``, ``rounds``...).
    ``poisoning`` (default: one hospital in four flips its update),
    ``backdoor`` (model replacement by one hospital), ``dropout`` (30% of
    replies lost), ``inversion`` (gradient inversion of hospital 0's round-1
    update, 200 steps) and ``audit`` (None: no audit) replace the standard
    attacks. See the module docstring for what each column measures.
    """
    if not isinstance(candidates, dict) or not candidates:
        raise ValueError("candidates: give a non-empty {label: {Experiment field: value}} dict")
    if REFERENCE in candidates:
        raise ValueError(f"candidates: {REFERENCE!r} names the reference run; give the candidate another label")
    threats = tuple(THREATS if threats is None else check("threats", threats, Seq(
        Options(*THREATS), what=f"a list of threats from {list(THREATS)}")))
    seeds = check_seeds(seeds)
    check("mia_shadows", mia_shadows, Integer(min=2))
    if audit is not None and not isinstance(audit, Canaries):
        raise ValueError(f"audit: expected a fedsim.audit.Canaries or None, got {type(audit).__name__}")
    poisoning = poisoning or adversaries.SignFlip(hospitals=0.25)
    backdoor = backdoor or adversaries.ModelReplacement()
    dropout = dropout or availability.Dropout(rate=0.3)
    inversion = inversion or attacks.GradientInversion(hospital=0, round=1, steps=200)
    experiments = _candidates(candidates, Experiment(federation=federation, **experiment))
    runs, skipped = {}, []
    for label, exp in experiments.items():
        built, cannot = _runs(label, exp, threats, poisoning, backdoor, dropout, inversion)
        runs.update(built)
        skipped += [{"candidate": label, "battery": battery, "reason": reason} for battery, reason in cannot.items()]
    # One uncached round of each candidate counts its traffic, and traces every code path the grid will run
    # (the first run in a process pays TensorFlow's tracing: its wall time would not be the candidate's).
    traffic = {label: costs.traffic(exp) for label, exp in experiments.items()}
    trials = {(t.label, t.seed): t for t in run_grid(runs, seeds=seeds, cache=cache, desc="assess")}
    if audit is not None:
        audited = {f"{label} | audit": _audit_run(label, exp, audit) for label, exp in experiments.items()}
        trials.update({(t.label, t.seed): t for t in run_grid(audited, seeds=seeds[:1], cache=cache,
                                                                desc="assess: audits")})
    results = {(label.split(" | ")[0], label.split(" | ")[1], seed): t.result for (label, seed), t in trials.items()}

    attack_table = _attack_table(results, runs, threats, mia_shadows, cache)
    seconds = {label: float(np.median([trials[f"{label} | clean", s].seconds for s in seeds])) for label in experiments}
    work = {label: costs.work(exp, [results[label, "clean", s] for s in seeds]) for label, exp in experiments.items()}
    hospitals = _hospitals(results, experiments, seeds)
    rows = [_row(label, exp, results, attack_table, hospitals, seeds, traffic, seconds, work)
            for label, exp in experiments.items()]
    table = pd.DataFrame(rows, columns=COLUMNS)
    privacy = pd.concat([res.privacy.assign(candidate=label, seed=seed) for (label, battery, seed), res
                         in results.items() if battery == "clean" and not res.privacy.empty] or [pd.DataFrame()],
                        ignore_index=True)
    audits = pd.concat([res.tables["privacy_audit"].assign(candidate=label) for (label, battery, _), res
                        in results.items() if battery == "audit"] or [pd.DataFrame()], ignore_index=True)
    return Assessment(table, hospitals, privacy, audits, attack_table, experiments, results, threats, seeds,
                      pd.DataFrame(skipped, columns=["candidate", "battery", "reason"]))


def _hospitals(results, experiments, seeds) -> pd.DataFrame:
    """Each hospital's final AUROC per candidate (mean over seeds) against plain FedAvg's."""
    rows = []
    for label in experiments:
        for seed in seeds:
            metrics = results[label, "clean", seed].metrics
            last = metrics[(metrics.metric == "auroc") & (metrics.scope != "global")
                           & (metrics["round"] == metrics["round"].max())]
            rows += [{"candidate": label, "seed": seed, "hospital": h, "auroc": v} for h, v in zip(last.scope,
                                                                                                  last.value)]
    frame = pd.DataFrame(rows, columns=["candidate", "seed", "hospital", "auroc"])
    means = frame.groupby(["candidate", "hospital"], sort=False).auroc.mean().reset_index()
    reference = means[means.candidate == REFERENCE].set_index("hospital").auroc
    means["reference_auroc"] = means.hospital.map(reference)
    means["change"] = means.auroc - means.reference_auroc
    return means


def _row(label, experiment, results, attack_table, hospitals, seeds, traffic, seconds, work) -> dict:
    clean = [results[label, "clean", s] for s in seeds]
    fed = experiment.federation
    predictions = [trainer_for(r.model_fn, fed.n_features).predict(r.weights, fed.x_test) for r in clean]
    low, high = bootstrap_auroc(fed.y_test, predictions, np.random.default_rng(0))
    privacy = pd.concat([r.privacy for r in clean])

    def unit_epsilon(unit):  # the largest over hospitals; infinite without DP at this unit
        rows = privacy[privacy.unit == unit] if not privacy.empty else privacy
        return float(rows.epsilon.max()) if len(rows) else math.inf

    record, hospital = unit_epsilon("record"), unit_epsilon("hospital")
    mine = attack_table[attack_table.candidate == label]

    def attack_mean(metric, attack_prefix):
        values = mine[(mine.metric == metric) & mine.attack.str.startswith(attack_prefix)].value
        return float(values.mean()) if len(values) else math.nan

    def battery_mean(battery, metric="auroc"):
        found = [_final(results[label, battery, s], metric) for s in seeds if (label, battery, s) in results]
        return float(np.mean(found)) if found else math.nan

    backdoor = [results[label, "backdoor", s].tables.get("backdoor") for s in seeds if (label, "backdoor", s)
                in results]
    backdoor = [float(b.backdoor_success.dropna().iloc[-1]) for b in backdoor
                if b is not None and b.backdoor_success.notna().any()]  # the last round it was measured
    audit = results.get((label, "audit", seeds[0]))
    audit_row = audit.tables["privacy_audit"].iloc[0] if audit is not None else None
    audited = AUDITED.get(audit_row.level) if audit_row is not None else None
    changes = hospitals[(hospitals.candidate == label) & hospitals.change.notna()]
    worst = changes.loc[changes.change.idxmin()] if label != REFERENCE and len(changes) else None
    worst = worst if worst is not None and worst.change < 0 else None  # nobody pays: no hospital named
    return {
        "candidate": label, "auroc": float(np.mean([_final(r) for r in clean])), "auroc_low": low, "auroc_high": high,
        "epsilon_record": min(record, hospital), "epsilon_hospital": hospital,
        **{f"epsilon_audited_{unit}": float(audit_row.epsilon_audited) if audited == unit else math.nan
           for unit in ("record", "hospital")},
        "audit_claim": float(audit_row.epsilon_claimed) if audit_row is not None else math.nan,
        "audit_refuted": bool(audit_row.exceeded) if audit_row is not None else False,
        "leakage_psnr": attack_mean("psnr", "gradient inversion"),
        "leakage_record_error": attack_mean("max_rel_error", "gradient inversion"),
        "mia_tpr@0.1%fpr": attack_mean("tpr@0.1%fpr", "rmia"), "mia_auc": attack_mean("auc", "rmia"),
        "auroc_poisoned": battery_mean("poisoning"), "backdoor_success": float(np.mean(backdoor)) if backdoor
        else math.nan, "auroc_dropout": battery_mean("dropout"),
        "compute_cost": work[label] / work[REFERENCE] if work[REFERENCE] else math.nan,
        "communication_cost": traffic[label] / traffic[REFERENCE] if traffic[REFERENCE] else math.nan,
        "wall_time_cost": seconds[label] / seconds[REFERENCE] if seconds[REFERENCE] > 0 else math.nan,
        "pays_most": worst.hospital if worst is not None else "",
        "pays_most_change": float(worst.change) if worst is not None else math.nan,
    }


def _write_log(assessment: Assessment, path: Path, owner, require, key) -> None:
    """The assessment's audit log: start (config, data, candidates), one entry per candidate, result, end."""
    experiments = assessment.experiments
    reference = experiments[REFERENCE]
    fed = reference.federation
    config = plain({"base": reference.config(), "candidates": {label: exp.config() for label, exp
                                                                in experiments.items()},
                    "threats": list(assessment.threats), "seeds": list(assessment.seeds)})
    if path.exists() and path.stat().st_size:
        path.unlink()  # an assessment folder holds the latest assessment's log
    log = AuditWriter(path, key)
    log.append("start", {
        "kind": "assessment", "label": f"assessment of {len(experiments) - 1} candidates", "config": config,
        "config_hash": digest(config), "versions": versions(), "data": provenance(fed),
        "data_fingerprints": fingerprints(fed), "owner": owner, "require": require,
        "threats": list(assessment.threats), "seeds": list(assessment.seeds),
        "candidates": {label: [c.describe() for c in exp.components()] for label, exp in experiments.items()},
        "in_play": {"components": [], "custom": []}, "signed": type(key).__name__ if key is not None else None,
    })
    table = assessment.table.to_dict(orient="records")
    for label, exp in experiments.items():
        first = assessment.results[label, "clean", assessment.seeds[0]]
        runs = [{"battery": battery, "seed": seed, "audit_log": str(res.audit_path) if res.audit_path else None,
                 "head": verify(res.audit_path).head if res.audit_path and Path(res.audit_path).exists() else None}
                for (name, battery, seed), res in assessment.results.items() if name == label]
        trainer = trainer_for(first.model_fn, fed.n_features)
        log.append("candidate", {
            "label": label, "row": next(r for r in table if r["candidate"] == label),
            "components": [c.describe() for c in exp.components()],
            "hospitals": assessment.hospitals[assessment.hospitals.candidate == label].to_dict(orient="records"),
            "privacy": (assessment.privacy[assessment.privacy.candidate == label].to_dict(orient="records")
                        if "candidate" in assessment.privacy else []),
            "audit": (assessment.audits[assessment.audits.candidate == label].to_dict(orient="records")
                      if "candidate" in assessment.audits else []),
            "attacks": assessment.attacks[assessment.attacks.candidate == label].to_dict(orient="records"),
            "skipped": assessment.skipped[assessment.skipped.candidate == label].to_dict(orient="records"),
            "evaluation": evaluation(fed.y_test, trainer.predict(first.weights, fed.x_test), fed.test_offsets,
                                     fed.hospitals, set(first.metrics.scope)),
            "runs": runs,
        })
    log.append("result", {"decision": table, "columns": COLUMNS})
    log.append("end", {"status": "completed", "candidates": len(experiments)})
