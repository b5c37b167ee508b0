"""The risk report refuses a tampered log, survives a log fedsim did not write, and escapes what users chose."""

import copy
import re
from html.parser import HTMLParser

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fedsim as fs
from fedsim.governance import AuditWriter, report, verify
from fedsim.governance.audit import digest

SCRIPT = "<script>alert(1)</script>"
LINK = "[click](javascript:alert(3))"
HEADING = "North\n## Privacy statement\n- forged item"
MARKERS = "**bold** `code` _em_ | pipe &amp; ~~x~~ $x$ www.evil.example"
HOSTILE = [SCRIPT, LINK, HEADING, MARKERS]
REPORT_HEADINGS = ["About this report", "Data", "Audit log", "Threat model", "Privacy statement",
                   "Participation and per-hospital performance", "Calibration", "Institution policies", "Model card",
                   "Caveats"]


def fedsim_log(folder, sites, label="run", key=None):
    """A log shaped like the one ``Governance`` writes (DP, a poisoning attack, a leakage attack, policies)."""
    log = AuditWriter(folder / "audit.jsonl", key)
    for kind, data in fedsim_entries(sites, label):
        log.append(kind, data)
    return folder


def fedsim_entries(sites, label="run") -> list[tuple[str, dict]]:
    """The entries of ``fedsim_log``: (kind, data)."""
    config = {"model": "logreg", "rounds": 2, "strategy": "krum", "local_epochs": 1, "batch_size": 32,
              "learning_rate": 0.05, "seed": 0, "federation": f"Federation({label!r})"}
    dpsgd = {"family": "privacy", "name": "dpsgd", "title": f"DP-SGD {sites[0]}", "role": "mitigation",
             "threats": ["update leakage", "membership inference"], "unit": "record", "spends_epsilon": True,
             "trust_model": f"local training at {sites[1]}", "settings": {"noise_multiplier": 1.0, "who": sites[2]}}
    inversion = {"family": "attack", "name": "gradient_inversion", "title": "gradient inversion", "role": "threat",
                 "threats": ["update leakage"], "label": "inversion", "settings": {"hospitals": [sites[1]]}}
    start = {
        "label": label, "config": config, "config_hash": digest(config), "versions": {"fedsim": "0.1.0", "flwr": "1"},
        "data_fingerprints": {s: {"n_train": 100, "n_test": 20, "sha256": "ab" * 32} for s in sites},
        "policies": [{"hospital": s, "max_epsilon": 50, "min_records": 0, "evaluate": True, "share_metrics": True}
                     for s in sites],
        "strategy": [{"class": "Krum", "num_malicious_nodes": 1, "min_train_nodes": 2}],
        "aggregation": {"name": "krum", "threats": ["poisoning"]},
        "client_training": {"dpsgd-clip": 1.0, "dpsgd-noise": 1.0},
        "in_play": {"components": [dpsgd, inversion],
                    "custom": [{"name": "FlipUpdate", "threat": "poisoning", "hospitals": [sites[-1]]}]},
        "signed": None,
    }
    rounds = [{"round": r, "sampled": sites, "responding": sites[:-1], "dropped": {sites[-1]: "no reply"},
               "rejected": {}, "excluded": {}, "update_norms": {s: 1.0 + i for i, s in enumerate(sites)},
               "aggregation": {"rule": "Krum", "selected": [sites[0]], "not_selected": sites[1:]}} for r in (1, 2)]
    policy = {"round": 1, "hospital": sites[0], "policy": "share_metrics", "action": "metrics suppressed",
              "detail": f"asked by {sites[0]}"}
    scopes = ["global", *sites]
    result = {
        "metrics": {"round": [2] * len(scopes), "scope": scopes, "metric": ["auroc"] * len(scopes),
                    "value": [0.7 + 0.01 * i for i in range(len(scopes))]},
        "participation": [],
        "tables": {"privacy": [{"hospital": s, "technique": "dpsgd", "unit": "record", "mechanism": "DP-SGD",
                                "noise_multiplier": 1.0, "sampling_rate": 0.2, "accountant": "rdp", "steps": 10,
                                "rounds": 2, "epsilon": 2.0 + i, "delta": 1e-5, "budget": 50.0}
                               for i, s in enumerate(sites)],
                   "attacks": [{"attack": "inversion", "hospital": sites[1], "round": 1, "metric": "psnr",
                                "value": 12.5, "details": sites[2]}],
                   "adversaries": [{"adversary": "gradient_inversion", "hospital": sites[1], "settings": "{}"}]},
        "model": {"name": "logreg", "class": "Sequential", "parameters": 22, "layers": [], "n_features": 21,
                  "features": sites, "target": sites[3], "weights_sha256": "cd" * 32},
    }
    return [("start", start), *[("round", r) for r in rounds], ("policy", policy), ("result", result),
            ("end", {"status": "completed", "rounds": 2})]


class Page(HTMLParser):
    """The tags, link targets and text of an HTML page."""

    def __init__(self):
        super().__init__()
        self.tags, self.hrefs, self.text = set(), [], []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.hrefs += [v for k, v in attrs if k in ("href", "src") and not v.startswith("data:image/png")]

    def handle_data(self, data):
        self.text.append(data)


def page(html: str) -> Page:
    parsed = Page()
    parsed.feed(html)
    return parsed


SAFE_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "ul", "li", "table", "thead", "tbody",
             "tr", "th", "td", "strong", "code", "em", "figure", "img", "figcaption", "div"}


def markdown_structure(text: str) -> dict:
    """What a CommonMark renderer makes of ``text``: headings, links, images and raw HTML."""
    markdown_it = pytest.importorskip("markdown_it")
    tokens = markdown_it.MarkdownIt("commonmark").enable("table").parse(text)
    inline = [t for tok in tokens if tok.children for t in tok.children]
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    return {"headings": headings, "links": [t.attrs.get("href") for t in inline if t.type == "link_open"],
            "images": [t.attrs.get("src") for t in inline if t.type == "image"],
            "html": [t.content for t in [*tokens, *inline] if t.type in ("html_block", "html_inline")]}


def check_safe(paths, hostile):
    """Neither page holds markup, a heading or a link that the report did not write itself."""
    md, html = paths["markdown"].read_text(), paths["html"].read_text()
    assert "<" not in md and "](javascript:" not in md and "javascript:" not in "".join(page(html).hrefs)
    assert [line for line in md.splitlines() if line.startswith("## Privacy statement")] == ["## Privacy statement"]
    found = markdown_structure(md)
    assert found["html"] == [] and found["links"] == []
    assert all(src.startswith("figures/") for src in found["images"])
    assert found["headings"][1:] == REPORT_HEADINGS
    parsed = page(html)
    assert parsed.tags <= SAFE_TAGS and "<script" not in html.lower()
    rendered = page(pytest.importorskip("markdown_it").MarkdownIt("commonmark").enable("table").render(md))
    for text in hostile:  # shown as written (line breaks as spaces), on the page as on the rendered Markdown
        for shown in (parsed.text, rendered.text):
            assert " ".join(text.split()) in " ".join(" ".join(t.split()) for t in shown)
    return md, html


def test_hostile_site_and_run_names_add_no_markup_heading_or_link(tmp_path):
    paths = report(fedsim_log(tmp_path, HOSTILE, label=f"run {SCRIPT} {LINK}\n## Privacy statement"))
    md, _ = check_safe(paths, HOSTILE)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md and "&#91;click&#93;(javascript:alert(3))" in md
    assert "| &lt;script&gt;alert(1)&lt;/script&gt; | DP-SGD | record | 2 | 1e-05 | 50 | 10 | 2 |" in md
    title = "# Risk report: run &lt;script&gt;alert(1)&lt;/script&gt; &#91;click&#93;(javascript:alert(3))"
    assert md.startswith(f"{title} ## Privacy statement\n")  # on one line: not a heading of its own
    # The report's own formatting still renders: bold and code, on both pages.
    assert "- **DP-SGD &lt;script&gt;alert(1)&lt;/script&gt;**: unit of privacy: one patient record" in md
    assert "final weights SHA-256 `cdcdcdcdcdcdcdcd`" in md
    html = paths["html"].read_text()
    assert "<strong>DP-SGD &lt;script&gt;alert(1)&lt;/script&gt;</strong>" in html
    assert "<code>cdcdcdcdcdcdcdcd</code>" in html
    # User text cannot smuggle bold or code into the page either.
    assert "**bold** `code` _em_ | pipe &amp;amp; ~~x~~ $x$ www.evil.example" in html


def test_a_real_run_with_hostile_hospital_names(small_fed, tmp_path):
    frame = pd.DataFrame(small_fed.x_train[:400], columns=[f"x{i}" for i in range(small_fed.x_train.shape[1])])
    frame["y"] = small_fed.y_train[:400].astype(int)
    frame["site"] = [HOSTILE[i % len(HOSTILE)] for i in range(len(frame))]
    fed = fs.Federation.from_dataframe(frame, target="y", site="site")
    res = fs.Experiment(federation=fed, model="logreg", rounds=1, name="hostile", out=tmp_path).run()
    md, _ = check_safe(report(res.audit_path.parent), HOSTILE)
    assert f"; {len(HOSTILE)} hospitals, " in md and "Audit log verification: **valid**" in md


def tampered(folder):
    text = (folder / "audit.jsonl").read_text().splitlines(keepends=True)
    text[1] = text[1].replace('"round": 1', '"round": 7')
    (folder / "audit.jsonl").write_text("".join(text))
    return folder


def test_a_tampered_log_is_refused_unless_asked_for_then_shown_under_a_banner(tmp_path):
    folder = tampered(fedsim_log(tmp_path, ["H0", "H1", "H2", "H3"]))
    message = (f"results: the audit log '{folder / 'audit.jsonl'}' is TAMPERED (1 problem, first: line 2: edited): "
               "refusing to report; pass allow_tampered=True (fedsim report --allow-tampered) to render it with a "
               "warning banner")
    with pytest.raises(ValueError) as error:
        report(folder)
    assert str(error.value) == message and not (folder / "report.md").exists()
    with pytest.raises(ValueError, match="^allow_tampered: must be True or False, got 1"):
        report(folder, allow_tampered=1)
    md = report(folder, allow_tampered=True)["markdown"].read_text().splitlines()
    assert md[2:5] == ["> **WARNING: the audit log of this run FAILED verification (1 problem): it is not the log "
                       "the run wrote, and nothing in this report can be trusted.**", ">",
                       "> - line 2: edited: entry 1 (round) does not match its hash"]
    status = next(line for line in md if line.startswith("Audit log verification"))
    assert status.startswith("Audit log verification: **TAMPERED**: 1 problem (6 entries, head `")
    assert status.endswith("unsigned: anyone who can write the file can rewrite its entries and recompute every "
                           "hash, so the chain shows only that the file is internally consistent).")


def test_a_tampered_baseline_is_refused_too_and_gets_its_own_banner(tmp_path):
    run = fedsim_log(tmp_path / "run", ["H0", "H1", "H2", "H3"])
    baseline = tampered(fedsim_log(tmp_path / "base", ["H0", "H1", "H2", "H3"]))
    with pytest.raises(ValueError, match=r"^baseline: the audit log .* is TAMPERED \(1 problem"):
        report(run, baseline=baseline)
    md = report(run, baseline=baseline, allow_tampered=True)["markdown"].read_text()
    assert "> **WARNING: the audit log of the baseline FAILED verification (1 problem)" in md
    assert "the audit log of this run FAILED" not in md and "Audit log verification: **valid**" in md


def test_a_signed_tampered_log_says_what_its_signatures_show(tmp_path):
    secret = b"0123456789abcdef-report"
    folder = tampered(fedsim_log(tmp_path, ["H0", "H1", "H2", "H3"], key=secret))
    md = report(folder, key=secret, allow_tampered=True)["markdown"].read_text()
    assert ("every signature verifies, but a signature only vouches for its entry's recorded hash: the problems "
            "were made after signing") in md
    assert "signatures verified)" not in md


@pytest.mark.parametrize("content, message", [
    (b"", "is TAMPERED (1 problem, first: line 1: empty log)"),
    (b"not json\n", "is TAMPERED (2 problems, first: line 1: empty log)"),
])
def test_an_empty_or_garbage_log_is_a_clear_error(tmp_path, content, message):
    (tmp_path / "audit.jsonl").write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(message)):
        report(tmp_path)
    with pytest.raises(ValueError, match="^results: .* has no start entry$"):
        report(tmp_path, allow_tampered=True)


# ---------------------------------------------------------------- logs fedsim did not write

def foreign_log(folder, entries) -> None:
    log = AuditWriter(folder / "audit.jsonl")
    for kind, data in entries:
        log.append(kind, data)


@pytest.mark.parametrize("entries", [
    [("start", {})],
    [("start", {}), ("end", {})],
    [("start", {"label": 5, "config": [], "versions": "x", "data_fingerprints": {"a": 1}, "policies": [1, {}],
                "strategy": [{}], "aggregation": [], "in_play": {"components": [{}, 3, {"family": "privacy"}]}}),
     ("round", {}), ("round", {"round": 1}), ("round", {"round": 2, "sampled": ["a", 3], "dropped": ["a"],
                                                        "update_norms": {"a": "inf", "b": "x"}}),
     ("result", {})],
    [("start", {"label": "x"}), ("result", {"metrics": {"round": [1, 2], "scope": ["global"], "metric": ["auroc"],
                                                        "value": [0.5]}, "tables": {"privacy": [{}, {"epsilon": "a"}],
                                                                                    "attacks": "x"}})],
    [("start", {"in_play": {"components": [{"family": "privacy", "name": "dp", "spends_epsilon": True}]}}),
     ("result", {"metrics": {"round": [1, "x"], "scope": ["global", "a"], "metric": ["auroc", "auroc"],
                             "value": ["nan", None]},
                 "tables": {"privacy": [{"technique": "dp", "epsilon": "inf", "steps": None}],
                            "attacks": [{"attack": "a", "round": "inf", "metric": "psnr"}]}})],
    [("policy", {"a": 1}), ("start", {"label": "late"}), ("custom", {"anything": [1, {"b": None}]})],
])
def test_a_foreign_log_renders_what_it_holds(tmp_path, entries):
    foreign_log(tmp_path, entries)
    assert verify(tmp_path / "audit.jsonl").ok
    text = report(tmp_path)["markdown"].read_text()
    assert "## Model card" in text and "not available" in text


def test_a_foreign_log_with_no_start_entry_is_a_clear_error(tmp_path):
    foreign_log(tmp_path, [("round", {"round": 1}), ("end", {})])
    with pytest.raises(ValueError, match="^results: .* has no start entry$"):
        report(tmp_path)


FIELDS = ["label", "config", "config_hash", "versions", "data_fingerprints", "policies", "strategy", "aggregation",
          "client_training", "in_play", "components", "custom", "round", "sampled", "dropped", "rejected", "excluded",
          "update_norms", "selected", "metrics", "tables", "privacy", "attacks", "adversaries", "model", "scope",
          "metric", "value", "hospital", "epsilon", "delta", "steps", "technique", "family", "name", "title", "role",
          "threats", "settings", "hospitals", "spends_epsilon", "unit", "max_epsilon", "class", "clipping_norm",
          "dpsgd-clip", "attack", "layers", "target", "auroc", "global", "poisoning", "threat", "label", "psnr"]
VALUES = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-2, 2) | st.sampled_from(FIELDS)
                      | st.sampled_from(["nan", "inf", "-inf", "", SCRIPT]),
                      lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELDS), inner,
                                                                                   max_size=5), max_leaves=25)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=8),
       others=st.lists(st.tuples(st.sampled_from(["round", "policy", "result", "exchange", "end"]),
                                 st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=6)), max_size=5))
def test_any_foreign_log_renders_or_is_a_clear_error(tmp_path_factory, start, others):
    folder = tmp_path_factory.mktemp("foreign")
    foreign_log(folder, [("start", start), *[(k, d) for k, d in others if k != "end"]])
    try:
        paths = report(folder)
    except ValueError as error:
        assert str(error).startswith(("results: ", "out: ")) and "\n" not in str(error)
    else:
        assert "## Model card" in paths["markdown"].read_text()


def _paths(value, path=()):
    """Every path to a value inside ``value``."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        yield (*path, k)
        yield from _paths(v, (*path, k))


@st.composite
def damaged(draw) -> list[tuple[str, dict]]:
    """A fedsim log with values anywhere in it removed or replaced by others."""
    entries = copy.deepcopy(fedsim_entries(["H0", "H1", "H2", "H3"]))
    for _ in range(draw(st.integers(1, 8))):
        _, data = entries[draw(st.integers(0, len(entries) - 1))]
        *parent, last = draw(st.sampled_from(list(_paths(data))))
        holder = data
        for step in parent:
            holder = holder[step]
        if draw(st.booleans()):
            del holder[last]
        else:
            holder[last] = draw(VALUES)
    return entries


@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(entries=damaged())
def test_a_damaged_fedsim_log_renders_what_it_holds(tmp_path_factory, entries):
    folder = tmp_path_factory.mktemp("damaged")
    foreign_log(folder, entries)
    paths = report(folder)
    assert "## Model card" in paths["markdown"].read_text()


def test_notes_and_problem_details_are_escaped_too(tmp_path):
    log = AuditWriter(tmp_path / "audit.jsonl")
    log.append("start", {"label": "x"})
    entry = log.append(SCRIPT, {"x": 1})
    lines = (tmp_path / "audit.jsonl").read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"x": 1', '"x": 2')
    (tmp_path / "audit.jsonl").write_text("".join(lines))
    assert entry["kind"] == SCRIPT
    assert f"line 2: edited: entry 1 ({SCRIPT}) does not match its hash" in verify(tmp_path / "audit.jsonl").summary()
    paths = report(tmp_path, allow_tampered=True)
    assert "<" not in paths["markdown"].read_text() and "<script" not in paths["html"].read_text()
    assert "entry 1 (&lt;script&gt;alert(1)&lt;/script&gt;) does not match its hash" in paths["html"].read_text()
