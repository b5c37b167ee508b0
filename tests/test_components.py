"""Components describe themselves: the registry, settings round trips, and a new technique in one file."""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pytest
import yaml

import fedsim as fs
from fedsim.cli import main
from fedsim.components import FAMILIES, REGISTRY, THREATS, UNITS, Component, from_settings
from fedsim.defenses.norm_bound import NormBoundStrategy
from fedsim.engine.messages import replace_weights, weights_of
from fedsim.validation import Real, param

# A component of each registered class, with settings other than the defaults where that is cheap.
EXAMPLES = {
    "dpsgd": fs.privacy.DPSGD(noise_multiplier=0.7, delta=1e-6),
    "central_dp": fs.privacy.CentralDP(adaptive=True, side="client"),
    "local_dp": fs.privacy.LocalDP(epsilon=5.0),
    "secagg": fs.privacy.SecAgg(num_shares=0.5, reconstruction_threshold=0.6),
    "sparsify": fs.privacy.Sparsify(keep=0.05),
    "sign_flip": fs.adversaries.SignFlip(hospitals=["H001"], scale=2.0),
    "label_flip": fs.adversaries.LabelFlip(hospitals=0.3),
    "gaussian_noise": fs.adversaries.GaussianNoise(std=0.5),
    "free_rider": fs.adversaries.FreeRider(disguise_std=0.01),
    "inflated_claim": fs.adversaries.InflatedClaim(factor=3.0),
    "alie": fs.adversaries.ALIE(z=1.5, omniscient=True),
    "ipm": fs.adversaries.IPM(epsilon=0.2),
    "model_replacement": fs.adversaries.ModelReplacement(trigger={"age": 3.0}, boost=5.0),
    "update_validator": fs.defenses.UpdateValidator(max_norm=50.0),
    "norm_bound": fs.defenses.NormBound(max_norm=2.0),
    "trust_score": fs.defenses.TrustScore(root_size=50),
    "wrap": fs.defenses.Wrap(NormBoundStrategy, label="norm bound by hand"),
    "dropout": fs.availability.Dropout(rate=0.3, hospitals=["H000", "H002"]),
    "crash": fs.availability.Crash(rounds=[2, 3]),
    "stragglers": fs.availability.Stragglers(deadline_s=5.0, profiles={"H000": {"mbit_per_s": 1.0}}),
    "min_participation": fs.availability.MinParticipation(min_hospitals=2),
    "gradient_inversion": fs.attacks.GradientInversion(hospital="H001", steps=20, target="aggregate"),
    "membership_inference": fs.attacks.MembershipInference(hospital=1, n_shadows=4),
    "canaries": fs.audit.Canaries(n=64, view="black-box", level="hospital", method="one-run"),
}
BUILT_IN = {(family, name) for family in FAMILIES for name, cls in REGISTRY[family].items()
            if cls.__module__.startswith("fedsim.")}


def test_every_registered_component_describes_itself():
    assert {name for _, name in BUILT_IN} == set(EXAMPLES)
    for family, name in BUILT_IN:
        cls = REGISTRY[family][name]
        assert cls.family == family and cls.name == name and cls.__doc__, cls
        facts = (EXAMPLES.get(name) or cls()).describe()
        assert facts["role"] in ("threat", "mitigation", "audit") and set(facts["threats"]) <= set(THREATS)
        if family == "privacy":
            assert facts["trust_model"], name
            assert facts["unit"] is None or facts["unit"] in UNITS
            assert facts["spends_epsilon"] == (facts["unit"] is not None), name


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_settings_round_trip_to_an_equal_component(name):
    component = EXAMPLES[name]
    settings = component.settings()
    assert from_settings({"name": name, **settings}) == component
    through_yaml = yaml.safe_load(yaml.safe_dump({"name": name, **settings}))
    assert from_settings(through_yaml, component.family) == component


def test_bad_specs_name_the_field_and_list_the_allowed():
    with pytest.raises(ValueError, match="^defenses: unknown name 'firewall'; allowed: norm_bound, trust_score"):
        fs.components.as_components("defenses", [{"name": "firewall"}], "defense")
    with pytest.raises(ValueError, match="^adversaries: sign_flip: unknown 'strength'; allowed: hospitals, scale"):
        fs.components.as_components("adversaries", [{"name": "sign_flip", "strength": 2}], "adversary")
    with pytest.raises(ValueError, match="^adversaries: sign_flip: scale: must be a finite number > 0, got -1"):
        fs.components.as_components("adversaries", [{"name": "sign_flip", "scale": -1}], "adversary")
    with pytest.raises(ValueError, match="^privacy: give 'name:' or 'technique:', not both"):
        from_settings({"name": "dpsgd", "technique": "dpsgd"}, "privacy")


# --- a new technique, in this file only ----------------------------------------------------------

@dataclass(frozen=True)
class ToyNoise(Component):
    """Each hospital adds Gaussian noise of standard deviation ``std`` to every weight it sends."""

    family = "privacy"
    name = "toy_noise"
    title = "toy noise"
    threats = ("update leakage",)
    trust_model = "toy: each hospital blurs its own update, no formal guarantee"

    std: float = param(0.001, Real(min=0))

    def install(self, plan):
        def blur(message, context, call_next):
            reply = call_next(message, context)
            if message.metadata.message_type == "train" and reply.has_content():
                rng = np.random.default_rng(int(context.node_config["partition-id"]))
                replace_weights(reply.content, [w + rng.normal(0, self.std, w.shape).astype(w.dtype)
                                                for w in weights_of(reply.content)])
            return reply

        plan.add_mod("privacy", blur)


TINY = {"federation": {"scenario": "icu_mortality", "n_hospitals": 4, "n_patients": 800, "seed": 0},
        "model": "logreg", "rounds": 2, "learning_rate": 0.1}


def test_a_new_technique_in_one_file_reaches_the_cli_the_audit_log_and_the_report(tmp_path, capsys):
    config = tmp_path / "toy.yaml"
    config.write_text(yaml.safe_dump({**TINY, "privacy": [{"name": "toy_noise", "std": 0.002}]}))
    assert main(["run", str(config), "--out", str(tmp_path / "run")]) == 0
    start = fs.governance.read(tmp_path / "run" / "audit.jsonl")[0]["data"]
    toy = next(c for c in start["in_play"]["components"] if c["name"] == "toy_noise")
    assert toy["settings"] == {"std": 0.002} and toy["trust_model"] == ToyNoise.trust_model
    assert main(["report", str(tmp_path / "run")]) == 0
    text = (tmp_path / "run" / "report.md").read_text()
    leakage = next(line for line in text.splitlines() if "| update leakage |" in line)
    assert "privacy: toy noise" in leakage
    assert f"**toy noise** (no epsilon of its own): {ToyNoise.trust_model}" in text


# --- the CLI's YAML for every family --------------------------------------------------------------

def test_fedsim_run_builds_every_family_from_yaml(tmp_path, capsys):
    config = {**TINY, "rounds": 3,
              "privacy": [{"name": "dpsgd", "noise_multiplier": 1.0}],
              "adversaries": [{"name": "sign_flip", "hospitals": 0.25}],
              "defenses": [{"name": "norm_bound"}],
              "availability": [{"name": "dropout", "rate": 0.1}],
              "observers": [{"name": "gradient_inversion", "hospital": 0, "round": 1, "steps": 20}]}
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    for table in ("metrics", "privacy", "participation", "adversaries", "attacks"):
        assert (tmp_path / "out" / f"{table}.csv").exists(), table
    entries = fs.governance.read(tmp_path / "out" / "audit.jsonl")
    described = {c["name"]: c for c in entries[0]["data"]["in_play"]["components"]}
    assert set(described) == {"dpsgd", "update_validator", "norm_bound", "sign_flip", "dropout",
                              "gradient_inversion"}
    assert described["sign_flip"]["settings"] == {"hospitals": 0.25, "scale": 4.0}
    assert described["gradient_inversion"]["settings"]["steps"] == 20
    assert fs.governance.verify(tmp_path / "out" / "audit.jsonl").status == "valid"


# --- the report's privacy statement comes from each technique's own facts -------------------------

TECHNIQUES = [fs.privacy.DPSGD(), fs.privacy.CentralDP(), fs.privacy.CentralDP(side="client"),
              fs.privacy.LocalDP(epsilon=5.0), fs.privacy.SecAgg(), fs.privacy.Sparsify()]


@pytest.mark.parametrize("technique", TECHNIQUES, ids=lambda t: f"{t.name}-{getattr(t, 'side', '')}")
def test_the_report_states_each_techniques_own_trust_model_and_unit(technique, tmp_path):
    fed = fs.synthetic_federation("icu_mortality", n_hospitals=4, n_patients=800, seed=0)
    res = fs.Experiment(federation=fed, model="logreg", rounds=1, privacy=technique, out=tmp_path).run()
    text = fs.governance.report(res.audit_path.parent)["markdown"].read_text()
    assert technique.trust_model in text
    if technique.unit is not None:
        assert f"unit of privacy: {UNITS[technique.unit]}" in text
    for other in {t.trust_model for t in TECHNIQUES} - {technique.trust_model}:
        assert other not in text


def test_the_cohort_is_the_sampled_one_whatever_wraps_the_strategy():
    """CentralDP + fraction_train=0.5 + ALIE: ALIE's z and the DP noise are sized for the 5 hospitals sampled."""
    fed = fs.synthetic_federation("icu_mortality", n_hospitals=10, n_patients=2000, seed=0)
    alie = fs.adversaries.ALIE(hospitals=0.2)
    exp = fs.Experiment(federation=fed, model="logreg", rounds=2, fraction_train=0.5,
                        privacy=fs.privacy.CentralDP(noise_multiplier=0.5), adversaries=alie)
    plan = exp.build_plan()
    plan.seal()
    assert plan.sampled_per_round == 5
    (mod,) = plan.mods_at("adversary")
    assert mod.sampled == 5 and math.isclose(alie.z_for(mod.sampled, 2), alie.z_for(5, 2))
    assert plan.strategy.num_sampled_clients == 5
    res = exp.run()
    assert (res.participation.event != "failed").all() and res.metrics["round"].max() == 2


def test_components_are_plain_frozen_dataclasses_with_checked_fields():
    for component in EXAMPLES.values():
        assert dataclasses.is_dataclass(component)
        with pytest.raises(dataclasses.FrozenInstanceError):
            component.__setattr__(dataclasses.fields(component)[0].name, None)
