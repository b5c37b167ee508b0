"""Governance: the hash-chained audit log, institution policies, the risk report."""

import base64
import io
import json
import subprocess
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import ArrayRecord, MessageType

import fedsim as fs
from fedsim.cli import main
from fedsim.governance import AuditWriter, Policy, report, verify
from fedsim.governance.audit import digest
from fedsim.metrics import binary_metrics

ROOT = Path(__file__).resolve().parents[2]


class FlipUpdate:
    """A tiny model-poisoning ClientApp mod: the hospital sends -scale times its honest update."""

    threat = "poisoning"

    def __init__(self, fed, hospitals, scale=4.0):
        self.hospitals = list(hospitals)
        self.targets = {fed.hospitals.index(h) for h in hospitals}
        self.scale = scale

    def __call__(self, message, context, call_next):
        reply = call_next(message, context)
        if (int(context.node_config["partition-id"]) not in self.targets
                or message.metadata.message_type != MessageType.TRAIN or not reply.has_content()):
            return reply
        sent = message.content["arrays"].to_numpy_ndarrays()
        new = reply.content["arrays"].to_numpy_ndarrays()
        reply.content["arrays"] = ArrayRecord([s - self.scale * (n - s) for s, n in zip(sent, new)])
        return reply


# ---------------------------------------------------------------- the audit log on its own (no training)

def write_log(path, key=None, rounds=4) -> Path:
    log = AuditWriter(path, key)
    log.append("start", {"label": "t", "config": {"rounds": rounds}})
    for r in range(1, rounds + 1):
        log.append("round", {"round": r, "sampled": ["a", "b"], "update_norms": {"a": 1.0 * r, "b": 2.0}})
    log.append("end", {"status": "completed"})
    return Path(path)


def lines(path) -> list[str]:
    return Path(path).read_text().splitlines(keepends=True)


def rewrite(path, new_lines) -> None:
    Path(path).write_text("".join(new_lines))


def as_written(entry) -> str:
    """An entry's line exactly as the writer formats it (a forger who wants it to verify does the same)."""
    return json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n"


def problems(path, **kw) -> list[tuple]:
    return [(p["line"], p["problem"]) for p in verify(path, **kw).problems]


def test_an_untouched_log_verifies(tmp_path):
    path = write_log(tmp_path / "audit.jsonl")
    result = verify(path)
    assert result.ok and result.complete and result.status == "valid" and result.entries == 6
    assert result.head == json.loads(lines(path)[-1])["hash"]


def test_an_edited_entry_is_detected_and_located(tmp_path):
    path = write_log(tmp_path / "audit.jsonl")
    text = lines(path)
    text[2] = text[2].replace('"a": 2.0', '"a": 0.5')  # line 3: round 2's norm of hospital a
    rewrite(path, text)
    assert problems(path) == [(3, "edited")]
    assert "TAMPERED" in verify(path).summary() and "line 3: edited" in verify(path).summary()


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(tmp_path):
    path = write_log(tmp_path / "audit.jsonl")
    text = lines(path)
    entry = json.loads(text[2])
    entry["data"]["update_norms"]["a"] = 0.5
    entry["hash"] = digest({k: entry[k] for k in ("seq", "time", "kind", "data", "prev")})
    text[2] = as_written(entry)
    rewrite(path, text)
    assert problems(path) == [(4, "broken link")]


def test_a_removed_entry_is_detected_and_located(tmp_path):
    path = write_log(tmp_path / "audit.jsonl")
    text = lines(path)
    del text[2]  # entry 2
    rewrite(path, text)
    found = verify(path)
    assert not found.ok
    assert ("removed", 2) in [(p["problem"], p["seq"]) for p in found.problems]
    assert "entry 2 is missing (after line 2)" in found.summary()


def test_reordered_entries_are_detected_and_located(tmp_path):
    path = write_log(tmp_path / "audit.jsonl")
    text = lines(path)
    text[2], text[3] = text[3], text[2]  # entries 2 and 3 swapped
    rewrite(path, text)
    found = problems(path)
    assert (4, "reordered") in found
    assert not any(kind in ("edited", "removed") for _, kind in found)


def test_entries_appended_out_of_chain_are_detected(tmp_path):
    path = write_log(tmp_path / "audit.jsonl")
    forged = {"seq": 6, "time": "2026-01-01T00:00:00+00:00", "kind": "round", "data": {"round": 5}, "prev": "f" * 64}
    forged["hash"] = digest(forged)
    rewrite(path, lines(path) + [as_written(forged)])
    assert set(problems(path)) == {(7, "broken link"), (7, "appended after end")}

    # Even an entry chained correctly to the end is flagged: nothing may follow the closing entry.
    path = write_log(tmp_path / "again.jsonl")
    last = json.loads(lines(path)[-1])
    chained = {**forged, "prev": last["hash"]}
    chained["hash"] = digest({k: chained[k] for k in ("seq", "time", "kind", "data", "prev")})
    rewrite(path, lines(path) + [as_written(chained)])
    assert problems(path) == [(7, "appended after end")]


def test_a_cut_tail_shows_as_incomplete_and_fails_against_the_known_head(tmp_path):
    path = write_log(tmp_path / "audit.jsonl")
    head = verify(path).head
    rewrite(path, lines(path)[:-2])
    found = verify(path)
    assert found.ok and not found.complete and found.status == "valid but incomplete"
    assert any("no closing entry" in n for n in found.notes)
    assert not verify(path, expected_head=head).ok


def test_a_torn_last_line_leaves_a_valid_log_up_to_the_last_complete_entry(tmp_path):
    path = write_log(tmp_path / "audit.jsonl")
    text = lines(path)
    rewrite(path, text[:4] + [text[4][: len(text[4]) // 2]])  # killed while writing entry 4
    found = verify(path)
    assert found.ok and found.entries == 4 and not found.complete
    assert any("incomplete entry" in n for n in found.notes)


@pytest.mark.parametrize("kind", ["hmac", "ed25519"])
def test_signatures_catch_a_fully_rechained_forgery(tmp_path, kind):
    secret = Ed25519PrivateKey.generate() if kind == "ed25519" else b"0123456789abcdef-secret"
    public = secret.public_key() if kind == "ed25519" else secret
    path = write_log(tmp_path / "audit.jsonl", key=secret)
    assert verify(path, key=public).ok and verify(path, key=public).signed == "signatures verified"

    # The forger edits entry 2 and recomputes every hash after it: the chain alone looks fine...
    entries = [json.loads(t) for t in lines(path)]
    entries[2]["data"]["update_norms"]["a"] = 0.5
    prev = entries[1]["hash"]
    for entry in entries[2:]:
        entry["prev"] = prev
        entry["hash"] = prev = digest({k: entry[k] for k in ("seq", "time", "kind", "data", "prev")})
    rewrite(path, [as_written(e) for e in entries])
    assert verify(path).ok
    # ...but not its signatures: every rewritten entry is located.
    assert problems(path, key=public) == [(n, "bad signature") for n in range(3, 7)]
    other = Ed25519PrivateKey.generate().public_key() if kind == "ed25519" else b"another-secret-0123456789"
    assert not verify(write_log(tmp_path / "b.jsonl", key=secret), key=other).ok


def test_a_bad_key_or_a_reused_log_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="^audit_key: an HMAC secret needs at least 16 bytes"):
        AuditWriter(tmp_path / "a.jsonl", key=b"short")
    with pytest.raises(ValueError, match="^audit_key: expected bytes"):
        AuditWriter(tmp_path / "a.jsonl", key="a string")
    write_log(tmp_path / "b.jsonl")
    with pytest.raises(ValueError, match="^out: .* already holds an audit log"):
        AuditWriter(tmp_path / "b.jsonl")


# ---------------------------------------------------------------- a real experiment: DP + Krum + a poisoning attack

@pytest.fixture(scope="module")
def gov_fed():
    return fs.synthetic_federation("icu_mortality", n_hospitals=6, n_patients=2400, seed=2)


@pytest.fixture(scope="module")
def runs(gov_fed, tmp_path_factory):
    """The same DP + Krum experiment with and without one hospital sign-flipping its update."""
    folder = tmp_path_factory.mktemp("governance")
    hospitals = gov_fed.hospitals
    common = dict(federation=gov_fed, strategy="krum", strategy_options={"num_malicious_nodes": 1}, rounds=4,
                  learning_rate=0.2, privacy=fs.privacy.DPSGD(noise_multiplier=1.0, l2_norm_clip=1.0))
    policies = {
        "default": Policy(max_epsilon=100.0),
        hospitals[0]: Policy(max_epsilon=4.5),              # spent after two rounds (epsilon 3.4, 4.2, 4.8)
        hospitals[1]: Policy(evaluate=False),               # its test split is never used
        hospitals[2]: Policy(share_metrics=False),          # evaluated, not shown
        hospitals[3]: Policy(min_records=10_000),           # too small to release
    }
    attacked = fs.Experiment(**common, policies=policies, client_mods=[FlipUpdate(gov_fed, [hospitals[5]])],
                             out=folder / "attacked", name="attacked").run()
    clean = fs.Experiment(**common, policies=policies, out=folder / "clean", name="clean").run()
    return attacked, clean


def round_entries(res) -> list[dict]:
    return [e["data"] for e in fs.governance.read(res.audit_path) if e["kind"] == "round"]


def test_every_run_writes_a_verified_audit_log_with_what_happened(runs, gov_fed):
    attacked, _ = runs
    assert attacked.audit_path.name == "audit.jsonl" and verify(attacked.audit_path).status == "valid"
    entries = fs.governance.read(attacked.audit_path)
    assert [e["kind"] for e in entries][:1] == ["start"] and [e["kind"] for e in entries][-2:] == ["result", "end"]
    start = entries[0]["data"]
    assert start["config_hash"] == digest(start["config"]) and start["config"]["strategy"] == "krum"
    assert {"flwr", "tensorflow", "python"} <= set(start["versions"])
    assert set(start["data_fingerprints"]) == set(gov_fed.hospitals)
    assert all(len(p["sha256"]) == 64 and p["n_train"] > 0 for p in start["data_fingerprints"].values())
    attack = start["in_play"]["custom"][0]  # a ClientApp mod of the user's, with a threat attribute
    assert attack["threat"] == "poisoning" and attack["hospitals"] == [gov_fed.hospitals[5]]
    assert [c["name"] for c in start["in_play"]["components"]] == ["dpsgd", "update_validator"]

    rounds = round_entries(attacked)
    assert [r["round"] for r in rounds] == [1, 2, 3, 4]
    first = rounds[0]
    assert first["sampled"] == sorted(gov_fed.hospitals) and first["responding"] == first["sampled"]
    assert first["dropped"] == {} and first["rejected"] == {}
    assert first["clipping_and_noise"]["client_training"] == {"dpsgd-clip": 1.0, "dpsgd-noise": 1.0,
                                                              "dpsgd-sampling": "poisson"}
    # Steps for every hospital that trained; epsilon (an accountant call) for those under a cap only.
    spent = first["privacy_spent"]["DP-SGD"]
    assert set(spent) == set(first["responding"]) and all(v["steps"] > 0 for v in spent.values())
    h = gov_fed.hospitals
    assert {x for x, v in spent.items() if "epsilon" in v} == {h[0], h[4], h[5]}  # own policies replace the default
    # The attacker's flipped, amplified update stands out, and Krum never selects it.
    norms = first["update_norms"]
    attacker = gov_fed.hospitals[5]
    assert norms[attacker] > 2 * max(v for h, v in norms.items() if h != attacker)
    assert all(r["aggregation"]["rule"] == "Krum" and len(r["aggregation"]["aggregated"]) == 1 for r in rounds)
    assert not any(attacker in r["aggregation"]["aggregated"] for r in rounds)
    assert all(attacker in r["aggregation"]["not_selected"] for r in rounds)  # as Krum itself reported it
    assert attacked.audit.kind.iloc[0] == "start"


def test_policies_are_enforced_and_logged(runs, gov_fed):
    attacked, _ = runs
    h = gov_fed.hospitals
    # max_epsilon: excluded once one more round would pass the cap, and its epsilon stays below it.
    excluded = attacked.participation[attacked.participation.event == "excluded"]
    assert set(excluded.hospital) == {h[0]} and list(excluded["round"]) == [3, 4]
    assert 4.2 < attacked.privacy.set_index("hospital").epsilon[h[0]] <= 4.5
    assert any(h[0] in r["excluded"] for r in round_entries(attacked))
    # evaluate / share_metrics / min_records: no metric about these hospitals is released.
    assert set(attacked.metrics.scope) == {"global", h[0], h[4], h[5]}
    table = attacked.tables["policy"]
    assert {(r.hospital, r.policy) for r in table.itertuples()} == {
        (h[0], "max_epsilon"), (h[1], "evaluate"), (h[2], "share_metrics"), (h[3], "min_records")}
    assert set(table[table.hospital == h[1]].action) == {"test split left out of evaluation", "metrics suppressed"}
    logged = [e["data"] for e in fs.governance.read(attacked.audit_path) if e["kind"] == "policy"]
    assert len(logged) == len(table)
    assert {(e["hospital"], e["policy"], e["action"]) for e in logged} == {
        (r.hospital, r.policy, r.action) for r in table.itertuples()}


def test_a_hospital_that_does_not_evaluate_is_left_out_of_the_global_test_set(gov_fed, tmp_path):
    hospital = gov_fed.hospitals[1]
    res = fs.Experiment(federation=gov_fed, rounds=1, model="logreg", out=tmp_path,
                        policies={hospital: Policy(evaluate=False)}).run()
    i = gov_fed.hospitals.index(hospital)
    keep = np.ones(len(gov_fed.y_test), bool)
    keep[gov_fed.test_offsets[i]:gov_fed.test_offsets[i + 1]] = False
    p = res.model(gov_fed.x_test[keep]).numpy()[:, 0]
    expected = binary_metrics(gov_fed.y_test[keep], 1 / (1 + np.exp(-p)))["brier"]
    assert res.final("brier") == pytest.approx(expected, abs=1e-5)


def test_max_epsilon_without_dp_keeps_the_hospital_out(gov_fed, tmp_path):
    hospital = gov_fed.hospitals[0]
    res = fs.Experiment(federation=gov_fed, rounds=2, model="logreg", out=tmp_path,
                        policies={hospital: Policy(max_epsilon=10)}).run()
    excluded = res.participation[res.participation.event == "excluded"]
    assert list(excluded["round"]) == [1, 2] and set(excluded.hospital) == {hospital}
    assert "no DP" in excluded.reason.iloc[0]
    assert all(hospital not in r["sampled"] for r in round_entries(res))


@pytest.mark.parametrize("policies, message", [
    ({"nowhere": Policy()}, "policies: unknown hospital 'nowhere'"),
    ({"default": {"max_eps": 1}}, "policies['default']: unknown keys ['max_eps']"),
    ({"default": {"max_epsilon": -1}}, "max_epsilon: must be a finite number > 0"),
    ({"default": {"min_records": 2.5}}, "min_records: must be an integer >= 0"),
    ([Policy()], "policies: expected a mapping"),
])
def test_bad_policies_are_clear_errors(small_fed, policies, message):
    with pytest.raises(ValueError, match=f"^{message.replace('[', '.').replace(']', '.')}"):
        fs.Experiment(federation=small_fed, policies=policies)


def test_a_run_that_raises_closes_its_log_validly(small_fed, tmp_path):
    class Boom(fs.RoundObserver):
        def on_exchange(self, exchange):
            if exchange.server_round == 2:
                raise RuntimeError("observer failed")

    with pytest.raises(RuntimeError, match="observer failed"):
        fs.Experiment(federation=small_fed, rounds=3, model="logreg", observers=[Boom()], out=tmp_path).run()
    kinds = [e["kind"] for e in fs.governance.read(tmp_path / "audit.jsonl")]
    assert kinds == ["start", "round", "aborted", "end"] and verify(tmp_path / "audit.jsonl").ok


def test_a_run_killed_mid_round_leaves_a_valid_log(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal
        import fedsim as fs

        class Kill(fs.RoundObserver):
            def on_exchange(self, exchange):
                if exchange.server_round == 2:
                    os.kill(os.getpid(), signal.SIGKILL)

        fed = fs.synthetic_federation("icu_mortality", n_hospitals=3, n_patients=600, seed=0)
        fs.Experiment(federation=fed, rounds=3, model="logreg", observers=[Kill()], out={str(tmp_path)!r}).run()
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, timeout=300)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    found = verify(tmp_path / "audit.jsonl")
    assert found.ok and not found.complete and found.entries == 2  # start + round 1


def test_a_rerun_into_the_same_folder_keeps_the_old_log(small_fed, tmp_path):
    exp = fs.Experiment(federation=small_fed, rounds=1, model="logreg", out=tmp_path)
    first = exp.run().audit_path.read_text()
    exp.run()
    older = list(tmp_path.glob("audit-*.jsonl"))
    assert len(older) == 1 and older[0].read_text() == first and verify(tmp_path / "audit.jsonl").ok


def test_runs_without_out_do_not_write_into_the_working_directory(small_fed, tmp_path, monkeypatch):
    monkeypatch.setenv("FEDSIM_RESULTS", str(tmp_path / "all"))
    res = fs.Experiment(federation=small_fed, rounds=1, model="logreg", name="a b/c").run()
    assert res.audit_path.parent.parent == tmp_path / "all" and res.audit_path.parent.name.startswith("a-b-c-")
    assert verify(res.audit_path).ok


# ---------------------------------------------------------------- the risk report

class Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def test_the_report_has_epsilons_the_attack_effect_and_the_log_status(runs, tmp_path):
    attacked, clean = runs
    paths = report(attacked.audit_path.parent, baseline=clean.audit_path.parent, out=tmp_path / "report")
    text = paths["markdown"].read_text()
    assert "Audit log verification: **valid**" in text
    for eps in attacked.privacy.epsilon:
        assert f"{eps:.3g}" in text
    effect = f"global AUROC {attacked.final('auroc'):.3f} with the attack vs {clean.final('auroc'):.3f} without"
    assert effect in text
    assert "Krum selected an attacker's update in 0 of 4 rounds" in text
    for heading in ("Threat model", "Privacy statement", "Participation and per-hospital performance",
                    "Institution policies", "Model card"):
        assert f"## {heading}" in text
    for hazard in ("unit of privacy", "trust model", "accountant", "clipping", "delta"):
        assert hazard in text
    assert "| confidentiality | membership inference |" in text and "not measured" in text
    assert "metrics suppressed" in text

    # The HTML page is self-contained: every figure is an embedded PNG that decodes.
    parser = Images()
    parser.feed(paths["html"].read_text())
    assert len(parser.sources) >= 5 and all(s.startswith("data:image/png;base64,") for s in parser.sources)
    for source in parser.sources:
        image = matplotlib.image.imread(io.BytesIO(base64.b64decode(source.split(",", 1)[1])), format="png")
        assert image.shape[0] > 100 and image.shape[1] > 100
    assert "Audit log verification: <strong>valid</strong>" in paths["html"].read_text()
    assert (tmp_path / "report" / "figures" / "attack_effect.png").exists()


def test_the_report_shows_a_tampered_log(runs, tmp_path):
    attacked, _ = runs
    copy = tmp_path / "copy"
    copy.mkdir()
    text = lines(attacked.audit_path)
    i = next(i for i, t in enumerate(text) if '"kind": "round"' in t)
    text[i] = text[i].replace('"round": 1', '"round": 7')
    rewrite(copy / "audit.jsonl", text)
    with pytest.raises(ValueError, match=r"^results: the audit log .* is TAMPERED \(1 problem, first: line \d+: "
                                         r"edited\): refusing to report; pass allow_tampered=True"):
        report(copy)
    paths = report(copy, allow_tampered=True)
    markdown, page = paths["markdown"].read_text(), paths["html"].read_text()
    banner = "> **WARNING: the audit log of this run FAILED verification (1 problem)"
    assert markdown.split("\n")[2].startswith(banner)  # right under the title
    assert f"> - line {i + 1}: edited: entry {i} (round) does not match its hash" in markdown
    assert "Audit log verification: **TAMPERED**: 1 problem" in markdown
    assert '<div class="warning" role="alert"><p><strong>WARNING: the audit log of this run FAILED' in page


# ---------------------------------------------------------------- the command line

def test_cli_run_audit_verify_and_report(tmp_path, capsys):
    config = {"federation": {"scenario": "icu_mortality", "n_hospitals": 3, "n_patients": 600, "seed": 0},
              "rounds": 2, "model": "logreg", "privacy": [{"technique": "dpsgd", "noise_multiplier": 1.0}],
              "policies": {"default": {"max_epsilon": 50}, "H001": {"share_metrics": False}}}
    (tmp_path / "c.yaml").write_text(json.dumps(config))
    key = Ed25519PrivateKey.generate()
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    (tmp_path / "pub.pem").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "c.yaml"), "--out", str(out), "--audit-key", str(tmp_path / "key.pem")]) == 0
    assert (out / "audit.jsonl").exists() and (out / "metrics.csv").exists()
    capsys.readouterr()
    assert main(["audit", "verify", str(out / "audit.jsonl"), "--key", str(tmp_path / "pub.pem")]) == 0
    assert "valid" in capsys.readouterr().out

    text = lines(out / "audit.jsonl")
    text[1] = text[1].replace('"round": 1', '"round": 9')
    rewrite(out / "audit.jsonl", text)
    assert main(["audit", "verify", str(out), "--key", str(tmp_path / "pub.pem")]) == 1
    printed = capsys.readouterr().out
    assert "TAMPERED" in printed and "line 2: edited: entry 1 (round) does not match its hash" in printed

    assert main(["report", str(out)]) == 2  # a tampered log is refused...
    assert "is TAMPERED (1 problem, first: line 2: edited): refusing to report" in capsys.readouterr().err
    assert not (out / "report.md").exists()
    assert main(["report", str(out), "--allow-tampered"]) == 0  # ...unless asked for, under a banner
    assert (out / "report.html").exists() and "FAILED verification" in (out / "report.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["audit", "verify", "nowhere.jsonl"], "log: cannot read 'nowhere.jsonl'"),
    (["report", "nowhere"], "results: no audit log"),
    (["audit", "verify", "nowhere.jsonl", "--key", "missing.key"], "key: cannot read 'missing.key'"),
])
def test_cli_errors_are_one_line_and_exit_code_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
