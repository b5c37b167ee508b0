"""What an experiment writes to its audit log, and when.

``Governance`` is created by ``Experiment.run`` after the components are
installed. It installs the institution policies, opens ``audit.jsonl`` in the
results folder and writes:

- ``start``: the resolved config and its hash, software versions, a fingerprint
  of each hospital's data (SHA-256 of its preprocessed rows, never the rows),
  the data's provenance (``evaluation.provenance``),
  policies, the aggregation rule, and every component in play as it
  describes itself (family, registry name, settings, threats; unit and trust
  model for privacy techniques), plus any piece of the user's own;
- ``round`` (one per training round, once its aggregation is over): sampled,
  responding, dropped (failed), rejected and excluded hospitals with
  reasons, each update's L2 norm, clipping/noise in force, each charged
  hospital's cumulative DP steps (and epsilon, for hospitals under a cap),
  and what the aggregation rule did (``aggregation``: the rule, the
  hospitals whose reply it aggregated, those it left out and why, what it
  reported per reply such as the share of coordinates trimmed). Every
  decision in it is read from the run's decision record
  (``fedsim.engine.decisions``), where the components that made it put it:
  the participation table and the report read the same record. Under
  SecAgg+ the masked-vectors stage is the round (no update norms: the
  server only sees masked vectors); the other protocol stages are
  ``exchange`` entries;
- ``policy``: each enforcement of an institution policy;
- ``result``: released metrics, participation, privacy ledger, other tables,
  the model and a hash of its final weights, and the final model's evaluation
  on the released scopes (test size, events, intervals, calibration:
  ``evaluation.evaluation``);
- ``audit`` (with ``Experiment(audit=...)``): the empirical audit's bounds and
  whether they refute the accountant's epsilon (an ALERT statement if so);
- ``end`` (or ``aborted`` then ``end`` when the run raised).
"""

import functools
import hashlib
import importlib.metadata
import platform
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from flwr.common.secure_aggregation.secaggplus_constants import Stage

from fedsim.engine import Exchange, Plan, RoundObserver
from fedsim.engine.decisions import round_summary
from fedsim.engine.messages import arrays, decoded
from fedsim.engine.wrapper import unrecorded
from fedsim.governance.audit import AuditKey, AuditWriter, digest
from fedsim.governance.evaluation import evaluation, provenance
from fedsim.governance.policies import Policies, PolicyEnforcer, policy_table
from fedsim.plain import plain
from fedsim.privacy.ledger import installed_ledger
from fedsim.settings import results_base
from fedsim.strategies import aggregation_facts
from fedsim.training import trainer_for

PACKAGES = ("fedsim", "flwr", "tensorflow", "tf-keras", "tensorflow-privacy", "dp-accounting", "numpy", "pandas",
            "cryptography")


def results_folder(out, label: str) -> Path:
    """Where a run writes its audit log: ``out``, else a fresh folder under $FEDSIM_RESULTS or the temp dir.

    Not the working directory: ``Experiment.run`` is called many times by
    sweeps, notebooks and tests, which must not litter a repository; the CLI
    keeps its own lasting default (``results/<config>-<time>``).
    """
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    base = results_base()
    if base:
        Path(base).mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in label)[:40]
    return Path(tempfile.mkdtemp(prefix=f"{safe}-{datetime.now():%Y%m%d-%H%M%S}-", dir=base or None))


@functools.cache  # reading package metadata costs ~10 ms a run; it cannot change within a process
def _versions() -> tuple[tuple[str, str], ...]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return tuple(found.items())


def versions() -> dict[str, str]:
    """Python's and each package's version (``PACKAGES``), as the audit log records them."""
    return dict(_versions())


def fingerprints(fed) -> dict[str, dict]:
    """Per hospital: record counts and SHA-256 of its preprocessed train and test rows (never the rows)."""
    return {hospital: {"n_train": int(row.n_train), "n_test": int(row.n_test), "sha256": row.sha256}
            for hospital, row in fed.roster.iterrows()}


def strategy_chain(strategy) -> list:
    """The strategy and the ones it wraps (Flower's DP wrappers keep theirs in ``.strategy``)."""
    chain = []
    while strategy is not None and len(chain) < 10:
        chain.append(strategy)
        strategy = getattr(strategy, "strategy", None)
    return chain


def strategy_settings(strategy) -> list[dict]:
    keys = ("fraction_train", "min_train_nodes", "num_malicious_nodes", "num_nodes_to_select", "beta",
            "clipping_norm", "noise_multiplier", "target_clipped_quantile", "clip_norm_lr", "proximal_mu")
    return [{"class": type(s).__name__, **{k: getattr(s, k) for k in keys if hasattr(s, k)}}
            for s in strategy_chain(strategy)]


def name_of(thing) -> str:
    return getattr(thing, "__name__", None) or type(thing).__name__


def in_play(experiment, plan: Plan) -> dict[str, list[dict]]:
    """Every component of the run as it describes itself, and the user's own pieces.

    ``components``: ``Component.describe()`` of each (family, name, title,
    threats, settings; unit, trust model and epsilon for privacy). ``custom``:
    ClientApp mods and observers given by the user; one counts as an attack
    when it has a ``threat`` attribute (e.g. ``"poisoning"``) and, optionally,
    ``hospitals``.
    """
    custom = []
    for piece in (*experiment.client_mods, *(o for o in plan.observers if o in experiment.observers)):
        row = {"name": name_of(piece), "description": repr(piece)[:300]}
        if getattr(piece, "threat", None) is not None:
            row["threat"] = str(piece.threat)
        hospitals = getattr(piece, "hospitals", None)
        if isinstance(hospitals, str):
            hospitals = [hospitals]
        if isinstance(hospitals, (list, tuple)):
            row["hospitals"] = [str(h) for h in hospitals]
        custom.append(row)
    return {"components": [c.describe() for c in experiment.components()], "custom": custom}


def _weights(content) -> list[np.ndarray] | None:
    records = list(arrays(content).values())
    if len(records) != 1:
        return None
    try:
        return [decoded(a) for a in records[0].values()]
    except Exception:  # noqa: BLE001  (a hostile reply must not stop the audit)
        return None


def update_norms(exchange: Exchange) -> dict[str, float]:
    """L2 norm of each reply's change to the weights it was sent (replies that carry weights)."""
    norms = {}
    sent_weights: dict[int, list[np.ndarray] | None] = {}  # strategies send one shared record: decode it once
    for hospital, reply in exchange.replies.items():
        if not reply.has_content() or hospital not in exchange.sent:
            continue
        sent = exchange.sent[hospital].content
        if id(sent) not in sent_weights:
            sent_weights[id(sent)] = _weights(sent)
        new, old = _weights(reply.content), sent_weights[id(sent)]
        if new is None or old is None or len(new) != len(old):
            continue
        try:
            norms[hospital] = float(np.sqrt(sum(np.sum((np.asarray(a, np.float64) - b) ** 2)
                                                for a, b in zip(new, old, strict=True))))
        except (ValueError, TypeError):
            continue
    return norms


class AuditTrail(RoundObserver):
    """Writes one ``round`` entry per training round (observer) plus policy enforcements as they happen."""

    def __init__(self, writer: AuditWriter, plan: Plan, enforcer: PolicyEnforcer | None):
        self.writer = writer
        self.plan = plan
        self.enforcer = enforcer
        self.pending: dict[int, dict] = {}  # what a round's exchange showed, until its aggregation is over

    def write_policies(self) -> None:
        if self.enforcer is not None:
            for row in self.enforcer.drain():
                self.writer.append("policy", row)

    def _privacy(self, server_round: int, responding: list[str]) -> dict:
        """Per mechanism, each charged hospital's cumulative steps and rounds so far, and its epsilon where capped.

        Epsilon is computed only for hospitals under a cap: their eligibility
        check has just run the accountant for the same releases, so it is
        cached. For the others one accountant call per hospital and round
        would slow DP runs down a lot (dp-accounting: ~0.1 s RDP, ~1 s PLD);
        the steps logged here fix their epsilon.
        """
        ledger = installed_ledger(self.plan)
        if ledger is None or not ledger.charges:
            return {}
        spent = {}
        for i, charge in enumerate(ledger.charges):
            charged = (self.plan.state.eligible.get(server_round, self.plan.federation.hospitals)
                       if charge.per == "release" else responding)
            spent[charge.mechanism] = {
                h: {"steps": sum(ledger.events[i][h].values()), "rounds": ledger.rounds[i][h],
                    **({"epsilon": ledger.epsilon(i, h)} if h in ledger.caps else {})}
                for h in charged}
        return spent

    def on_exchange(self, exchange: Exchange) -> None:
        self.write_policies()
        stage = exchange.secagg_stage
        if exchange.message_type != "train" or stage not in (None, Stage.COLLECT_MASKED_VECTORS):
            self.writer.append("exchange", {"round": exchange.server_round, "type": exchange.message_type,
                                            "secagg_stage": stage, "sent": sorted(exchange.sent),
                                            "replied": sorted(exchange.replies)})
            return
        settings = self.plan.recipe.dp_entries()
        self.pending[exchange.server_round] = {
            "sampled": sorted(exchange.sent),
            "responding": sorted(h for h, m in exchange.replies.items() if m.has_content()),
            "delivered": sorted(exchange.updates()),
            "update_norms": update_norms(exchange),
            "clipping_and_noise": {"client_training": settings, "strategy": [
                s for s in strategy_settings(self.plan.strategy) if "clipping_norm" in s]},
        }

    def on_round_end(self, server_round: int) -> None:
        """The round's aggregation is over: write its entry, every decision read from the decision record."""
        seen = self.pending.pop(server_round, None)
        if seen is None:
            return
        rows = self.plan.decisions.of_round(server_round)
        summary = round_summary(rows)
        aggregation = {"rule": summary["rule"] or type(unrecorded(self.plan.strategy)).__name__,
                       "aggregated": summary["aggregated"], "not_selected": summary["not_selected"],
                       "values": summary["values"]}
        explained = set(summary["aggregated"]) | set(summary["rejected"]) | set(summary["not_selected"])
        unexplained = [h for h in seen.pop("delivered") if h not in explained]
        if unexplained:  # the rule received them, or should have, and nothing says what it did
            aggregation["unexplained"] = unexplained
        self.writer.append("round", {
            "round": server_round,
            "sampled": seen["sampled"],
            "responding": seen["responding"],
            "dropped": {r["hospital"]: r["reason"] for r in rows if r["decision"] == "failed"},
            "rejected": summary["rejected"],
            "excluded": {r["hospital"]: r["reason"] for r in rows if r["decision"] == "excluded"},
            "update_norms": seen["update_norms"],
            "clipping_and_noise": seen["clipping_and_noise"],
            "privacy_spent": self._privacy(server_round, seen["responding"]),
            "aggregation": aggregation,
        })

    def flush(self) -> None:
        """Write the entries of rounds whose aggregation never ended (the run stopped or raised in between)."""
        for server_round in sorted(self.pending):
            self.on_round_end(server_round)


class Governance:
    """Policies and the audit log of one run (created and driven by ``Experiment.run``)."""

    def __init__(self, experiment, plan: Plan, policies: dict | None = None, out=None, key: AuditKey | None = None):
        self.plan = plan
        resolved = Policies(policies, plan.federation) if policies else None
        self.enforcer = resolved.install(plan) if resolved and resolved.policies else None
        self.folder = results_folder(out, plan.label)
        self.path = self.folder / "audit.jsonl"
        if self.path.exists() and self.path.stat().st_size:  # a rerun into the same folder keeps the old log
            stamp = datetime.fromtimestamp(self.path.stat().st_mtime).strftime("%Y%m%d-%H%M%S-%f")
            self.path.rename(self.folder / f"audit-{stamp}.jsonl")
        self.writer = AuditWriter(self.path, key)
        self.trail = AuditTrail(self.writer, plan, self.enforcer)
        plan.observers.append(self.trail)
        plan.seal()
        self.config = experiment.config(plan)
        config = plain(self.config)
        self.writer.append("start", {
            "label": plan.label,
            "config": config,
            "config_hash": digest(config),
            "versions": versions(),
            "data_fingerprints": fingerprints(experiment.federation),
            "data": provenance(experiment.federation),
            "policies": policy_table(resolved.policies) if resolved else [],
            "strategy": strategy_settings(plan.strategy),
            "aggregation": aggregation_facts(experiment.strategy),
            "client_training": {k: v for k, v in plan.train_config().items()},
            "in_play": in_play(experiment, plan),
            "signed": type(key).__name__ if key is not None else None,
        })
        self.trail.write_policies()

    def release(self, metrics: pd.DataFrame) -> pd.DataFrame:
        """The metrics the policies allow to be released."""
        return metrics if self.enforcer is None else self.enforcer.release(metrics)

    def finish(self, result, events: list[dict], test) -> None:
        """Write the policy enforcements left, the result (``test``: its final test predictions), the closing entry."""
        if self.enforcer is not None:
            result.tables["policy"] = self.enforcer.table()  # with the suppressions made at release
        self.trail.flush()
        self.trail.write_policies()
        trainer = trainer_for(result.model_fn, result.federation.n_features)
        model = trainer.model  # the architecture the run trained (its weights are not the result's)
        digest_w = hashlib.sha256(b"".join(np.ascontiguousarray(w).tobytes() for w in result.weights)).hexdigest()
        # Reconstructed records are patient data an attack recovered: the log keeps their scores only.
        tables = {name: table.to_dict(orient="records") for name, table in result.tables.items()
                  if isinstance(table, pd.DataFrame) and name not in ("participation", "decisions", "reconstructions")}
        self.writer.append("result", {
            "metrics": result.metrics.to_dict(orient="list"),
            "participation": events,
            "tables": tables,
            "model": {"name": result.config.get("model"), "class": type(model).__name__,
                      "parameters": int(sum(int(np.prod(w.shape)) for w in result.weights)),
                      "layers": [{"name": layer.name, "class": type(layer).__name__,
                                  "output": str(getattr(layer, "output_shape", ""))} for layer in model.layers],
                      "n_features": result.federation.n_features,
                      "features": list(getattr(result.federation.preprocessor, "features", [])),
                      "target": result.federation.target, "weights_sha256": digest_w},
            "evaluation": evaluation(test.y, test.p, test.offsets, self.plan.federation.hospitals,
                                     set(result.metrics.scope)),
        })
        audits = result.tables.get("privacy_audit")
        if isinstance(audits, pd.DataFrame) and not audits.empty:  # the empirical audit's verdict, on its own entry
            refuted = [f"{r.technique or 'no DP'}, {r.level} level" for r in audits.itertuples() if r.exceeded]
            statement = (f"ALERT: the audited lower bound on epsilon exceeds the accountant's epsilon "
                         f"({'; '.join(refuted)}): the privacy claim is false" if refuted
                         else "the audited lower bounds stay at or below the accountant's epsilon")
            self.writer.append("audit", {"rows": audits.to_dict(orient="records"), "claim_refuted": bool(refuted),
                                         "statement": statement})
        self.writer.append("end", {"status": "completed", "rounds": self.plan.state.completed_rounds})

    def abort(self, error: BaseException) -> None:
        """The run raised: log what and close the log (the chain stays valid)."""
        try:
            self.trail.flush()
            self.trail.write_policies()
            self.writer.append("aborted", {"error": f"{type(error).__name__}: {error}"[:2000],
                                           "rounds": self.plan.state.completed_rounds})
            self.writer.append("end", {"status": "aborted", "rounds": self.plan.state.completed_rounds})
        except OSError:
            pass
