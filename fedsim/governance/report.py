"""The risk report of a results folder: Markdown plus one self-contained HTML page.

``report(results_dir)`` reads the folder's verified audit log (everything in
the report comes from it) and writes ``report.md`` (figures as PNG files in
``figures/``) and ``report.html`` (the same figures embedded as base64 PNG):

1. the audit log's verification status;
2. a threat model: each threat -> the mitigations enabled in this run -> the
   residual risk measured by the attacks actually run, or "not measured";
3. a privacy statement answering the hazards NIST SP 800-226 lists: unit of
   privacy, epsilon and delta per hospital, trust model, accountant, clipping;
4. participation and per-hospital performance (fairness);
5. the institution policies and their enforcements;
6. a model card for the final model.

``baseline`` names the results folder of the same experiment without its
attacks: the attack's measured effect is the change in final AUROC.
"""

import base64
import html
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from fedsim.governance.audit import AuditKey, Verification, read, verify

THREATS = [
    ("confidentiality", "update leakage", ("update leakage", "gradient inversion", "reconstruction")),
    ("confidentiality", "membership inference", ("membership inference", "membership")),
    ("integrity", "poisoning", ("poisoning", "model poisoning", "data poisoning", "sign flip", "label flip")),
    ("integrity", "backdoors", ("backdoor",)),
    ("integrity", "free-riding", ("free-riding", "free riding", "freeriding")),
    ("availability", "dropout", ("dropout", "drop out")),
    ("availability", "stragglers", ("straggler", "stragglers", "delay")),
]
ROBUST = {"Krum", "MultiKrum", "Bulyan", "FedMedian", "FedTrimmedAvg"}


# ---------------------------------------------------------------- document blocks, rendered twice

@dataclass
class Doc:
    """A report as blocks, rendered to Markdown and to HTML."""

    title: str
    blocks: list[tuple] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)

    def h(self, text: str, level: int = 2):
        self.blocks.append(("h", level, text))

    def p(self, text: str):
        self.blocks.append(("p", text))

    def items(self, lines: list[str]):
        self.blocks.append(("ul", lines))

    def table(self, frame: pd.DataFrame, empty: str = "none"):
        self.blocks.append(("table", frame, empty))

    def figure(self, name: str, fig, caption: str):
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        self.figures[name] = buffer.getvalue()
        self.blocks.append(("fig", name, caption))

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out += ["#" * block[1] + " " + block[2], ""]
            elif kind == "p":
                out += [block[1], ""]
            elif kind == "ul":
                out += [f"- {line}" for line in block[1]] + [""]
            elif kind == "table":
                frame = block[1]
                if frame.empty:
                    out += [f"*{block[2]}*", ""]
                    continue
                cells = frame.astype(object).map(_cell)
                out.append("| " + " | ".join(map(str, frame.columns)) + " |")
                out.append("| " + " | ".join("---" for _ in frame.columns) + " |")
                out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |"
                        for row in cells.itertuples(index=False)]
                out.append("")
            elif kind == "fig":
                out += [f"![{block[2]}](figures/{block[1]}.png)", "", f"*{block[2]}*", ""]
        return "\n".join(out)

    def html(self) -> str:
        e = html.escape
        body = [f"<h1>{e(self.title)}</h1>"]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                body.append(f"<h{block[1]}>{e(block[2])}</h{block[1]}>")
            elif kind == "p":
                body.append(f"<p>{_inline(block[1])}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in block[1]) + "</ul>")
            elif kind == "table":
                frame = block[1]
                if frame.empty:
                    body.append(f"<p><em>{e(block[2])}</em></p>")
                    continue
                head = "".join(f"<th>{e(str(c))}</th>" for c in frame.columns)
                rows = "".join("<tr>" + "".join(f"<td>{_inline(str(_cell(v)))}</td>" for v in row) + "</tr>"
                               for row in frame.astype(object).itertuples(index=False))
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif kind == "fig":
                data = base64.b64encode(self.figures[block[1]]).decode()
                body.append(f'<figure><img alt="{e(block[2])}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{e(block[2])}</figcaption></figure>")
        style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
                 "color:#222}table{border-collapse:collapse;margin:1em 0;font-size:.9em}"
                 "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}"
                 "th{background:#f3f3f3}img{max-width:100%}figcaption{font-style:italic;color:#555}"
                 "code{background:#f3f3f3;padding:0 .2em}")
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(self.title)}</title>'
                f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _cell(value):
    if isinstance(value, float):
        if math.isinf(value):
            return "∞"
        return "" if math.isnan(value) else f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return value


def _inline(text: str) -> str:
    """HTML for a line of Markdown-ish text: escapes, then **bold** and `code`."""
    out = html.escape(text)
    for marker, tag in (("**", "strong"), ("`", "code")):
        parts = out.split(marker)
        if len(parts) > 2 and len(parts) % 2 == 1:
            out = "".join(f"<{tag}>{p}</{tag}>" if i % 2 else p for i, p in enumerate(parts))
    return out


# ---------------------------------------------------------------- reading a results folder

@dataclass
class Run:
    """What a results folder's audit log says about one run."""

    folder: Path
    verification: Verification
    start: dict
    rounds: list[dict]
    policy: list[dict]
    result: dict | None
    end: dict | None

    @classmethod
    def load(cls, folder: str | os.PathLike, key: AuditKey | None = None) -> "Run":
        folder = Path(folder)
        log = folder / "audit.jsonl" if folder.is_dir() else folder
        if not log.exists():
            raise ValueError(f"results: no audit log at {str(log)!r} (a results folder holds audit.jsonl)")
        verification = verify(log, key=key)
        entries = read(log)
        first = lambda kind: next((e["data"] for e in entries if e.get("kind") == kind), None)  # noqa: E731
        if first("start") is None:
            raise ValueError(f"results: {str(log)!r} has no start entry")
        return cls(log.parent, verification, first("start"),
                   [e["data"] for e in entries if e.get("kind") == "round"],
                   [e["data"] for e in entries if e.get("kind") == "policy"], first("result"), first("end"))

    @property
    def metrics(self) -> pd.DataFrame:
        if not self.result:
            return pd.DataFrame(columns=["round", "scope", "metric", "value"])
        return pd.DataFrame(self.result["metrics"])

    def table(self, name: str) -> pd.DataFrame:
        rows = (self.result or {}).get("tables", {}).get(name, [])
        return pd.DataFrame(rows)

    @property
    def participation(self) -> pd.DataFrame:
        return pd.DataFrame((self.result or {}).get("participation", []),
                            columns=["round", "hospital", "event", "reason"])

    def final(self, metric: str = "auroc", scope: str = "global") -> float:
        m = self.metrics
        rows = m[(m.metric == metric) & (m.scope == scope)] if not m.empty else m
        if rows.empty:
            return math.nan
        return float(pd.to_numeric(rows.loc[rows["round"].idxmax(), "value"], errors="coerce"))

    @property
    def attacks(self) -> list[dict]:
        """Attacks and availability models run, with their hospitals (from the attacks table if drawn)."""
        in_play = self.start.get("in_play", {})
        table = self.table("attacks")
        rows = []
        for row in [*in_play.get("attacks", []), *in_play.get("availability", [])]:
            row = dict(row)
            if "hospitals" not in row and not table.empty and {"attack", "hospital"} <= set(table):
                row["hospitals"] = sorted(table[table.attack == row["name"]].hospital.astype(str))
            rows.append(row)
        return rows

    @property
    def rule(self) -> str:
        chain = self.start.get("strategy", [])
        return chain[-1]["class"] if chain else "?"

    def settings(self, cls_prefix: str) -> list[dict]:
        return [s for s in self.start.get("strategy", []) if s["class"].startswith(cls_prefix)]


def _threat_rows(run: Run, baseline: Run | None) -> pd.DataFrame:
    privacy = run.table("privacy")
    components = " ".join(run.start.get("config", {}).get("components", []))
    in_play = run.start.get("in_play", {})
    defenses = [d["name"] for d in in_play.get("defenses", [])]
    dp = sorted(set(privacy.mechanism)) if not privacy.empty else []
    secagg = "SecAgg" in components
    robust = run.rule in ROBUST
    clip = run.start.get("client_training", {}).get("dpsgd-clip")
    eps = (f"epsilon {privacy.epsilon.astype(float).min():.2g}-{privacy.epsilon.astype(float).max():.2g}"
           if not privacy.empty else "")
    mitigations = {
        "update leakage": (["SecAgg+ (server sees only masked updates)"] if secagg else [])
        + ([f"DP: {', '.join(dp)} ({eps})"] if dp else []),
        "membership inference": [f"DP: {', '.join(dp)} ({eps})"] if dp else [],
        "poisoning": ([f"robust aggregation: {run.rule}"] if robust else [])
        + [f"defense: {d}" for d in defenses]
        + ([f"update clipping ({', '.join(s['class'] for s in run.settings('DifferentialPrivacy'))})"]
           if run.settings("DifferentialPrivacy") else []),
        "backdoors": ([f"robust aggregation: {run.rule} (weak against small, targeted updates)"] if robust else [])
        + [f"defense: {d}" for d in defenses],
        "free-riding": ["update norms recorded per hospital in the audit log"] + [f"defense: {d}" for d in defenses],
        "dropout": [f"the strategy tolerates missing replies (minimum {s.get('min_train_nodes', 1)} hospitals)"
                    for s in run.start.get("strategy", [])[-1:]] + (["SecAgg+ unmasks dropped hospitals"]
                                                                    if secagg else []),
        "stragglers": [f"availability: {a['name']}" for a in in_play.get("availability", [])],
    }
    if clip is not None:
        mitigations["membership inference"].append(f"per-example clipping at {clip}")
    rows = []
    for prop, threat, words in THREATS:
        attacks = [a for a in run.attacks if any(w in str(a.get("threat", "")).lower() for w in words)]
        residual = _residual(run, baseline, threat, attacks)
        run_names = [f"{a['name']} ({', '.join(a.get('hospitals', []))})" if a.get("hospitals") else a["name"]
                     for a in attacks]
        measured = _measured_leakage(run.table("attacks"), words)
        if measured:
            run_names += list(measured)
            residual = "; ".join(measured.values())
        rows.append({"property": prop, "threat": threat,
                     "mitigations enabled": "; ".join(mitigations[threat]) or "none",
                     "attacks run": "; ".join(run_names) or "none",
                     "residual risk (measured)": residual})
    return pd.DataFrame(rows)


# What a leakage attack's rows say, in order of importance.
LEAKAGE_METRICS = {"psnr": "PSNR {:.1f} dB", "psnr_prior": "average-scan guess {:.1f} dB",
                   "max_rel_error": "worst feature error {:.1%} of its range", "auc": "AUC {:.2f}",
                   "tpr@1%fpr": "TPR at 1% FPR {:.2f}", "label_accuracy": "labels {:.0%} right"}


def _measured_leakage(table: pd.DataFrame, words: tuple[str, ...]) -> dict[str, str]:
    """{attack on hospital in round: what it achieved} for the observers' rows of the attacks table."""
    if table.empty or not {"attack", "metric", "value"} <= set(table):
        return {}
    rows = table.dropna(subset=["metric"])
    rows = rows[rows.attack.astype(str).str.lower().str.contains("|".join(words))]
    measured = {}
    for (attack, hospital, rnd), group in rows.groupby(["attack", "hospital", "round"], sort=False):
        values = group.set_index("metric")["value"].astype(float)
        said = [fmt.format(values[m]) for m, fmt in LEAKAGE_METRICS.items() if m in values]
        measured[f"{attack} on {hospital}, round {int(rnd)}"] = ", ".join(said)
    return measured


def _residual(run: Run, baseline: Run | None, threat: str, attacks: list[dict]) -> str:
    if threat == "dropout" and run.rounds:
        sampled = sum(len(r["sampled"]) for r in run.rounds)
        dropped = sum(len(r["dropped"]) for r in run.rounds)
        observed = f"observed: {dropped} of {sampled} sampled replies missing"
        if not attacks and not run.start.get("in_play", {}).get("availability"):
            return f"not measured (no availability model run); {observed}"
        return observed
    if not attacks:
        return "not measured"
    parts = []
    if baseline is not None:
        with_attack, without = run.final("auroc"), baseline.final("auroc")
        parts.append(f"global AUROC {with_attack:.3f} with the attack vs {without:.3f} without "
                     f"(change {with_attack - without:+.3f})")
    else:
        parts.append(f"global AUROC {run.final('auroc'):.3f} under attack (no baseline run given: effect not measured)")
    attackers = {h for a in attacks for h in a.get("hospitals", [])}
    selections = [r["aggregation"] for r in run.rounds if "selected" in r.get("aggregation", {})]
    if attackers and selections:
        picked = sum(bool(attackers & set(s["selected"])) for s in selections)
        parts.append(f"{run.rule} selected an attacker's update in {picked} of {len(selections)} rounds")
    if attackers and run.rounds:
        norms = pd.DataFrame([{"hospital": h, "norm": n} for r in run.rounds for h, n in r["update_norms"].items()])
        if not norms.empty:
            bad = norms[norms.hospital.isin(attackers)].norm.median()
            good = norms[~norms.hospital.isin(attackers)].norm.median()
            if np.isfinite(bad) and np.isfinite(good) and good > 0:
                parts.append(f"attacker update norm {bad / good:.1f}x the honest median")
    return "; ".join(parts)


def _privacy_statement(doc: Doc, run: Run) -> None:
    privacy = run.table("privacy")
    components = run.start.get("config", {}).get("components", [])
    doc.h("Privacy statement")
    if privacy.empty:
        doc.p("**No differential privacy in this run: no formal privacy guarantee.** Raw records never left "
              "a hospital, but the updates and the final model can leak them (see the threat model).")
        return
    privacy["epsilon"] = pd.to_numeric(privacy.epsilon, errors="coerce")
    lines = []
    for (mechanism, unit), rows in privacy.groupby(["mechanism", "unit"]):
        trust = ("central: the server is trusted to clip and add noise to the aggregate" if "server-side" in mechanism
                 else "central with client-side clipping: hospitals clip, the server adds noise"
                 if "central DP" in mechanism
                 else "local: each hospital noises its own update, no trusted server" if "local" in mechanism
                 else "local training: each hospital runs DP-SGD on its own records; the server and the other "
                      "hospitals see only noised updates")
        unit_text = ("one patient record of one hospital" if unit == "record"
                     else "one hospital's whole contribution (all its records)")
        lines += [
            f"**{mechanism}**: unit of privacy: {unit_text}",
            f"trust model: {trust}" + ("; SecAgg+ makes it distributed: the server sees only the sum"
                                       if any("SecAgg" in c for c in components) else ""),
            f"accountant: {rows.accountant.iloc[0].upper()} (dp-accounting), Poisson subsampling at each "
            f"hospital's sampling rate ({rows.sampling_rate.astype(float).min():.3g}-"
            f"{rows.sampling_rate.astype(float).max():.3g}), composed over {int(rows.steps.max())} steps at most",
            f"noise multiplier {float(rows.noise_multiplier.iloc[0]):.3g}; epsilon per hospital "
            f"{rows.epsilon.min():.3g}-{rows.epsilon.max():.3g} at delta {float(rows.delta.astype(float).min()):.2g}-"
            f"{float(rows.delta.astype(float).max()):.2g} (delta = 1/n^1.1 unless set)",
        ]
    clip = run.start.get("client_training", {}).get("dpsgd-clip")
    if clip is not None:
        lines.append(f"clipping: each example's gradient to L2 norm {clip} (DP-SGD)")
    for s in run.settings("DifferentialPrivacy"):
        lines.append(f"clipping: each hospital's update to L2 norm {s.get('clipping_norm')} ({s['class']})")
    lines.append("what is protected: every update the server saw and the final model; not protected: "
                 "what a hospital's own staff see of its own data; the hospital-level epsilons above assume "
                 "the sampling the accountant models")
    doc.items(lines)
    columns = ["hospital", "mechanism", "unit", "epsilon", "delta", "budget", "steps", "rounds"]
    doc.table(privacy[[c for c in columns if c in privacy]])
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * privacy.hospital.nunique()), 3.2), constrained_layout=True)
    sns.barplot(privacy, x="hospital", y="epsilon", hue="mechanism", ax=ax)
    caps = [p for p in run.start.get("policies", []) if isinstance(p.get("max_epsilon"), (int, float))]
    finite = privacy.epsilon[np.isfinite(privacy.epsilon)]
    top = 1.5 * float(finite.max()) if len(finite) and finite.max() > 0 else 1.0
    order = list(privacy.hospital.unique())
    for p in caps:
        if p["hospital"] in order:
            i, cap = order.index(p["hospital"]), float(p["max_epsilon"])
            if cap <= top:
                ax.plot([i - 0.4, i + 0.4], [cap, cap], color="k", lw=2)
            else:  # a cap far above what was spent: written at the top instead of squashing the bars
                ax.annotate(f"cap {cap:g}", (i, top), ha="center", va="top", fontsize=7)
    ax.set_ylim(0, top)
    ax.set(title="Epsilon spent per hospital (black: the hospital's max_epsilon)", xlabel="")
    ax.tick_params(axis="x", rotation=90)
    doc.figure("epsilon", fig, "Epsilon spent per hospital and mechanism")


def _participation(doc: Doc, run: Run) -> None:
    doc.h("Participation and per-hospital performance")
    if run.rounds:
        rows = []
        for r in run.rounds:
            for h in r["sampled"]:
                status = ("rejected" if h in r["rejected"] else "dropped" if h in r["dropped"]
                          else "responded")
                rows.append({"round": r["round"], "hospital": h, "status": status})
            rows += [{"round": r["round"], "hospital": h, "status": "excluded"} for h in r["excluded"]]
        part = pd.DataFrame(rows)
        counts = part.pivot_table(index="hospital", columns="status", values="round", aggfunc="count",
                                  fill_value=0).reset_index()
        doc.table(counts)
        codes = {"not sampled": 0, "responded": 1, "excluded": 2, "dropped": 3, "rejected": 4}
        grid = part.assign(code=part.status.map(codes)).pivot_table(index="hospital", columns="round",
                                                                     values="code", aggfunc="max")
        hospitals = sorted(run.start.get("data_fingerprints", {}))
        grid = grid.reindex(hospitals).fillna(0)
        fig, ax = plt.subplots(figsize=(max(5, 0.3 * grid.shape[1] + 3), max(2.5, 0.25 * len(grid))),
                               constrained_layout=True)
        cmap = matplotlib.colors.ListedColormap(["#eeeeee", "#4c9a2a", "#999999", "#e69f00", "#c0392b"])
        sns.heatmap(grid, cmap=cmap, vmin=-0.5, vmax=4.5, cbar_kws={"ticks": list(codes.values())}, ax=ax,
                    linewidths=0.5, linecolor="white")
        ax.collections[0].colorbar.set_ticklabels(list(codes))
        ax.set(title="Participation by round", xlabel="round", ylabel="")
        doc.figure("participation", fig, "Who took part in each round")
    metrics = run.metrics
    per = metrics[(metrics.scope != "global") & (metrics.metric == "auroc")] if not metrics.empty else metrics
    if per.empty:
        doc.p("No per-hospital metrics released.")
        return
    last = per[per["round"] == per["round"].max()].astype({"value": float})
    shown = set(last.scope)
    withheld = sorted(set(run.start.get("data_fingerprints", {})) - shown)
    doc.p(f"Final AUROC per hospital: min {last.value.min():.3f} ({last.loc[last.value.idxmin(), 'scope']}), "
          f"median {last.value.median():.3f}, max {last.value.max():.3f}; "
          f"spread {last.value.max() - last.value.min():.3f}"
          f" (a fairness gap). Global AUROC {run.final('auroc'):.3f}."
          + (f" Withheld by policy: {', '.join(withheld)}." if withheld else ""))
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(last)), 3.2), constrained_layout=True)
    sns.barplot(last.sort_values("value"), x="scope", y="value", color="tab:blue", ax=ax)
    ax.axhline(run.final("auroc"), color="k", ls="--", lw=1, label="global")
    ax.set(title="Final AUROC per hospital (released ones)", xlabel="", ylabel="AUROC",
           ylim=(min(0.4, float(last.value.min()) - 0.05), 1))
    ax.tick_params(axis="x", rotation=90)
    ax.legend()
    doc.figure("fairness", fig, "Final AUROC per hospital")


def _model_card(doc: Doc, run: Run) -> None:
    model = (run.result or {}).get("model", {})
    config = run.start.get("config", {})
    prints = run.start.get("data_fingerprints", {})
    doc.h("Model card")
    global_rows = run.metrics[run.metrics.scope == "global"] if not run.metrics.empty else run.metrics
    final = ", ".join(f"{m} {run.final(m):.3f}" for m in sorted(set(global_rows.metric))) or "not available"
    doc.items([
        f"**Model**: {model.get('name', config.get('model'))} ({model.get('class', '?')}, "
        f"{model.get('parameters', '?')} parameters, {len(model.get('layers', []))} layers); predicts "
        f"`{model.get('target', '?')}` from {model.get('n_features', '?')} preprocessed inputs; final weights "
        f"SHA-256 `{str(model.get('weights_sha256', '?'))[:16]}`",
        f"**Training**: federated, {config.get('rounds')} rounds of {config.get('strategy')} "
        f"(aggregation {run.rule}), {config.get('local_epochs')} local epoch(s), batch {config.get('batch_size')}, "
        f"learning rate {config.get('learning_rate')}, seed {config.get('seed')}; "
        f"components: {', '.join(config.get('components', [])) or 'none'}",
        f"**Data**: {config.get('federation')}; {len(prints)} hospitals, "
        f"{sum(p['n_train'] for p in prints.values())} training records; fingerprints in the audit log",
        f"**Evaluation** (pooled held-out test splits, final round): {final}",
        "**Intended use**: research and teaching on federated learning privacy and security; "
        "not for clinical decisions (synthetic or unvalidated data, no prospective evaluation)",
        "**Caveats**: per-hospital performance differs (see the fairness figure); attacks and DP noise in "
        "this run shape the model; check the privacy statement before releasing the model",
    ])


def report(results_dir: str | os.PathLike, baseline: str | os.PathLike | None = None,
           key: AuditKey | None = None, out: str | os.PathLike | None = None) -> dict[str, Path]:
    """Write ``report.md`` (+ ``figures/``) and a self-contained ``report.html``; return their paths."""
    run = Run.load(results_dir, key)
    base = Run.load(baseline, key) if baseline is not None else None
    out = Path(out) if out is not None else run.folder
    out.mkdir(parents=True, exist_ok=True)
    with sns.axes_style("whitegrid"), matplotlib.rc_context({"figure.max_open_warning": 0}):
        doc = build(run, base)
    (out / "figures").mkdir(exist_ok=True)
    for name, png in doc.figures.items():
        (out / "figures" / f"{name}.png").write_bytes(png)
    paths = {"markdown": out / "report.md", "html": out / "report.html"}
    paths["markdown"].write_text(doc.markdown())
    paths["html"].write_text(doc.html())
    return paths


def build(run: Run, baseline: Run | None = None) -> Doc:
    """The report as a Doc (render it with ``.markdown()`` or ``.html()``)."""
    v = run.verification
    doc = Doc(f"Risk report: {run.start.get('label', run.folder.name)}")
    doc.p(f"Results folder `{run.folder}`; config hash `{run.start.get('config_hash', '')[:16]}`; "
          f"fedsim {run.start.get('versions', {}).get('fedsim', '?')}, "
          f"Flower {run.start.get('versions', {}).get('flwr', '?')}.")
    doc.h("Audit log")
    doc.p(f"Audit log verification: **{v.status}** ({v.entries} entries, {v.signed}, head `{v.head[:16]}`).")
    if v.problems:
        doc.table(pd.DataFrame(v.problems))
    if v.notes:
        doc.items(v.notes)

    doc.h("Threat model")
    doc.p("Each threat, the mitigations enabled in this experiment, and the residual risk as measured by the "
          "attacks actually run in it (\"not measured\" where none was).")
    doc.table(_threat_rows(run, baseline))
    if baseline is not None and not run.metrics.empty and not baseline.metrics.empty:
        both = pd.concat([run.metrics.assign(run="with attack"), baseline.metrics.assign(run="without attack")])
        both = both[(both.scope == "global") & (both.metric == "auroc")].astype({"value": float})
        fig, ax = plt.subplots(figsize=(6, 3.2), constrained_layout=True)
        sns.lineplot(both, x="round", y="value", hue="run", marker="o", ax=ax)
        ax.set(title="Global AUROC by round: the attack's effect", ylabel="AUROC")
        doc.figure("attack_effect", fig, "Global AUROC with and without the attack")
    norms = pd.DataFrame([{"round": r["round"], "hospital": h, "norm": n}
                          for r in run.rounds for h, n in r.get("update_norms", {}).items()])
    if not norms.empty:
        attackers = {h for a in run.attacks if a.get("threat") in ("poisoning", "backdoor", "free-riding")
                     for h in a.get("hospitals", [])}
        norms["role"] = np.where(norms.hospital.isin(attackers), "attacker", "honest")
        fig, ax = plt.subplots(figsize=(6, 3.2), constrained_layout=True)
        sns.stripplot(norms, x="round", y="norm", hue="role", ax=ax, palette={"honest": "tab:blue",
                                                                              "attacker": "tab:red"})
        ax.set(title="Update L2 norm per hospital and round", ylabel="L2 norm of the update")
        doc.figure("update_norms", fig, "Update norms seen by the server (before aggregation)")

    _privacy_statement(doc, run)
    _participation(doc, run)

    doc.h("Institution policies")
    policies = pd.DataFrame(run.start.get("policies", []))
    if not policies.empty:
        policies = policies[["hospital", *[c for c in ("max_epsilon", "min_records", "evaluate", "share_metrics")
                                           if c in policies]]]
        policies["max_epsilon"] = pd.to_numeric(policies.max_epsilon, errors="coerce")
    doc.table(policies, empty="no institution policies")
    doc.p("Enforcements (each one is also an entry of the audit log):")
    doc.table(pd.DataFrame(run.policy, columns=["round", "hospital", "policy", "action", "detail"]),
              empty="no enforcement")
    _model_card(doc, run)
    return doc
