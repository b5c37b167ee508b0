"""The record is the truth: participation table, audit log and report say the same thing, round by round.

Every registered component, each robust rule, and two wrappers written here as a researcher would (one that
rejects with a reason, one that leaves replies out silently) run against a sign flipper. For each run, the
decisions the participation table lists (who was kept out of which round, and why) must be the ones the audit
log's round entries hold and the ones the report shows; every reply that reached the server is either
aggregated or kept out with the decision that kept it out, and never both.
"""

import numpy as np
import pandas as pd
import pytest

import fedsim as fs
from fedsim.components import FAMILIES, REGISTRY
from fedsim.governance.report import round_statuses
from fedsim.governance.report.run_log import Run

ATTACKER = "H001"


class CosineFilter(fs.StrategyWrapper):
    """A researcher's defense from CONTRIBUTING's recipe: drop updates pointing away from the mean."""

    def process_replies(self, server_round, replies):
        mean = np.mean([self.flat_update(r) for r in replies], axis=0)
        kept = []
        for reply in replies:
            if self.flat_update(reply) @ mean < 0:
                self.reject(server_round, reply, "points away from the mean update")
            else:
                kept.append(reply)
        return kept


class SilentFilter(fs.StrategyWrapper):
    """A wrapper that drops the largest update without saying so."""

    def process_replies(self, server_round, replies):
        norms = [np.linalg.norm(self.flat_update(r)) for r in replies]
        return [r for r, n in zip(replies, norms) if n < max(norms)]


CASES = {
    "privacy: dpsgd": {"privacy": fs.privacy.DPSGD(1.0)},
    "privacy: central_dp": {"privacy": fs.privacy.CentralDP(0.5)},
    "privacy: central_dp, client side": {"privacy": fs.privacy.CentralDP(0.5, side="client")},
    "privacy: local_dp": {"privacy": fs.privacy.LocalDP(epsilon=20.0)},
    "privacy: secagg": {"privacy": fs.privacy.SecAgg()},
    "privacy: sparsify": {"privacy": fs.privacy.Sparsify(keep=0.5)},
    "defense: update_validator": {"defenses": fs.defenses.UpdateValidator(max_norm=1.0)},
    "defense: norm_bound": {"defenses": fs.defenses.NormBound()},
    "defense: trust_score": {"defenses": fs.defenses.TrustScore(root_size=50)},
    "defense: wrap (a researcher's filter)": {"defenses": fs.defenses.Wrap(CosineFilter)},
    "defense: wrap (a silent filter)": {"defenses": fs.defenses.Wrap(SilentFilter)},
    "availability: dropout": {"availability": fs.availability.Dropout(0.3)},
    "availability: crash": {"availability": fs.availability.Crash(rounds=[2])},
    "availability: stragglers": {"availability": fs.availability.Stragglers(deadline_s=1.0, profiles={
        "H000": {"mbit_per_s": 0.01}})},
    "availability: min_participation": {"availability": [fs.availability.Dropout(0.6),
                                                         fs.availability.MinParticipation(min_hospitals=3)]},
    "privacy budget": {"privacy": fs.privacy.DPSGD(1.0), "privacy_budget": {"default": 100.0, "H002": 0.5}},
    **{f"rule: {name}": {"strategy": name, "strategy_options": options} for name, options in (
        ("krum", {"num_malicious_nodes": 1}), ("multikrum", {"num_malicious_nodes": 1, "num_nodes_to_select": 3}),
        ("bulyan", {"num_malicious_nodes": 1}), ("fedtrimmedavg", {"beta": 0.2}), ("fedmedian", {}))},
    **{f"adversary: {name}": {"adversaries": cls(hospitals=[ATTACKER])} for name, cls in REGISTRY["adversary"].items()
       if cls.__module__.startswith("fedsim.")},
}


def test_the_cases_cover_every_registered_component_that_decides():
    named = {case.split(": ")[1].split(" ")[0] for case in CASES if ": " in case}
    families = ("privacy", "defense", "availability", "adversary")
    registered = {name for family in families for name, cls in REGISTRY[family].items()
                  if cls.__module__.startswith("fedsim.")}
    assert registered <= named and set(families) <= set(FAMILIES)


@pytest.fixture(scope="module")
def fed():
    return fs.synthetic_federation("icu_mortality", n_hospitals=8, n_patients=2400, seed=1)


def kept_out(participation):
    """(round, hospital, decision, reason) of every reply kept out, from the participation table."""
    rows = participation[participation.event.isin(["rejected", "failed", "excluded", "not selected"])]
    return {(int(r["round"]), r.hospital, r.event, r.reason) for _, r in rows.iterrows()}


def from_log(rounds):
    """The same, from the audit log's round entries."""
    names = {"rejected": "rejected", "dropped": "failed", "excluded": "excluded"}
    found = {(r["round"], h, names[key], reason) for r in rounds for key in names for h, reason in r[key].items()}
    return found | {(r["round"], h, "not selected", reason) for r in rounds
                    for h, reason in r["aggregation"]["not_selected"].items()}


@pytest.mark.parametrize("case", list(CASES))
def test_participation_audit_log_and_report_agree(fed, tmp_path, case):
    settings = {"adversaries": fs.adversaries.SignFlip(hospitals=[ATTACKER]), **CASES[case]}
    res = fs.Experiment(federation=fed, model="logreg", rounds=3, learning_rate=0.3, out=tmp_path, noise_seed=1,
                        **settings).run()
    rounds = [e for e in res.audit.query("kind == 'round'").data]
    assert [r["round"] for r in rounds] == list(range(1, len(rounds) + 1)) and rounds

    assert kept_out(res.participation) == from_log(rounds)
    report = round_statuses(Run.load(tmp_path).rounds)
    shown = {(int(r["round"]), r.hospital, r.status, r.reason) for _, r in report.iterrows()
             if r.status != "aggregated"}
    status = {"rejected": "rejected", "failed": "dropped", "excluded": "excluded", "not selected": "not selected"}
    assert shown == {(n, h, status[d], why) for n, h, d, why in from_log(rounds)}

    for r in rounds:  # each reply that reached the server: aggregated, or kept out by a recorded decision
        aggregation = r["aggregation"]
        aggregated, out = set(aggregation["aggregated"]), set(r["rejected"]) | set(aggregation["not_selected"])
        assert not aggregated & out
        assert "unexplained" not in aggregation, aggregation
        decided = aggregated | out | set(r["dropped"])
        assert set(r["responding"]) <= decided or any(
            e == "aborted" for e in res.participation.query(f"round == {r['round']}").event), r
    if "silent" in case:  # left out without reject(): recorded as such, never listed as aggregated
        assert res.participation.reason.str.contains("left out without a reason").any()


def test_the_participation_figure_gives_each_status_its_own_colour():
    codes = fs.plots.report.PARTICIPATION_CODES
    grid = pd.DataFrame([list(codes.values())], index=["H000"], columns=range(1, len(codes) + 1))
    fig = fs.plots.report.participation_grid(grid)
    cells = fig.axes[0].collections[0].get_facecolors()
    assert len({tuple(np.round(c, 4)) for c in cells}) == len(codes)  # one colour per status, none shared
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == list(codes)
